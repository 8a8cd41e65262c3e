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
