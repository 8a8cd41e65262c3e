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
    info = pipeline.generate(cfg, image_file, "a red square moves up", tmp_path / "gpu.mp4").info
    assert probe_video(tmp_path / "gpu.mp4")["frames"] == cfg.video.frames
    assert info["memory"]["peak_allocated_gib"] > 0


def test_csg_step_loop_has_no_host_syncs():
    """Nothing in a segment's denoising waits for the GPU (sigmas and timesteps live on the host; indices
    and RoPE positions go to the device asynchronously)."""
    from swifti2v.models.adapter import WanVelocity
    from swifti2v.models.components import DEBUG_RANDOM, load_stage2
    from swifti2v.sampling import STEPS, flow_sigmas, plan_segments
    from swifti2v.sampling.csg import sample_segment

    s2 = load_stage2(DEBUG_RANDOM, None, True, torch.device("cuda"), torch.bfloat16)
    z_ref, noise = (torch.randn(1, s2.vae.z_dim, 10, 8, 16, device="cuda") for _ in range(2))
    velocity = WanVelocity(s2.transformer, torch.zeros(1, 512, s2.transformer.config.text_dim, device="cuda"))
    segment = plan_segments(10, 3, 1)[1]
    run = lambda: sample_segment(velocity, z_ref, z_ref, noise, flow_sigmas(4, 3.0), segment,
                                 concat_reference=True, step=STEPS["euler"])
    run()  # warm-up: allocator, kernels
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        run()
    finally:
        torch.cuda.set_sync_debug_mode("default")


@pytest.mark.parametrize("mode", ["fast", "balanced", "low"])
def test_memory_modes_run_on_cuda(image_file, tmp_path, mode):
    cfg = replace(get_preset("debug-random"), device="cuda", dtype="bf16", memory_mode=mode)
    info = pipeline.generate(cfg, image_file, "a red square moves up", tmp_path / f"{mode}.mp4").info
    assert set(info["stage_peak_gib"]) >= {"stage1", "reference", "stage2"}
