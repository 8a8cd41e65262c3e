"""Stage I checkpoints on held-out pans: the share that moves the captioned way (the bar: >= 80%; a clip counts when
its first-to-last shift points the captioned way and its frames are shifted copies of the first, not a mosaic of
moved tokens; "direction_only" without that second test) and how far, as `bench fidelity` measures it — the quick
curve to follow while Stage I trains — and how much the caption changes its first denoising step ("caption spread":
the x0 predictions from pure noise, sigma = 1, for the same held-out image under the 8 pan captions, their mean
distance to their mean over the mean's norm; 0 = the caption is ignored) and whether it denoises at all ("x0 error
over input error" at sigma 0.1 and 0.5: the mean squared error of its x0 prediction from a noised held-out clip,
over that of the noisy input itself; a denoiser is below 1, a model that ignores its input and repeats the first
frame is far above 1 at sigma 0.1) and whether the stage-transition references it makes keep the clip's motion
("transition reach": the reach of Stage I's light denoising of the held-out pans, `condition.kind = "stage1"` as
Stage II training makes it, 1 = the truth's) as shifted copies of their first frames, not mosaics ("transition shifted
copy", dB, as the direction count asks).

    python -m recipes.tiny.probes.stage1_direction shipped outputs/tiny-cpu/s1/checkpoints/step-0000500 [--clips 8]
    python -m recipes.tiny.probes.stage1_direction RUN/stage1/final --gate     # exit 1: not fit for stage transition
    python -m recipes.tiny.probes.stage1_direction shipped DIR --prediction x0-skip  # outputs read as x0-skip
    python -m recipes.tiny.probes.stage1_direction shipped DIR --sheet stage1.png     # and what each one draws
    python -m recipes.tiny.probes.stage1_direction DIR --schedule 8,3,euler          # under another Stage I sampler

--sheet PNG: Stage I alone on --image (the README's) under each --caption, frames 0, 8, 16, 24 and 32 at the Stage I
size, 2x nearest: a row per caption, the checkpoints one below the other — to look at what it draws, not only count.

--gate (one checkpoint): exit status 1 when the transition reach is below 0.8 or the references are not shifted
copies (below SHIFTED_COPY_DB) — Stage II trained on references that have lost the motion, or moved it as tiles,
learns to ignore its reference; train.sh then skips the stage-transition phase.

A checkpoint is 'shipped' (the bundled Stage I), a training checkpoint folder (accelerate's
model.safetensors) or a transformer folder.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, replace

import numpy as np
import torch
from PIL import Image

from swifti2v.bench.fidelity import (
    SHIFTED_COPY_DB,
    FidelityConfig,
    direction_accuracy,
    shifted_copy_psnr,
    zoom_rotation_accuracy,
)
from swifti2v.config import RunConfig, stage1_size
from swifti2v.data.synthetic import PAN_DIRECTIONS, heldout_clip, heldout_pans
from swifti2v.eval.metrics import phase_correlation, reach
from swifti2v.media import fit, load_image, to_uint8
from swifti2v.models.components import PREDICTIONS, Components
from swifti2v.pipeline import Setup, load_components, setup
from swifti2v.presets import get_preset
from swifti2v.reference import decode_clip
from swifti2v.sampling.noise import clip_noise
from swifti2v.sampling.steps import STEPS
from swifti2v.stage1 import generate_motion, stage1_velocity
from swifti2v.training.conditions import lightly_denoise, to_image
from swifti2v.training.config import ConditionConfig
from swifti2v.training.engine import read_weights

GATE_REACH = 0.8
CAPTIONS = ["the camera pans left over the hills", "the camera pans right over the hills",
            "the camera pans down and to the right over the hills"]


@dataclass
class Probe:
    run: RunConfig
    s: Setup
    comps: Components
    clips: int


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m recipes.tiny.probes.stage1_direction", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoints", nargs="+")
    p.add_argument("--clips", type=int, default=8, help="held-out pan clips")
    p.add_argument("--gate", action="store_true", help=f"exit 1 if the transition reach is below {GATE_REACH}")
    p.add_argument("--schedule", help="Stage I's sampler as STEPS,SHIFT,SAMPLER (euler or renoise; default: the "
                   "preset's 4,3,euler)")
    p.add_argument("--prediction", choices=PREDICTIONS, help="read the checkpoints' outputs so (default: the bundle's)")
    p.add_argument("--sheet", help="also draw Stage I alone for --image under each --caption into this PNG")
    p.add_argument("--image", default="examples/input.jpg", help="the sheet's input image")
    p.add_argument("--caption", action="append", help="a sheet row's prompt (repeatable; default: the README's left "
                   "pan, a right pan and a diagonal)")
    return p


def with_schedule(run: RunConfig, text: str | None, p: argparse.ArgumentParser) -> RunConfig:
    """The tiny preset with Stage I's sampler given as STEPS,SHIFT,SAMPLER."""
    if not text:
        return run
    try:
        steps, shift, sampler = text.split(",")
        schedule = replace(run.stage1.schedule, steps=int(steps), shift=float(shift), sampler=sampler)
    except ValueError:
        p.error(f"--schedule {text!r}: give STEPS,SHIFT,SAMPLER, e.g. 8,3,euler")
    if sampler not in STEPS:
        p.error(f"--schedule {text!r}: the sampler must be one of {', '.join(STEPS)}")
    return replace(run, stage1=replace(run.stage1, schedule=schedule))


