"""Property-based fuzzing of the command line and of image files: whatever comes in, `swifti2v` ends with
exit code 0 or 2 and never a traceback."""

import io
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image

from swifti2v.cli.main import main

SMALL = ["--preset", "debug-random", "--frames", "5", "--height", "64", "--width", "64", "-q"]
VALUES = st.one_of(st.integers(-5, 200).map(str), st.sampled_from(["", "abc", "1e9", "-1", "nan", "9", "17", "32",
                                                                     "0.5", "../x", "cuda", "fast", "low"]),
                   st.text(max_size=12))
FLAGS = ["--frames", "--height", "--width", "--seed", "--segment-blocks", "--neighbor-blocks", "--stage2-steps",
         "--stage1-steps", "--start-sigma", "--fps", "--dtype", "--device", "--memory-mode", "--attention",
         "--preset", "--mode", "--stage2-sampler", "--lora", "--lora-strength", "--stage2", "--bogus"]


def _run(argv: list[str], capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    return exit_info.value.code, capsys.readouterr().err


@pytest.fixture(scope="module")
def workdir():
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 60, 3), dtype=np.uint8)).save(d / "ok.png")
        yield d


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pairs=st.lists(st.tuples(st.sampled_from(FLAGS), VALUES), max_size=4), command=st.sampled_from(
    ["generate", "plan", "refine"]))
@example(pairs=[("--seed", "\n")], command="plan")  # argparse's own message quotes the value: still one line
def test_any_arguments_end_in_exit_0_or_2(pairs, command, workdir, capsys):
    argv = [command, "--image", str(workdir / "ok.png"), "--prompt", "a test", "--out", str(workdir / "o.mp4"),
            "--motion", str(workdir / "missing.mp4"), *SMALL]
    if command == "plan":
        argv = ["plan", "--preset", "debug-random"]
    for flag, value in pairs:
        argv += [flag, value]
    code, err = _run(argv, capsys)
    assert code in (0, 2), (argv, err)
    assert "Traceback" not in err
    if code == 2:
        assert err.count("\n") == 1 and err.startswith("swifti2v: error:"), err


def _png() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (24, 32, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def _jpeg(mode: str = "RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, (32, 24)).save(buf, "JPEG")
    return buf.getvalue()


SEEDS = [_png(), _jpeg(), _jpeg("CMYK"), _jpeg("L")]


@st.composite
def image_bytes(draw):
    kind = draw(st.sampled_from(["random", "truncated", "flipped", "whole"]))
    if kind == "random":
        return draw(st.binary(max_size=256))
    data = bytearray(draw(st.sampled_from(SEEDS)))
    if kind == "truncated":
        return bytes(data[: draw(st.integers(0, len(data) - 1))])
    if kind == "flipped":
        for _ in range(draw(st.integers(1, 8))):
            i = draw(st.integers(0, len(data) - 1))
            data[i] = draw(st.integers(0, 255))
    return bytes(data)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=image_bytes())
def test_any_image_bytes_end_in_exit_0_or_2(data, workdir, capsys):
    path = workdir / "fuzz.img"
    path.write_bytes(data)
    code, err = _run(["generate", "--image", str(path), "--prompt", "a test", "--out", str(workdir / "f.mp4"),
                      *SMALL], capsys)
    assert code in (0, 2), err
    assert "Traceback" not in err


PATHS = st.one_of(st.sampled_from(["o.mp4", "o.txt", "o", ".", "..", "sub/new/o.mp4", "file/o.mp4", "file", "dir",
                                   "dir/", "o.MP4", "/proc/o.mp4", "/proc/x/o.mp4", "", " "]),
                  st.text(max_size=8).map(lambda s: s + ".mp4"))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(out=PATHS, work=st.one_of(st.none(), PATHS), png=st.one_of(st.none(), PATHS))
def test_any_output_paths_end_in_exit_0_or_2(out, work, png, workdir, capsys, monkeypatch):
    """Output, work directory and PNG folder: a bad one ends with one line before any model loads."""
    monkeypatch.chdir(workdir)
    (workdir / "file").write_text("")
    (workdir / "dir").mkdir(exist_ok=True)
    argv = ["generate", "--image", str(workdir / "ok.png"), "--prompt", "a test", "--out", out, *SMALL]
    argv += [] if work is None else ["--work-dir", work]
    argv += [] if png is None else ["--png-dir", png]
    code, err = _run(argv, capsys)
    assert code in (0, 2), (argv, err)
    assert "Traceback" not in err
    if code == 2:
        assert err.count("\n") == 1 and err.startswith("swifti2v: error:"), err
