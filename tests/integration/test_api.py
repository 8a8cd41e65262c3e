"""The Python API: `SwiftI2V` loads once, takes paths, PIL images and arrays, returns frames, cancels
cleanly and resumes; output paths are checked before anything loads; PNG frames and --crf."""

import threading

import numpy as np
import pytest
from PIL import Image

import swifti2v
from swifti2v import SwiftI2V, media
from swifti2v.errors import Cancelled, UserError
from swifti2v.models import components
from swifti2v.workdir import WorkOptions

SMALL = dict(frames=9, height=64, width=128)


@pytest.fixture(scope="module")
def pipe():
    return SwiftI2V.from_preset("debug-random")


def test_generate_returns_frames_and_a_second_call_loads_nothing(pipe, image_file, tmp_path, monkeypatch):
    out = tmp_path / "a.mp4"
    first = pipe.generate(image_file, "the camera pans left", seed=3, out=out, **SMALL)
    assert first.frames.shape == (9, 64, 128, 3) and first.frames.dtype == np.uint8
    assert first.stage1_frames.shape == (9, 16, 32, 3), "the low-res clip Stage II refined"
    assert first.path == out and first.fps == 8 and first.info["config"]["seed"] == 3
    decoded = np.stack([np.asarray(f) for f in media.read_video(out)[0]])
    assert decoded.shape == first.frames.shape  # the same frames, H.264-compressed (noise compresses badly)
    assert abs(decoded.mean() - first.frames.mean()) < 3

    calls = []
    for name in ("load_stage1", "load_stage2", "load_text_encoder"):
        monkeypatch.setattr(f"swifti2v.pipeline.{name}", lambda *a, _n=name, **k: calls.append(_n))
    monkeypatch.setattr(components.WanImageToVideoPipeline, "from_pretrained",
                        lambda *a, **k: calls.append("from_pretrained"))
    picture = Image.open(image_file)
    second = pipe.generate(picture, "the camera pans left", seed=3, **SMALL)  # a PIL image, no file written
    assert calls == [], "the second call reuses the loaded models"
    assert second.path is None and "load" not in second.info["seconds"]
    assert np.array_equal(second.frames, first.frames), "same seed, same frames"
    third = pipe.generate(np.asarray(picture), "the camera pans left", seed=4, **SMALL)  # an array
    assert not np.array_equal(third.frames, first.frames)


def test_refine_takes_a_list_of_frames(pipe, image_file):
    low = [np.full((16, 32, 3), 25 * i, np.uint8) for i in range(9)]
    result = pipe.refine(image_file, low, frames=9, height=64, width=128)
    assert result.frames.shape == (9, 64, 128, 3) and result.stage1_frames.shape == (9, 16, 32, 3)
    assert result.info["inputs"]["motion"] == "<9 frames>"


def test_model_settings_are_fixed_per_pipeline(pipe, image_file):
    with pytest.raises(UserError, match="from_preset"):
        pipe.generate(image_file, "x", dtype="bf16", **SMALL)
    with pytest.raises(UserError, match="unknown"):
        pipe.generate(image_file, "x", framez=9)


def test_cancel_keeps_finished_segments_and_the_same_call_resumes(pipe, image_file, tmp_path):
    out, work = tmp_path / "c.mp4", WorkOptions(tmp_path / "work")
    stop = threading.Event()

    def progress(name, done, total):
        if name == "stage2 segments" and done == 2:
            stop.set()

    reference = pipe.generate(image_file, "pan", frames=41, **{k: v for k, v in SMALL.items() if k != "frames"})
    with pytest.raises(Cancelled, match="resumes"):
        pipe.generate(image_file, "pan", frames=41, height=64, width=128, out=out, png_dir=tmp_path / "png",
                      progress=progress, cancel=stop, work=work)
    assert not out.exists() and not out.with_suffix(".json").exists() and not (tmp_path / "png").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["work"], "no partial file left beside the output"
    assert (work.path / "segment-0001.safetensors").is_file()
    resumed = pipe.generate(image_file, "pan", frames=41, height=64, width=128, out=out, work=work,
                            cancel=lambda: False)
    assert np.array_equal(resumed.frames, reference.frames)
    assert not work.path.exists()


