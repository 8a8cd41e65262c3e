"""Clips longer than Stage I's window: Stage I in continued windows (each from the previous one's last frame,
colours matched at the join), Stage II over the whole length; a run cancelled after its second window
resumes to the same bytes."""

import subprocess
import sys
import time
from dataclasses import replace

import numpy as np
import pytest
import torch

from conftest import kill_group, run_process
from swifti2v import Cancelled, SwiftI2V
from swifti2v.plan import window_frames
from swifti2v.presets import get_preset, with_overrides
from swifti2v.reference import match_colour
from swifti2v.workdir import WorkOptions, default_path

PROMPT = "the camera pans left"


@pytest.mark.parametrize(("frames", "window", "sizes"), [
    (25, 33, [25]), (33, 33, [33]), (65, 33, [33, 33]), (37, 33, [33, 5]), (321, 81, [81, 81, 81, 81])])
def test_windows_cover_the_clip_each_starting_on_the_last_frame(frames, window, sizes):
    assert window_frames(frames, window) == sizes
    assert sum(sizes) - (len(sizes) - 1) == frames and all((n - 1) % 4 == 0 for n in sizes)


def test_colour_matching_maps_the_first_frame_onto_the_target():
    g = torch.Generator().manual_seed(0)
    target = torch.rand(1, 3, 8, 8, generator=g) * 0.5 - 0.2
    first = target * 1.3 + 0.1  # the same picture, brighter and more contrasted
    correct = match_colour(first, target)
    frames = torch.stack([first, first * 0.9], dim=2)
    assert torch.allclose(correct(frames)[:, :, 0], target, atol=1e-5)


def test_a_long_clip_runs_in_windows_and_a_cancelled_run_resumes_to_the_same_bytes(image_file, tmp_path):
    """debug-random (window 33) at 69 frames, 128x64: three Stage I windows (33, 33, 5); cancelled in the third,
    the same call resumes from the two saved windows and writes the bytes of an uninterrupted run."""
    cfg = with_overrides(get_preset("debug-random"), frames=69, height=64, width=128)
    pipe = SwiftI2V(cfg)
    whole = pipe.generate(image_file, PROMPT, out=tmp_path / "whole.mp4")
    assert whole.frames.shape[0] == 69 and whole.info["latent_shape"][2] == 18
    steps = cfg.stage1.schedule.steps
    seen = []

    def cancel() -> bool:
        return bool(seen) and seen[-1] > 2 * steps  # inside the third window

    def progress(name: str, done: int, total: int) -> None:
        if name == "stage1 steps":
            seen.append(done)
            assert total == 3 * steps

    work = tmp_path / "work"
    with pytest.raises(Cancelled):
        pipe.generate(image_file, PROMPT, out=tmp_path / "again.mp4", work=WorkOptions(work), progress=progress,
                      cancel=cancel)
    saved = sorted(p.name for p in work.glob("stage1*.safetensors"))
    assert saved == ["stage1-window1.safetensors", "stage1.safetensors"]
    seen.clear()
    resumed = pipe.generate(image_file, PROMPT, out=tmp_path / "again.mp4", work=WorkOptions(work),
                            progress=progress)
    assert min(seen) > 2 * steps  # only the third window ran
    assert (tmp_path / "again.mp4").read_bytes() == (tmp_path / "whole.mp4").read_bytes()
    assert np.array_equal(resumed.frames, whole.frames)


def test_context_windows_make_the_whole_clip_in_one_saved_step(image_file, tmp_path):
    """`--extend context` at 65 frames (debug-random, window 33): three overlapping windows denoised together,
    the clip's length and the plan's joins as planned, frame 0 still the input image, one saved Stage I step."""
    cfg = with_overrides(get_preset("debug-random"), frames=65, height=64, width=128, extend="context")
    work = tmp_path / "work"
    result = SwiftI2V(cfg).generate(image_file, PROMPT, out=tmp_path / "context.mp4", work=WorkOptions(work, keep=True))
    plan = result.info["plan"]["stage1"]
    assert result.frames.shape[0] == 65 and plan["windows"] == [33, 33, 33] and plan["joins"] == [21, 37]
    assert sorted(p.name for p in work.glob("stage1*.safetensors")) == ["stage1.safetensors"]
    last = SwiftI2V(replace(cfg, stage1=replace(cfg.stage1, extend="last-frame"))).generate(
        image_file, PROMPT, out=tmp_path / "last.mp4")
    assert result.stage1_frames.shape == last.stage1_frames.shape  # the same low-res clip's length, made otherwise
    assert not np.array_equal(result.stage1_frames, last.stage1_frames)


@pytest.mark.subprocess
def test_a_cli_run_killed_after_its_second_window_resumes_to_the_same_bytes(image_file, tmp_path):
    """`generate --frames 69` (debug-random: Stage I windows of 33, 33 and 5 frames) SIGKILLed as soon as its
    second window is saved; the same command again finishes from there and writes the bytes of an uninterrupted
    run (made in this process)."""
    cfg = with_overrides(get_preset("debug-random"), frames=69, height=64, width=128, extend="last-frame")
    SwiftI2V(cfg).generate(image_file, PROMPT, out=tmp_path / "whole.mp4")
    out = tmp_path / "killed.mp4"
    command = [sys.executable, "-m", "swifti2v", "generate", "--preset", "debug-random", "--frames", "69",
               "--height", "64", "--width", "128", "--extend", "last-frame", "--image", str(image_file),
               "--prompt", PROMPT, "--out", str(out), "-q"]
    second = default_path(out) / "stage1-window1.safetensors"
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 120
    while not second.exists():
        assert proc.poll() is None and time.monotonic() < deadline, "the run ended before its second window"
        time.sleep(0.002)
    kill_group(proc.pid)
    proc.wait()
    assert not (default_path(out) / "stage1-window2.safetensors").exists() and not out.exists()
    run_process(command, check=True)
    assert out.read_bytes() == (tmp_path / "whole.mp4").read_bytes()
