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