def caption_spread(x: Probe) -> float:
    run, comps, device = x.run, x.comps, x.s.device
    clip = heldout_clip(10_000, "camera", run.video.height, run.video.width, run.video.frames)
    image, vae = to_image(clip.low[:, 0]), comps.stage1.vae
    noise = clip_noise(0, "stage1", (1, vae.z_dim, run.video.num_blocks, image.height // vae.spatial,
                                     image.width // vae.spatial))
    x0 = torch.cat([noise - stage1_velocity(comps.stage1, image, comps.text.encode(f"the camera pans {d}", device),
                                            run.video.frames, device)(noise, torch.ones(1))
                    for d in PAN_DIRECTIONS])
    mean = x0.mean(0, keepdim=True)
    return float((x0 - mean).flatten(1).norm(dim=1).mean() / mean.norm())


def denoising(x: Probe, sigma: float) -> float:
    run, comps, device = x.run, x.comps, x.s.device
    g, ratios = torch.Generator().manual_seed(0), []
    for i in range(min(4, x.clips)):  # 4 clips tell it apart; fewer in a quick check
        clip = heldout_clip(10_000 + i, "camera", run.video.height, run.video.width, run.video.frames)
        z = comps.stage1.vae.encode(clip.low[None].to(device))
        noisy = (1 - sigma) * z + sigma * torch.randn(z.shape, generator=g).to(z.device)
        velocity = stage1_velocity(comps.stage1, to_image(clip.low[:, 0]), comps.text.encode(clip.caption, device),
                                   run.video.frames, device)
        x0 = noisy - sigma * velocity(noisy, torch.full((1,), sigma))
        ratios.append(float((x0 - z).pow(2).mean() / (noisy - z).pow(2).mean()))
    return sum(ratios) / len(ratios)


def transition(x: Probe) -> dict[str, float]:
    run, comps, device = x.run, x.comps, x.s.device
    g, reached, copy_db = torch.Generator().manual_seed(0), [], []
    for clip in heldout_pans(x.clips, run.video.height, run.video.width, run.video.frames):
        text = comps.text.encode(clip.caption, device)
        latents = lightly_denoise(clip.low[None], text, comps.stage1, ConditionConfig(), g)
        frames = decode_clip(comps.stage1.vae, latents)[0].cpu()
        truth = phase_correlation(clip.low[:, 0], clip.low[:, -1])
        reached.append(reach(phase_correlation(frames[:, 0], frames[:, -1]), truth))
        copy_db.append(shifted_copy_psnr(frames))
    return {"transition_reach": round(sum(reached) / len(reached), 3),
            "transition_shifted_copy_db": round(sum(copy_db) / len(copy_db), 1)}


def sheet_rows(x: Probe, image: Image.Image, captions: list[str]) -> np.ndarray:
    """Stage I alone for `image` under each caption: frames 0, 8, 16, 24, 32 side by side, a row per caption."""
    run, comps, device = x.run, x.comps, x.s.device
    rows = []
    for caption in captions:
        z = generate_motion(comps.stage1, image, comps.text.encode(caption, device), run.stage1, run.video,
                            run.seed, device)
        frames = decode_clip(comps.stage1.vae, z)[0].cpu()
        rows.append(np.concatenate(list(to_uint8(frames[None, :, ::8])), axis=1))
    return np.concatenate(rows, axis=0).repeat(2, axis=0).repeat(2, axis=1)


def measure(x: Probe) -> dict[str, float]:
    """Every number of the module's docstring, for the weights now in Stage I."""
    d = direction_accuracy(x.comps, x.run, FidelityConfig(direction_clips=x.clips), x.s.device, lambda *_: None)
    d |= zoom_rotation_accuracy(x.comps, x.run, x.clips, x.s.device)
    return {k: round(v, 3) for k, v in d.items()} | {"caption_spread": round(caption_spread(x), 4)} | {
        f"x0_over_input_error_sigma{sigma}": round(denoising(x, sigma), 2) for sigma in (0.1, 0.5)} | transition(x)


@torch.no_grad()
def main(argv: list[str] | None = None) -> int:
    p = parser()
    a = p.parse_args(argv)
    if a.gate and len(a.checkpoints) != 1:
        p.error("--gate takes one checkpoint")
    run = with_schedule(get_preset("tiny"), a.schedule, p)
    s = setup(run)
    x = Probe(run, s, load_components(s, with_stage1=True), a.clips)
    transformer = x.comps.stage1.transformer
    x.comps.stage1.prediction = a.prediction or x.comps.stage1.prediction
    shipped = {k: v.clone() for k, v in transformer.state_dict().items()}
    captions = a.caption or CAPTIONS
    picture = fit(load_image(a.image), *stage1_size(run.video, run.stage1)) if a.sheet else None
    sheets, result = [], {}
    for c in a.checkpoints:
        transformer.load_state_dict(shipped if c == "shipped" else read_weights(c), strict=True)
        result[c] = measure(x)
        print(c, json.dumps(result[c]), flush=True)
        if a.sheet:
            sheets.append(sheet_rows(x, picture, captions))
    if a.sheet:
        Image.fromarray(np.concatenate(sheets, axis=0)).save(a.sheet)
        print(f"sheet: {a.sheet} (rows: {', '.join(captions)}; checkpoints top to bottom)", flush=True)
    return gate(result[a.checkpoints[0]], a.checkpoints[0]) if a.gate else 0


def gate(first: dict[str, float], name: str) -> int:
    """1 when the stage-transition references lose the motion or tile it (train.sh then skips phase 2)."""
    kept, copy = first["transition_reach"] + 0.0, first["transition_shifted_copy_db"]  # + 0.0: no "-0%"
    if kept < GATE_REACH or copy < SHIFTED_COPY_DB:
        print(f"{name}: its stage-transition references keep {kept:.0%} of the clips' motion "
              f"(gate {GATE_REACH:.0%}) as shifted copies at {copy:.1f} dB (gate {SHIFTED_COPY_DB:.0f}); "
              f"not fit to make Stage II's training conditions", flush=True)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
