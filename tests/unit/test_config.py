from dataclasses import replace

import pytest

from swifti2v.config import stage1_size, validate
from swifti2v.errors import UserError
from swifti2v.presets import PRESETS, get_preset


def test_presets_validate():
    for name in PRESETS:
        assert validate(get_preset(name)).preset == name


@pytest.mark.parametrize(
    "change,fragment",
    [
        (dict(frames=80), r"4k\+1"),
        (dict(frames=3), r"4k\+1"),
        (dict(height=1400), "multiple of 32"),
        (dict(width=0), "multiple of 32"),
        (dict(fps=0), "--fps"),
    ],
)
def test_bad_video_values_name_the_value_and_fix(change, fragment):
    cfg = get_preset("wan-2k-refine")
    with pytest.raises(UserError, match=fragment) as e:
        validate(replace(cfg, video=replace(cfg.video, **change)))
    assert "use" in str(e.value)


def test_unknown_preset():
    with pytest.raises(UserError, match="debug-random"):
        get_preset("wan-8k")


def test_stage1_size_is_a_quarter():
    cfg = get_preset("wan-2k-refine")
    assert stage1_size(cfg.video, cfg.stage1) == (352, 640)


def test_memory_mode_auto_picks_the_fastest_that_fits():
    import torch

    from swifti2v.memory import HEADROOM_GIB, choose, resolve_memory_mode
    from swifti2v.presets import get_preset

    peaks = {"fast": 90.0, "balanced": 35.0, "low": 16.0}
    assert choose(peaks, 141.0) == "fast"
    assert choose(peaks, 35.0 + HEADROOM_GIB) == "balanced"
    assert choose(peaks, 24.0) == "low"
    assert choose(peaks, 8.0) == "low", "nothing fits: the lightest, with a warning"
    cfg = get_preset("tiny")
    assert cfg.memory_mode == "auto"
    resolved, choice = resolve_memory_mode(cfg, torch.device("cpu"))
    assert resolved.memory_mode == "balanced" and choice.free_gib is None, "CPU runs ignore auto"
    assert resolve_memory_mode(replace(cfg, memory_mode="low"), torch.device("cpu")) == (
        replace(cfg, memory_mode="low"), None)


def test_predicted_peaks_grow_from_low_to_fast():
    from swifti2v.bench.cost import predicted_peaks
    from swifti2v.presets import get_preset

    peaks = {mode: p["peak"] for mode, p in predicted_peaks(get_preset("debug-random")).items()}
    assert peaks["low"] <= peaks["balanced"] <= peaks["fast"]
