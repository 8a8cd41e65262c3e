"""The default job as a user sees it: `generate` with the tiny preset under five prompts (pans left, right, up, down;
zoom in) on the README image and on a held-out photograph. Per video: does the content move the captioned way from
frame 0 to the last (pans: the phase-correlation shift, chained over every 8th frame, points the caption's way and is
>= 4 px; the zoom: eval's flow-fitted scale from frame 1 to the last > 1.03), and does it draw tiles (the grid
ratio at 8- and 32-pixel boundaries, frames 1..F-1, mean over frames; 1 = none) — the first two bars of
docs/results.md. Measured on the mp4, as the user gets it (H.264 lifts a grid). Writes a contact sheet (a
row per image and prompt: frames 0, 8, 16, 24, 32) and the numbers as JSON.

    python -m recipes.tiny.probes.default_job --sheet docs/figures/tiny_default_prompts.png --json out.json
    python -m recipes.tiny.probes.default_job --stage1 outputs/RUN/final ...   # a trained Stage I in place
    python -m recipes.tiny.probes.default_job --stage1-sampler renoise --stage2-tile 0 ...   # another sampler
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from swifti2v import media
from swifti2v.api import SwiftI2V
from swifti2v.data.bank import heldout_photo_clip
from swifti2v.eval.metrics import (
    PAN_WORDS,
    camera_motion,
    grid_ratio,
    optical_flow,
    phase_correlation,
    prompt_motion,
    same_direction,
)
from swifti2v.files import atomic_write_json
from swifti2v.training.conditions import to_image
from swifti2v.training.engine import read_weights

PROMPTS = ("the camera pans left", "the camera pans right", "the camera pans up", "the camera pans down",
           "the camera zooms in")
MIN_PAN_PX, MIN_ZOOM = 4.0, 1.03
HOP = 8  # frames between the phase correlations a pan's displacement is chained from


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m recipes.tiny.probes.default_job", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--image", default="examples/input.jpg", help="the first image (default: the README's)")
    p.add_argument("--heldout", type=int, default=0, help="which held-out photograph clip gives the second image")
    p.add_argument("--prompt", action="append", help=f"a prompt (repeatable; default the five: {', '.join(PROMPTS)})")
    p.add_argument("--stage1", help="a Stage I transformer folder or training checkpoint in place of the bundle's")
    p.add_argument("--stage2", help="a Stage II transformer folder or training checkpoint in place of the bundle's")
    p.add_argument("--stage1-sampler", choices=("euler", "renoise"), help="Stage I's sampler in place of the preset's")
    p.add_argument("--stage1-steps", type=int, help="Stage I's steps in place of the preset's")
    p.add_argument("--stage1-shift", type=float, help="Stage I's schedule shift in place of the preset's")
    p.add_argument("--stage2-tile", type=int, help="Stage II's tile in output pixels (0: whole frames)")
    p.add_argument("--keep", help="keep the videos in this folder (IMAGE-PROMPT.mp4)")
    p.add_argument("--sheet", help="write the contact sheet here (PNG)")
    p.add_argument("--json", help="write the numbers here")
    return p


def chained_shift(video: torch.Tensor, hop: int = HOP) -> tuple[float, float]:
    """The content's displacement from frame 0 to the last, summed over phase correlations `hop` frames apart: a
    pan moves a 512x288 frame 128 px in 32 frames, so frames 0 and 32 share too little for one correlation to
    find it (on a periodic texture it locks onto the texture), while frames 8 apart share 3/4 of the view."""
    marks = [*range(0, video.shape[1] - 1, hop), video.shape[1] - 1]
    steps = [phase_correlation(video[:, a], video[:, b]) for a, b in zip(marks, marks[1:], strict=False)]
    return sum(s[0] for s in steps), sum(s[1] for s in steps)


def moved(video: torch.Tensor, prompt: str) -> dict:
    """How the content moved from frame 0 to the last, and whether that is the prompt's way. video: (3, F, H, W)."""
    named = prompt_motion(prompt) or ""
    shift = chained_shift(video)
    out = {"shift_px": [round(v, 2) for v in shift],
           "direct_shift_px": [round(v, 2) for v in phase_correlation(video[:, 0], video[:, -1])]}
    if named.startswith("pan "):
        expected = PAN_WORDS[named.removeprefix("pan ")]
        out["captioned_way"] = same_direction(shift, expected) and math.hypot(*shift) >= MIN_PAN_PX
    else:
        # one flow field from frame 1 to the last: frame 0 is the sharp input (a false zoom against the softer
        # frame 1), and summing 31 frame-to-frame fits adds up their noise (a still clip read as 1.036x)
        flows, scale = optical_flow(video[:, 1::video.shape[1] - 2])
        zoom = camera_motion(flows, scale, tuple(video.shape[-2:]))["camera_zoom"]
        out["zoom"] = round(zoom, 3)
        out["captioned_way"] = zoom > MIN_ZOOM if named == "zoom in" else zoom < 1 / MIN_ZOOM
    return out