def test_png_frames_are_lossless_and_crf_sizes_the_mp4(pipe, image_file, tmp_path):
    a = pipe.generate(image_file, "pan", out=tmp_path / "hi.mp4", png_dir=tmp_path / "frames", crf=10,
                      stage1_out=tmp_path / "low.mp4", **SMALL)
    pngs = sorted((tmp_path / "frames").iterdir())
    assert [p.name for p in pngs] == [f"frame_{i:05d}.png" for i in range(9)]
    assert all(np.array_equal(np.asarray(Image.open(p)), f) for p, f in zip(pngs, a.frames, strict=True))
    pipe.generate(image_file, "pan", out=tmp_path / "lo.mp4", crf=40, **SMALL)
    assert (tmp_path / "lo.mp4").stat().st_size < (tmp_path / "hi.mp4").stat().st_size
    assert a.info["outputs"] == {"video": "hi.mp4", "crf": 10, "png_dir": str(tmp_path / "frames"),
                                 "stage1": "low.mp4"}
    low, _ = media.read_video(tmp_path / "low.mp4")  # the low-res clip Stage II refined
    assert len(low) == len(a.stage1_frames) and low[0].size == a.stage1_frames.shape[2:0:-1]
    pipe.generate(image_file, "pan", out=tmp_path / "hi.mp4", png_dir=tmp_path / "frames", **SMALL)  # replaced
    assert len(list((tmp_path / "frames").iterdir())) == 9


@pytest.mark.parametrize("out, png, fragment", [
    ("{d}", None, "is a folder"),
    ("{f}/x.mp4", None, "cannot write"),
    ("o.txt", None, "name it o.mp4"),
    ("o.mp4", "{f}", "is a file"),
    ("o.mp4", "{d}", "holds other files"),
])
def test_bad_output_paths_fail_before_any_work(pipe, image_file, tmp_path, monkeypatch, out, png, fragment):
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "keep.txt").write_text("mine")
    (tmp_path / "file").write_text("")
    fmt = lambda s: None if s is None else tmp_path / s.format(d="dir", f="file")  # noqa: E731
    monkeypatch.setattr("swifti2v.pipeline.generate_motion", lambda *a, **k: pytest.fail("work started"))
    with pytest.raises(UserError, match=fragment):
        pipe.generate(image_file, "pan", out=fmt(out), png_dir=fmt(png), **SMALL)
    assert (tmp_path / "dir" / "keep.txt").read_text() == "mine"


def test_the_package_exports_the_api_lazily():
    assert swifti2v.SwiftI2V is SwiftI2V and swifti2v.Cancelled is Cancelled
    with pytest.raises(AttributeError):
        swifti2v.nothing  # noqa: B018


def test_generate_in_two_halves_on_two_pipelines_equals_one_call(pipe, image_file, tmp_path):
    """stages="stage1" leaves text, Stage I and z_ref in the work directory; a pipeline loaded without Stage I
    finishes with stages="stage2" (batch --pipeline's two processes): the same frames, and a sidecar with
    both halves' seconds. Without the first half, the second is a one-line user error."""
    whole = pipe.generate(image_file, "pan", **SMALL)
    first = pipe.generate(image_file, "pan", out=tmp_path / "a.mp4", stages="stage1", **SMALL)
    assert first.frames is None and first.path is None and not (tmp_path / "a.mp4").exists()
    work = tmp_path / ".a.mp4.work"
    assert {"text.safetensors", "stage1.safetensors", "z_ref.safetensors", "stage1.json"} <= {
        p.name for p in work.iterdir()}
    second_pipe = SwiftI2V.from_preset("debug-random", with_stage1=False)
    assert second_pipe.components.stage1 is None
    second = second_pipe.generate(image_file, "pan", out=tmp_path / "a.mp4", stages="stage2", **SMALL)
    assert np.array_equal(second.frames, whole.frames) and not work.exists()
    seconds = second.info["seconds"]
    assert {"stage1", "reference", "stage2", "decode"} <= set(seconds)
    with pytest.raises(UserError, match="no finished Stage I part"):
        second_pipe.generate(image_file, "pan", out=tmp_path / "b.mp4", stages="stage2", **SMALL)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "a.mp4"], "nothing left by the refused call"
    with pytest.raises(UserError, match="without Stage I"):
        second_pipe.generate(image_file, "pan", **SMALL)
