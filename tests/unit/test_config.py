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


def test_quant_auto_takes_the_fastest_mode_and_storage_that_fit():
    """Modes fastest first, then storages fastest first (fp8, bf16, int8): a storage only where it lets a faster
    mode fit; on a CPU, bf16 (its fp32 compute gains nothing from int8)."""
    import torch

    from swifti2v.memory import HEADROOM_GIB, choose, resolve_memory_mode
    from swifti2v.presets import get_preset

    peaks = {("fast", "fp8"): 71.0, ("fast", "none"): 90.6, ("fast", "int8"): 71.0, ("balanced", "fp8"): 24.2,
             ("balanced", "none"): 35.2, ("balanced", "int8"): 24.2, ("low", "fp8"): 16.6, ("low", "none"): 16.6,
             ("low", "int8"): 16.6}
    order = [(m, q) for m in ("fast", "balanced", "low") for q in ("fp8", "none", "int8")]
    assert choose(peaks, 141.0, order) == ("fast", "fp8")
    assert choose(peaks, 80.0, order) == ("fast", "fp8")
    assert choose(peaks, 80.0, [k for k in order if k[1] != "fp8"]) == ("fast", "int8")  # no fp8 units
    assert choose(peaks, 30.0, order) == ("balanced", "fp8")
    assert choose(peaks, 20.0, order) == ("low", "fp8")
    resolved, choice = resolve_memory_mode(replace(get_preset("tiny"), quant="auto"), torch.device("cpu"))
    assert (resolved.memory_mode, resolved.quant, choice.quant) == ("balanced", "none", "none")
    assert choose(peaks, 16.6 + HEADROOM_GIB, order) == ("low", "fp8")


def test_predicted_peaks_grow_from_low_to_fast():
    from swifti2v.footprint import predicted_peaks
    from swifti2v.presets import get_preset

    peaks = {mode: p["peak"] for mode, p in predicted_peaks(get_preset("debug-random")).items()}
    assert peaks["low"] <= peaks["balanced"] <= peaks["fast"]


def test_lora_specs_parse_and_stack_after_the_presets():
    from swifti2v.config import LoraFile, lora_list, parse_lora
    from swifti2v.presets import LIGHTX2V_A14B_LORAS, get_preset, with_overrides

    assert parse_lora("lowres.safetensors") == LoraFile("lowres.safetensors")
    assert parse_lora(" HIGH = repo/x:file.safetensors@0.75") == LoraFile("repo/x:file.safetensors", 0.75, "high")
    assert parse_lora("low=a@b.safetensors") == LoraFile("a@b.safetensors", 1.0, "low")  # '@' inside the path
    assert parse_lora("x.safetensors@-0.5").strength == -0.5
    for spec in ("high=a.safetensors@0.5", "x.safetensors", "low=h:f.safetensors@2"):
        assert parse_lora(str(parse_lora(spec))) == parse_lora(spec)  # the sidecar's spelling reads back
    for bad, words in (("@0.5", "names no file"), ("x.safetensors@99", "outside -10..10")):
        with pytest.raises(UserError, match=words):
            parse_lora(bad)
    wan = get_preset("wan-2k")
    assert len(wan.stage1.loras) == 1 and "lightx2v" in wan.stage1.loras[0].path
    paper = with_overrides(wan, lora="lowres.safetensors@0.8")  # few-step (preset) + low-res, in that order
    assert paper.stage1.loras == (wan.stage1.loras[0], LoraFile("lowres.safetensors", 0.8))
    assert with_overrides(wan, lora=["none", "a.safetensors"]).stage1.loras == (LoraFile("a.safetensors"),)
    assert with_overrides(wan, lora="none").stage1.loras == ()
    assert lora_list(["a.safetensors", "none"]) == ()
    a14b = get_preset("wan22-2k-refine").stage1
    assert a14b.model == "Wan-AI/Wan2.2-I2V-A14B-Diffusers" and a14b.loras == LIGHTX2V_A14B_LORAS
    assert [(x.target, "high_noise" in x.path) for x in a14b.loras] == [("high", True), ("low", False)]


def test_the_resume_fingerprint_covers_the_lora_list():
    """A work directory left by a run with other LoRAs (paths, order, strengths, targets) is not resumed."""
    from swifti2v.presets import get_preset, with_overrides
    from swifti2v.workdir import fingerprint

    cfg = get_preset("wan22-2k-refine")
    variants = [None, "a.safetensors", "a.safetensors@0.5", "high=a.safetensors@0.5",
                ["a.safetensors", "b.safetensors"], ["b.safetensors", "a.safetensors"], "none"]
    prints = {fingerprint(cfg if v is None else with_overrides(cfg, lora=v), {}) for v in variants}
    assert len(prints) == len(variants)
