"""GPU tier: one clip on 2 GPUs (NCCL) equals one GPU, for Ulysses and for ring attention (which needs a
kernel returning the log-sum-exp, so it cannot run on CPU). Skipped without 2 CUDA devices (and, for ring,
without flash-attn)."""

import importlib.util
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import free_port, run_process

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA devices")]


@pytest.mark.parametrize(("kind", "attention"), [("ulysses", "sdpa"), ("ring", "flash")])
def test_two_gpus_equal_one(kind, attention, image_file, tmp_path):
    if attention == "flash" and importlib.util.find_spec("flash_attn") is None:
        pytest.skip("ring attention needs flash-attn")
    common = ["generate", "--preset", "debug-random", "--image", str(image_file), "--prompt", "a red square moves up",
              "--frames", "17", "--dtype", "bf16", "--attention", attention, "--memory-mode", "fast", "-q"]
    one = run_process([sys.executable, "-m", "swifti2v", *common, "--device", "cuda", "--out",
                       str(tmp_path / "one.mp4"), "--png-dir", str(tmp_path / "one")], timeout=600)
    assert one.returncode == 0, one.stderr[-2000:]
    two = run_process([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr",
                       "127.0.0.1", "--master_port", str(free_port()), "-m", "swifti2v", *common, "--parallel", kind,
                       "--out", str(tmp_path / "two.mp4"), "--png-dir", str(tmp_path / "two")], timeout=600)
    assert two.returncode == 0, two.stderr[-3000:]
    frames = lambda d: np.stack([np.asarray(Image.open(p), dtype=np.int16) for p in sorted(d.glob("*.png"))])
    a, b = frames(tmp_path / "one"), frames(tmp_path / "two")
    assert a.shape == b.shape and np.abs(a - b).mean() < 1.0 and np.abs(a - b).max() <= 8  # bf16 sums reordered