def measure(frames: np.ndarray, prompt: str) -> dict:
    """frames: (F, H, W, 3) uint8, as decoded from the mp4."""
    video = torch.from_numpy(frames).permute(3, 0, 1, 2).float() / 127.5 - 1
    return moved(video, prompt) | {f"grid_{p}px": round(float(grid_ratio(video[:, 1:], p).mean()), 3) for p in (8, 32)}


def mp4_frames(pipe: SwiftI2V, image: Image.Image, prompt: str, keep: Path | None = None) -> np.ndarray:
    """The default job's mp4 (seed 0), decoded: (F, H, W, 3) uint8; written to `keep` (a file) when given."""
    with tempfile.TemporaryDirectory() as tmp:
        out = keep or Path(tmp) / "clip.mp4"
        pipe.generate(image, prompt, seed=0, out=out, keep_frames=False)
        return np.stack([np.asarray(f) for f in media.read_video(out)[0]])


def sheet_row(frames: np.ndarray) -> np.ndarray:
    return np.concatenate(list(frames[::8][:5]), axis=1)


def main(argv: list[str] | None = None) -> int:
    a = parser().parse_args(argv)
    pipe = SwiftI2V.from_preset("tiny")
    s1, s2 = pipe.cfg.stage1, pipe.cfg.stage2
    schedule = replace(s1.schedule, **{k: v for k, v in (("sampler", a.stage1_sampler), ("steps", a.stage1_steps),
                                                          ("shift", a.stage1_shift)) if v is not None})
    pipe.cfg = replace(pipe.cfg, stage1=replace(s1, schedule=schedule),
                       stage2=s2 if a.stage2_tile is None else replace(s2, tile=a.stage2_tile))
    if a.stage1:
        pipe.components.stage1.transformer.load_state_dict(read_weights(a.stage1), strict=True)
    if a.stage2:
        pipe.components.stage2.transformer.load_state_dict(read_weights(a.stage2), strict=True)
    images = {Path(a.image).name: Image.open(a.image),
              f"heldout photo {a.heldout}": to_image(heldout_photo_clip(a.heldout, 288, 512, 33).frames[:, 0])}
    rows, result = [], {}
    if a.keep:
        Path(a.keep).mkdir(parents=True, exist_ok=True)
    for name, image in images.items():
        for prompt in a.prompt or PROMPTS:
            keep = Path(a.keep) / f"{name}-{prompt}.mp4".replace(" ", "_") if a.keep else None
            frames = mp4_frames(pipe, image, prompt, keep)
            result[f"{name}: {prompt}"] = numbers = measure(frames, prompt)
            print(f"{name}: {prompt}", json.dumps(numbers), flush=True)
            rows.append(sheet_row(frames))
    summary = {"captioned_way": {name: sum(v["captioned_way"] for k, v in result.items() if k.startswith(name))
                                 for name in images},
               "grid_32px_max": max(v["grid_32px"] for v in result.values()),
               "grid_32px_mean": round(sum(v["grid_32px"] for v in result.values()) / len(result), 3),
               "grid_8px_max": max(v["grid_8px"] for v in result.values()),
               "grid_8px_mean": round(sum(v["grid_8px"] for v in result.values()) / len(result), 3)}
    print(json.dumps(summary), flush=True)
    if a.json:
        atomic_write_json(Path(a.json), {"videos": result, "summary": summary, "stage1": a.stage1 or "bundled",
                                         "stage2": a.stage2 or "bundled",
                                         "stage1_schedule": asdict(pipe.cfg.stage1.schedule),
                                         "stage2_tile": pipe.cfg.stage2.tile})
    if a.sheet:
        sheet = Image.fromarray(np.concatenate(rows, axis=0))
        sheet.resize((sheet.width // 2, sheet.height // 2), Image.Resampling.LANCZOS).save(a.sheet)
        print(f"sheet: {a.sheet} (rows: {', '.join(images)} x the prompts; frames 0, 8, 16, 24, 32; half size)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
