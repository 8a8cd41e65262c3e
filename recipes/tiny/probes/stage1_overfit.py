"""Can Stage I learn motion, and how does learning it grow with the data? The bundled Stage I trained on a small
fixed set of pans alone (batch 1, the recipe's sigma sampling, fresh noise every step), sampled with the shipped
4-step sampler every --every steps: its loss, and on the training pans the share moved the captioned way and the
reach (first-to-last-frame shift along the truth's, over the truth's; 1 = as far as the truth, 0 = static).
A learnability check, not a way to train: a model that cannot memorise a few pans will not learn pans from data.

    python -m recipes.tiny.probes.stage1_overfit [--steps 300 --every 50]       # one held-out pan
    python -m recipes.tiny.probes.stage1_overfit --directions 2 --images 1      # one still, panned left and right:
                                                                          # only the caption tells them apart
    python -m recipes.tiny.probes.stage1_overfit --directions 8 --images 8 --heldout 8

--directions 0 (the default) trains on the first held-out pan (its own speed and direction); D > 0 pans each of
--images training stills (collages and photographs, as the bank's) in D directions at --speed pixels per frame.
--heldout K also measures direction accuracy on K held-out pans (`bench fidelity`'s measure: generalisation).
--prediction x0-skip trains the bundled weights to output x0 with the skip from the noisy input (models/adapter.py);
--save DIR keeps the result for `stage1_direction DIR --prediction ...` (denoising, transition reach).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from swifti2v.bench.fidelity import FidelityConfig, direction_accuracy
from swifti2v.data.synthetic import PAN_DIRECTIONS, downsample_frames, heldout_pans, render_shots, still
from swifti2v.eval.metrics import phase_correlation, reach, same_direction
from swifti2v.models.adapter import PREDICTION_FILE, WanVelocity
from swifti2v.models.components import PREDICTIONS, Components
from swifti2v.pipeline import Setup, load_components, setup
from swifti2v.presets import get_preset
from swifti2v.reference import decode_clip
from swifti2v.stage1 import generate_motion, stage1_velocity
from swifti2v.training.conditions import to_image
from swifti2v.training.objective import clip_loss, sample_train_sigmas

DIRECTIONS = {1: ["right"], 2: ["left", "right"], 4: ["left", "right", "up", "down"], 8: list(PAN_DIRECTIONS)}
K = 4  # Stage I works at 1/4 per side


@dataclass(frozen=True)
class Pan:
    low: torch.Tensor  # (3, F, H/4, W/4)
    caption: str


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m recipes.tiny.probes.stage1_overfit", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--every", type=int, default=50)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--directions", type=int, default=0, choices=[0, *DIRECTIONS])
    p.add_argument("--images", type=int, default=1, help="training stills, each panned in every direction")
    p.add_argument("--speed", type=float, default=2.0, help="pan speed, pixels per frame at the output size")
    p.add_argument("--eval-clips", type=int, default=8, help="training pans sampled at each report")
    p.add_argument("--heldout", type=int, default=0, help="held-out pans for direction accuracy at each report")
    p.add_argument("--prediction", choices=PREDICTIONS, help="what the model outputs (default: the bundle's)")
    p.add_argument("--shift", type=float, default=3.0, help="sigma sampling's shift (logit-normal; the recipe's 3)")
    p.add_argument("--save", type=Path, help="write the trained transformer here (for stage1_direction)")
    return p


def pan(big: torch.Tensor, name: str, speed: float, h: int, w: int, f: int) -> Pan:
    """Pan `name` over the centre of `big` (3, h, w) at full resolution; frame 0 is the same for every direction."""
    d = np.array(PAN_DIRECTIONS[name], dtype=np.float64) / np.hypot(*PAN_DIRECTIONS[name])
    t = np.arange(f)[:, None]
    affine = torch.zeros(f, 2, 3)
    affine[:, 0, 0] = affine[:, 1, 1] = 1.0
    affine[:, :, 2] = torch.from_numpy(t * speed * d[None] - [(w - 1) / 2, (h - 1) / 2]).float()
    lo = -torch.tensor([big.shape[2] / 2, big.shape[1] / 2])
    small = downsample_frames(big[:, None], K)[:, 0]
    low = render_shots(small[None], affine[None], lo[None], h, w, K)[0]
    return Pan(low, f"the camera pans {name}")


def training_pans(a: argparse.Namespace, h: int, w: int, f: int) -> list[Pan]:
    if a.directions == 0:
        clip = next(heldout_pans(1, h, w, f))
        return [Pan(clip.low, clip.caption)]
    margin = int(a.speed * f) + 8
    size = (h + 2 * margin + K - 1) // K * K, (w + 2 * margin + K - 1) // K * K
    stills = [still(np.random.default_rng(20_000 + i), *size, "train") for i in range(a.images)]
    return [pan(big, name, a.speed, h, w, f) for big in stills for name in DIRECTIONS[a.directions]]


@dataclass
class Overfit:
    a: argparse.Namespace
    s: Setup
    comps: Components
    data: list[tuple[torch.Tensor, object, torch.Tensor]]  # (latents, first frame, text) per pan
    truths: list
    shown: np.ndarray  # the pans sampled at each report

    @torch.no_grad()
    def measure(self) -> dict:
        run, stage1, model = self.s.cfg, self.comps.stage1, self.comps.stage1.transformer
        model.eval()
        hits, reached = 0, []
        for i in self.shown:
            _, image, text = self.data[i]
            latents = generate_motion(stage1, image, text, run.stage1, run.video, run.seed, self.s.device)
            frames = decode_clip(stage1.vae, latents)[0].cpu()
            shift = phase_correlation(frames[:, 0], frames[:, -1])
            hits += same_direction(shift, self.truths[i])
            reached.append(reach(shift, self.truths[i]))
        out = {"train_accuracy": hits / len(self.shown), "train_reach": round(float(np.mean(reached)), 4)}
        if self.a.heldout:
            held = direction_accuracy(self.comps, run, FidelityConfig(direction_clips=self.a.heldout), self.s.device,
                                      lambda *_: None)
            out |= {"heldout_accuracy": held["stage1"], "heldout_reach": round(held["reach"], 4)}
        model.train()
        return out

    def report(self, step: int, losses: list[float], start: float) -> None:
        loss = round(sum(losses) / len(losses), 4) if losses else None
        print(json.dumps({"step": step, "loss": loss, **self.measure(), "seconds": round(time.time() - start)}),
              flush=True)


def train(o: Overfit) -> None:
    """Fine-tune every weight of Stage I on the pans (batch 1), reporting every --every steps."""
    a, stage1 = o.a, o.comps.stage1
    model = stage1.transformer.float().requires_grad_(True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=0.0)
    g, order = torch.Generator().manual_seed(0), torch.Generator().manual_seed(1)
    velocities = []
    for _, image, text in o.data:
        v = stage1_velocity(stage1, image, text, o.s.cfg.video.frames, o.s.device)
        velocities.append(WanVelocity(model, v.text_embeds, image_embeds=v.image_embeds,
                                      extra_channels=v.extra_channels, prediction=stage1.prediction))
    start, losses = time.time(), []
    o.report(0, losses, start)
    for step in range(1, a.steps + 1):
        i = int(torch.randint(len(o.data), (1,), generator=order))
        sigma = sample_train_sigmas(1, "logit_normal", g, shift=a.shift)  # configs/train/tiny-stage1.toml's: 3
        z = o.data[i][0]
        loss = clip_loss(velocities[i], z, sigma, torch.randn(z.shape, generator=g).to(z.device))
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(loss.item())
        if step % a.every == 0:
            o.report(step, losses[-a.every:], start)


def main(argv: list[str] | None = None) -> int:
    a = parser().parse_args(argv)
    run = get_preset("tiny")
    s = setup(run)
    comps = load_components(s, with_stage1=True)
    comps.stage1.prediction = a.prediction or comps.stage1.prediction
    pans = training_pans(a, run.video.height, run.video.width, run.video.frames)
    data = [(comps.stage1.vae.encode(c.low[None].to(s.device)), to_image(c.low[:, 0]),
             comps.text.encode(c.caption, s.device)) for c in pans]
    truths = [phase_correlation(c.low[:, 0], c.low[:, -1]) for c in pans]
    shown = np.random.default_rng(1).permutation(len(pans))[: a.eval_clips]
    print(json.dumps({"pans": len(pans), "captions": sorted({c.caption for c in pans}),
                      "truth_shift_px": [[round(v, 2) for v in t] for t in truths[:8]]}), flush=True)
    train(Overfit(a, s, comps, data, truths, shown))
    if a.save:
        comps.stage1.transformer.save_pretrained(a.save)
        (a.save / PREDICTION_FILE).write_text(json.dumps({"prediction": comps.stage1.prediction}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
