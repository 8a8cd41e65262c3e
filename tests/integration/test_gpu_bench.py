"""`swifti2v bench gpu` runs its whole code path at debug scale on the CPU; the full-size models are
wired as the 2K run needs them (checked on the meta device)."""

import sys

import pytest
import torch

from conftest import run_process
from swifti2v.bench.gpu import GpuBenchConfig, _run_config, full_size_components, run_gpu_bench, to_markdown
from swifti2v.errors import UserError
from swifti2v.models import specs


def test_debug_scale_runs_every_mode_and_end_to_end_on_cpu():
    r = run_gpu_bench(GpuBenchConfig(scale="debug", device="cpu"), lambda *a: None)
    assert [row["mode"] for row in r["modes"]] == ["fast", "balanced", "low"]
    for row in r["modes"]:
        assert {"stage1", "reference", "stage2", "decode"} <= set(row["seconds"]) and row["total_s"] > 0
    assert r["stage2_end_to_end"]["status"] == "ok"
    assert "| low |" in to_markdown(r)


def test_full_size_models_are_the_wan_architectures():
    cfg = _run_config(GpuBenchConfig(), "fast")
    assert (cfg.video.height, cfg.video.width, cfg.video.frames) == (1408, 2560, 81) and cfg.stage1.loras == ()
    comps = full_size_components(cfg, torch.device("meta"), torch.bfloat16)
    assert specs.param_count(comps.stage1.transformer) == pytest.approx(16.39e9, rel=1e-3)
    assert comps.stage2.transformer.config.in_channels == 96 and comps.stage2.concat
    assert comps.stage1.vae.spatial == 8 and comps.stage2.vae.spatial == 16 and comps.stage2.vae.z_dim == 48


def test_full_scale_without_cuda_is_a_user_error():
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    with pytest.raises(UserError, match="--scale debug"):
        run_gpu_bench(GpuBenchConfig(device="auto"), lambda *a: None)
    out = run_process([sys.executable, "-m", "swifti2v", "bench", "gpu", "-q"])
    assert out.returncode == 2 and "Traceback" not in out.stderr
