"""Write a small folder of procedural training clips (textures panning in four directions) + captions.

    python examples/make_training_clips.py outputs/clips --count 8

Enough to try `swifti2v prepare-data` / `swifti2v train` end to end without a dataset of your own.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from swifti2v.media import VideoWriter

MOTIONS = {"left": (3, 0), "right": (-3, 0), "up": (0, 2), "down": (0, -2)}


def clip(frames: int, height: int, width: int, dx: int, dy: int, rng: np.random.Generator) -> torch.Tensor:
    """(1, 3, frames, height, width) in [-1, 1]: a window moving by (dx, dy) pixels per frame."""
    big = rng.integers(0, 255, (height + abs(dy) * frames, width + abs(dx) * frames, 3)).astype(np.float32)
    big = (big + np.roll(big, 1, 0) + np.roll(big, 1, 1)) / 3
    y0, x0 = (abs(dy) * frames if dy < 0 else 0), (abs(dx) * frames if dx < 0 else 0)
    out = [big[y0 + dy * t : y0 + dy * t + height, x0 + dx * t : x0 + dx * t + width] for t in range(frames)]
    return torch.from_numpy(np.stack(out)).permute(3, 0, 1, 2)[None] / 127.5 - 1


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path)
    p.add_argument("--count", type=int, default=8)
    p.add_argument("--frames", type=int, default=25)
    p.add_argument("--height", type=int, default=128)
    p.add_argument("--width", type=int, default=256)
    a = p.parse_args()
    rng, rows = np.random.default_rng(0), []
    a.out.mkdir(parents=True, exist_ok=True)
    for i in range(a.count):
        name, (dx, dy) = list(MOTIONS.items())[i % len(MOTIONS)]
        with VideoWriter(a.out / f"clip{i:03d}.mp4", fps=8) as w:
            w.write(clip(a.frames, a.height, a.width, dx, dy, rng))
        rows.append({"file": f"clip{i:03d}.mp4", "caption": f"the camera pans {name}"})
    (a.out / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    print(f"wrote {a.count} clips and metadata.jsonl to {a.out}")


if __name__ == "__main__":
    main()
