"""Shared fixtures: tiny Wan-architecture components (the `debug-random` preset) built in code."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from swifti2v.models.components import DEBUG_RANDOM, load_stage1, load_stage2, load_text_encoder

CPU = torch.device("cpu")


@pytest.fixture(scope="session")
def stage2_concat():
    return load_stage2(DEBUG_RANDOM, None, True, CPU, torch.float32)


@pytest.fixture(scope="session")
def stage2_refine():
    return load_stage2(DEBUG_RANDOM, None, False, CPU, torch.float32)


@pytest.fixture(scope="session")
def stage1():
    return load_stage1(DEBUG_RANDOM, CPU, torch.float32)


@pytest.fixture(scope="session")
def text():
    return load_text_encoder(DEBUG_RANDOM, CPU, torch.float32)


@pytest.fixture(scope="session")
def image_file(tmp_path_factory):
    """A 300x500 textured RGB image."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:300, 0:500]
    base = np.stack([(xx * 0.5) % 255, (yy * 0.8) % 255, ((xx + yy) * 0.3) % 255], -1)
    pixels = np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)
    path = tmp_path_factory.mktemp("img") / "input.png"
    Image.fromarray(pixels).save(path)
    return path


def write_clip(path, frames: int, height: int, width: int, seed: int, dx: int = 3, dy: int = 0, fps: int = 8):
    """A textured image panning by (dx, dy) pixels per frame, as an H.264 mp4."""
    from swifti2v.media import VideoWriter

    rng = np.random.default_rng(seed)
    big = rng.integers(0, 255, (height + abs(dy) * frames + 8, width + abs(dx) * frames + 8, 3)).astype(np.float32)
    big = (big + np.roll(big, 1, 0) + np.roll(big, 1, 1)) / 3  # some spatial correlation
    clip = np.stack([big[abs(dy) * t: abs(dy) * t + height, abs(dx) * t: abs(dx) * t + width] for t in range(frames)])
    with VideoWriter(path, fps) as w:
        w.write(torch.from_numpy(clip).permute(3, 0, 1, 2)[None] / 127.5 - 1)
    return path


@pytest.fixture(scope="session")
def video_folder(tmp_path_factory):
    """Four 256x128 clips of 25 frames with captions (metadata.jsonl)."""
    import json

    root = tmp_path_factory.mktemp("videos")
    rows = []
    for i, (dx, dy) in enumerate([(3, 0), (-3, 0), (0, 2), (0, -2)]):
        write_clip(root / f"clip{i}.mp4", 25, 128, 256, seed=i, dx=dx, dy=dy)
        rows.append({"file": f"clip{i}.mp4", "caption": f"the camera pans {['left', 'right', 'up', 'down'][i]}"})
    (root / "metadata.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return root
