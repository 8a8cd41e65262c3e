import io

import numpy as np
import pytest
import torch
from PIL import Image

from swifti2v import media
from swifti2v.errors import UserError
from swifti2v.media import VideoWriter, fit, load_image, probe_video, read_video, to_tensor


def _save(tmp_path, image, name, **kw):
    path = tmp_path / name
    image.save(path, **kw)
    return path


def test_exif_orientation_is_respected(tmp_path):
    im = Image.new("RGB", (40, 20), (255, 0, 0))
    im.paste((0, 0, 255), (0, 0, 10, 20))  # blue on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90 degrees clockwise
    loaded = load_image(_save(tmp_path, im, "rot.jpg", exif=exif.tobytes(), quality=95))
    assert loaded.size == (20, 40)
    top = np.asarray(loaded)[2, 10]
    assert top[2] > 200 and top[0] < 60, "the blue left edge is now on top"


def test_modes_become_rgb(tmp_path):
    rgba = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    assert np.asarray(load_image(_save(tmp_path, rgba, "a.png"))).min() == 255, "transparent -> white"
    gray = Image.new("L", (8, 8), 100)
    assert load_image(_save(tmp_path, gray, "g.png")).mode == "RGB"
    cmyk = Image.new("CMYK", (8, 8), (0, 0, 0, 0))
    assert load_image(_save(tmp_path, cmyk, "c.jpg")).mode == "RGB"


def test_fit_covers_and_centre_crops():
    im = Image.new("RGB", (300, 100))
    im.paste((255, 255, 255), (100, 0, 200, 100))  # white centre third
    out = fit(im, 64, 64)
    assert out.size == (64, 64)
    assert np.asarray(out).mean() > 240, "the centre survives the crop"
    t = to_tensor(out)
    assert t.shape == (1, 3, 64, 64) and t.min() >= -1 and t.max() <= 1


def test_bad_images_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_image(tmp_path / "none.png")
    (tmp_path / "text.png").write_text("hello")
    with pytest.raises(UserError, match="not a readable image"):
        load_image(tmp_path / "text.png")
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (1, 2, 3)).save(buf, format="PNG")
    (tmp_path / "cut.png").write_bytes(buf.getvalue()[:60])
    with pytest.raises(UserError, match="not a readable image"):
        load_image(tmp_path / "cut.png")


def test_video_round_trip_and_atomic_write(tmp_path):
    out = tmp_path / "v.mp4"
    with VideoWriter(out, fps=12) as w:
        w.write(torch.zeros(1, 3, 5, 32, 64))
        assert not out.exists(), "the final name appears only when complete"
        w.write(torch.ones(1, 3, 4, 32, 64))
    assert probe_video(out) == {"frames": 9, "width": 64, "height": 32, "fps": 12.0}
    frames, fps = read_video(out)
    assert len(frames) == 9 and fps == 12.0
    with pytest.raises(RuntimeError), VideoWriter(tmp_path / "fail.mp4", fps=12) as w:
        w.write(torch.zeros(1, 3, 2, 32, 64))
        raise RuntimeError("crash mid-write")
    assert list(tmp_path.glob("*fail*")) == [], "nothing left under the final or temporary name"


def test_a_colon_in_a_relative_name_is_a_file_not_an_ffmpeg_protocol(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # ":.mp4" and "a:b.mp4" relative to here (FFmpeg once read them as protocols)
    for name in (":.mp4", "a:b.mp4"):
        with VideoWriter(name, fps=8) as w:
            w.write(torch.zeros(1, 3, 5, 32, 64))
        assert len(read_video(name)[0]) == 5 and (tmp_path / name).is_file()


def test_huge_images_are_downscaled_with_a_warning_and_bombs_refused(tmp_path, caplog, monkeypatch):
    wide = tmp_path / "wide.png"
    Image.new("RGB", (9000, 40), (10, 200, 30)).save(wide)
    with caplog.at_level("WARNING", logger="swifti2v.media"):
        im = media.load_image(wide)
    assert max(im.size) == media.MAX_SIDE and "downscaling" in caplog.text
    assert im.getpixel((100, 2)) == (10, 200, 30)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(UserError, match="too many to decode"):
        media.load_image(wide)


def test_mp4_bytes_do_not_depend_on_the_cpus_or_the_timing(tmp_path):
    """x264 picks its thread count from the CPUs a process may use, and its output depends on it: the
    writer fixes it, so the same frames give the same bytes on 1 or all CPUs, with pauses or not."""
    import hashlib
    import os
    import time

    rng = np.random.default_rng(0)
    base = torch.from_numpy(rng.random((3, 96, 200)).astype(np.float32)) * 2 - 1
    clip = torch.stack([torch.roll(base, 3 * t, dims=2) for t in range(17)], dim=1)[None]  # a pan

    def encode(name: str, pause: float) -> str:
        with VideoWriter(tmp_path / name, fps=16) as w:
            for t in range(0, 17, 4):
                w.write(clip[:, :, t : t + 4])
                time.sleep(pause)
        return hashlib.sha256((tmp_path / name).read_bytes()).hexdigest()

    cpus = os.sched_getaffinity(0)
    first = encode("all.mp4", 0.0)
    try:
        os.sched_setaffinity(0, {min(cpus)})
        one_cpu = encode("one.mp4", 0.05)
    finally:
        os.sched_setaffinity(0, cpus)
    assert first == one_cpu


def test_x264_is_kept_off_its_avx512_code_where_the_cpu_has_it(tmp_path):
    """x264's AVX-512 code gave other bytes for the same frames in ~16% of encodes on a loaded AVX-512
    machine (0 of 400 with it left out): the writer names the AVX2 feature set there, and only there."""
    def params(flags: str) -> dict:
        (tmp_path / "cpuinfo").write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
        return media.x264_params.__wrapped__(tmp_path / "cpuinfo")

    assert params("sse2 avx avx2 fma bmi2 abm avx512f avx512bw") == {
        "x264-params": f"asm={media.X264_WITHOUT_AVX512}"
    }
    assert params("sse2 avx avx2 fma bmi2 abm") == {}  # no AVX-512: x264 detects its own features
    assert params("sse2 avx512f") == {}  # a CPU without the AVX2 set is not told it has it
    assert media.x264_params.__wrapped__(tmp_path / "missing") == {}  # not Linux: x264 detects them
