"""GPU tier: the debug-random pipeline on CUDA in bf16 (skipped without CUDA)."""

from dataclasses import replace

import pytest
import torch

from swifti2v import pipeline
from swifti2v.media import probe_video
from swifti2v.presets import get_preset

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def test_generate_on_cuda_bf16(image_file, tmp_path):
    cfg = replace(get_preset("debug-random"), device="cuda", dtype="bf16")
    info = pipeline.generate(cfg, image_file, "a red square moves up", tmp_path / "gpu.mp4")
    assert probe_video(tmp_path / "gpu.mp4")["frames"] == cfg.video.frames
    assert info["memory"]["peak_allocated_gib"] > 0
