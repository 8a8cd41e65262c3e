"""The web UI's own checks, without a browser: settings rejected with the CLI's messages, the login flag,
the detail crop."""

import re

import numpy as np
import pytest

from swifti2v.errors import UserError

ui = pytest.importorskip("swifti2v.ui")


@pytest.mark.parametrize("values, fragment", [
    ((100, 256, 25, 4, 0), "--height 100 is not a positive multiple of 32; use 96 or 128"),
    ((128, 256, 30, 4, 0), "--frames 30 is not 4k+1 (5, 9, ..., 81, ..., 321: any such length; past Stage I's "
                           "window of 33 it runs in several windows); use 29 or 33"),
    ((128, 256, 25, 0, 0), "stage2 steps 0 must be at least 1"),
    ((128.5, 256, 25, 4, 0), "height 128.5 must be a whole number"),
])
def test_bad_settings_get_the_cli_messages(values, fragment):
    with pytest.raises(UserError, match=re.escape(fragment)):
        ui.Studio.settings("debug-random", *values, "auto")
    assert ui.Studio.settings("debug-random", 128, 256, 25, 4, 7, "auto").seed == 7


def test_auth_flag_and_the_detail_crop():
    assert ui.parse_auth("ann:secret") == ("ann", "secret") and ui.parse_auth(None) is None
    for bad in ("ann", ":x", "ann:"):
        with pytest.raises(UserError, match="USER:PASS"):
            ui.parse_auth(bad)
    low = np.zeros((72, 128, 3), np.uint8)
    final = np.full((288, 512, 3), 200, np.uint8)
    bicubic, sharp = ui.detail_crops(low, final)
    assert bicubic.size == sharp.size == (ui.CROP, ui.CROP)
    assert ui.crop_box(288, 512) == (128, 16, 384, 272)
