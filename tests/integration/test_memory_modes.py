"""Memory modes (models/placement.py) and speed switches (models/speed.py) on the CPU."""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch._dynamo.utils import counters

from swifti2v import media, pipeline
from swifti2v.config import validate
from swifti2v.errors import UserError
from swifti2v.models.adapter import WanVelocity
from swifti2v.models.debug import tiny_stage2_transformer
from swifti2v.models.placement import PLACEMENTS, get_placement
from swifti2v.models.speed import attention_error, check_attention, compile_blocks
from swifti2v.presets import get_preset
from swifti2v.sampling import Window


def _run(tmp_path, image_file, mode, dtype="auto", **video):
    preset = get_preset("debug-random")
    cfg = validate(replace(preset, memory_mode=mode, dtype=dtype, video=replace(preset.video, **video)))
    out = tmp_path / f"{mode}-{dtype}.mp4"
    info = pipeline.generate(cfg, image_file, "the camera pans left", out).info
    frames, _ = media.read_video(out)
    return info, torch.from_numpy(np.stack([np.asarray(f) for f in frames])), out


def test_balanced_on_cpu_equals_fast_and_low_runs_with_fp8_and_streaming(tmp_path, image_file, monkeypatch):
    fast_info, fast, _ = _run(tmp_path, image_file, "fast")
    _, balanced, _ = _run(tmp_path, image_file, "balanced")
    assert torch.equal(fast, balanced), "on the CPU, balanced only moves nothing and tiles nothing this small"
    seen = {}
    original = pipeline.Setup.placer.fget

    def spy(self):
        placer = original(self)
        prepare = placer.prepare

        def record(comps):
            prepare(comps)
            seen["stage1"] = comps.stage1.transformer
            seen["stage2"] = comps.stage2.transformer

        placer.prepare = record
        return placer

    monkeypatch.setattr(pipeline.Setup, "placer", property(spy))
    info, low, out = _run(tmp_path, image_file, "low")
    assert low.shape == fast.shape
    assert json.loads(out.with_suffix(".json").read_text())["config"]["memory_mode"] == "low"
    linear = seen["stage2"].blocks[0].ffn.net[2]
    assert linear.weight.dtype == torch.float8_e4m3fn, "Stage II weights stored in fp8"
    assert getattr(seen["stage1"], "_swifti2v_streamed", False), "Stage I streamed block by block"
    assert (low.float() - fast.float()).abs().mean() < 20, "fp8 changes the numbers, not the picture's range"
    assert info["config"]["memory_mode"] == "low" and fast_info["config"]["memory_mode"] == "fast"


def test_low_mode_in_bf16_runs(tmp_path, image_file):
    # models built in code come in the run dtype the way loaded ones do (norms, modulation and time embedding
    # fp32); before, their fp32 patch embedding met bf16 inputs under fp8 storage (found on an H200)
    info, video, _ = _run(tmp_path, image_file, "low", "bf16", frames=9, height=64, width=128)  # bf16 is slow on CPU
    assert info["config"]["dtype"] == "bf16" and video.float().std() > 1


def test_unknown_mode_and_backends_are_user_errors():
    with pytest.raises(UserError, match="--memory-mode"):
        get_placement("tiny")
    cfg = get_preset("debug-random")
    with pytest.raises(UserError, match="--attention"):
        validate(cfg.__class__(**{**cfg.__dict__, "attention": "magic"}))
    with pytest.raises(UserError, match="pip install 'swifti2v\\[flash\\]'"):
        check_attention("flash")  # flash-attn is not installed on CPU machines
    assert set(PLACEMENTS) == {"fast", "balanced", "low"}


def test_attention_backend_closeness_check():
    err = attention_error("_native_math", torch.device("cpu"), torch.float32, tokens=128, heads=2, head_dim=32)
    assert 0 <= err < 1e-5
    assert attention_error("sdpa", torch.device("cpu"), torch.float32, tokens=64, heads=2, head_dim=32) == 0.0


def test_compiled_blocks_do_not_recompile_for_csg_window_lengths():
    """The first window (no neighbours), the middle ones and a shorter last one share compiled graphs."""
    torch.manual_seed(0)
    model = tiny_stage2_transformer()
    velocity = WanVelocity(model, torch.randn(1, 7, 32))
    windows = {n: (torch.randn(1, 8, n, 8, 8), torch.tensor([0.0] + [0.7] * (n - 1)), Window(tuple(range(n))))
               for n in (3, 4, 5, 6)}
    with torch.no_grad():
        eager = velocity(*windows[4])
        compile_blocks(model, backend="eager")
        counters.clear()
        for n in (4, 5, 5, 3, 4, 6):
            velocity(*windows[n])
        compiled = velocity(*windows[4])
    assert counters["stats"]["unique_graphs"] == 1, "one graph for every window length"
    torch.testing.assert_close(compiled, eager, atol=1e-5, rtol=1e-5)
