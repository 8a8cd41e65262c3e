"""Resumable generation: a crashed or killed run, re-run with the same command, finishes from its work
directory, and its frames equal an uninterrupted run's (bitwise on the CPU); a re-run and a SIGKILL-resumed
run write the same mp4 bytes."""

import hashlib
import json
import os
import random
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from conftest import kill_group, run_process
from swifti2v import media, pipeline
from swifti2v.errors import UserError
from swifti2v.presets import get_preset
from swifti2v.workdir import WorkOptions, default_path

PROMPT = "the camera pans left"
CFG = replace(get_preset("debug-random"), video=replace(get_preset("debug-random").video, frames=37))  # 3 segments
SHORT = replace(CFG, video=replace(CFG.video, frames=17))  # 2 segments, 1 Stage I window: checks without length


def frames_of(path: Path) -> np.ndarray:
    return np.stack([np.asarray(f) for f in media.read_video(path)[0]])


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def reference_file(tmp_path_factory, image_file) -> Path:
    out = tmp_path_factory.mktemp("ref") / "ref.mp4"
    pipeline.generate(CFG, image_file, PROMPT, out)
    return out


@pytest.fixture(scope="module")
def reference(reference_file):
    return frames_of(reference_file)


class Crash(Exception):
    pass


def test_resume_after_a_crash_equals_an_uninterrupted_run(tmp_path, image_file, reference):
    out = tmp_path / "clip.mp4"

    def crash_after_one_segment(name, done, total):
        if name == "stage2 segments" and done == 1:
            raise Crash

    with pytest.raises(Crash):
        pipeline.generate(CFG, image_file, PROMPT, out, progress=crash_after_one_segment)
    work = default_path(out)
    assert not out.exists() and not out.with_suffix(".json").exists(), "nothing under the final names"
    assert sorted(p.name for p in work.iterdir()) == ["manifest.json", "segment-0000.safetensors",
                                                      "stage1-window1.safetensors",
                                                      "stage1.safetensors", "text.safetensors",
                                                      "z_ref.safetensors"]  # 37 frames: Stage I windows 33 + 5
    seen = []
    comps = pipeline.load_components(pipeline.setup(CFG), with_stage1=True)
    comps.stage1.transformer.register_forward_pre_hook(lambda *a: seen.append("stage1"))
    comps.stage2.transformer.patch_embedding.register_forward_pre_hook(lambda *a: seen.append("stage2"))
    pipeline.generate(CFG, image_file, PROMPT, out, components=comps)
    assert "stage1" not in seen, "Stage I and the reference came from the work directory"
    assert seen.count("stage2") == 2 * CFG.stage2.schedule.steps, "only the two unfinished segments ran"
    assert np.array_equal(frames_of(out), reference)
    assert not work.exists(), "removed after success"


def test_changed_input_is_refused_unless_restart(tmp_path, image_file):
    out = tmp_path / "clip.mp4"
    pipeline.generate(replace(SHORT, seed=1), image_file, PROMPT, out, work=WorkOptions(keep=True))
    assert (default_path(out) / "manifest.json").is_file()
    seed1 = frames_of(out)
    with pytest.raises(UserError, match="--restart"):
        pipeline.generate(replace(SHORT, seed=1), image_file, "a different prompt", out)
    with pytest.raises(UserError, match="--restart"):
        pipeline.generate(SHORT, image_file, PROMPT, out)
    pipeline.generate(SHORT, image_file, PROMPT, out, work=WorkOptions(restart=True, keep=True))
    seed0 = frames_of(out)
    assert not np.array_equal(seed0, seed1), "the seed-1 work was thrown away, not reused"
    pipeline.generate(SHORT, image_file, PROMPT, out)  # the same command: everything resumed, then cleaned up
    assert np.array_equal(frames_of(out), seed0) and not default_path(out).exists()


def test_a_run_that_fails_before_finishing_anything_leaves_no_work_directory(tmp_path, image_file):
    out = tmp_path / "clip.mp4"
    bad = replace(CFG, stage2=replace(CFG.stage2, checkpoint=str(tmp_path / "no-such-checkpoint")))
    with pytest.raises(UserError, match="not found"):
        pipeline.generate(bad, image_file, PROMPT, out)
    assert not default_path(out).exists(), "a corrected command must not be refused"


def test_unreadable_work_file_is_made_again(tmp_path, image_file):
    out = tmp_path / "clip.mp4"
    pipeline.generate(SHORT, image_file, PROMPT, out, work=WorkOptions(keep=True))
    reference = frames_of(out)
    (default_path(out) / "segment-0001.safetensors").write_bytes(b"not a tensor")
    (default_path(out) / "z_ref.safetensors").write_bytes(b"")
    pipeline.generate(SHORT, image_file, PROMPT, out)
    assert np.array_equal(frames_of(out), reference)


def _cli(out: Path, image: Path) -> list[str]:
    return [sys.executable, "-m", "swifti2v", "generate", "--preset", "debug-random", "--frames", str(CFG.video.frames),
            "--image", str(image), "--prompt", PROMPT, "--out", str(out), "-q"]


def kill_and_resume(tmp_path: Path, image: Path, reference: Path, seed: int) -> float:
    """Run the CLI once to the end, then again with a SIGKILL at a random moment and the same command
    after it: both files must have the uninterrupted in-process run's bytes, and nothing half-written may
    sit under the final name in between."""
    out = tmp_path / f"kill{seed}.mp4"
    t0 = time.perf_counter()
    run_process(_cli(tmp_path / "timing.mp4", image), check=True)
    duration = time.perf_counter() - t0
    assert sha256(tmp_path / "timing.mp4") == sha256(reference), "the same command writes the same bytes"
    delay = random.Random(seed).uniform(0.2 * duration, 0.95 * duration)
    proc = subprocess.Popen(_cli(out, image), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    time.sleep(delay)
    kill_group(proc.pid)
    proc.wait()
    if out.exists():  # the run got to its final rename: then the file is whole
        assert sha256(out) == sha256(reference)
    again = run_process(_cli(out, image))
    assert again.returncode == 0, again.stderr
    assert sha256(out) == sha256(reference), "a resumed run writes the uninterrupted run's bytes"
    assert json.loads(out.with_suffix(".json").read_text())["config"]["video"]["frames"] == CFG.video.frames
    assert not default_path(out).exists()
    return delay


def test_sigkill_at_a_random_moment_then_resume(tmp_path, image_file, reference_file):
    kill_and_resume(tmp_path, image_file, reference_file, seed=int(os.environ.get("SWIFTI2V_KILL_SEED", "0")))


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(1, 7))
def test_sigkill_many_moments(tmp_path, image_file, reference_file, seed):
    kill_and_resume(tmp_path, image_file, reference_file, seed)


def test_a_lighter_memory_mode_resumes_the_same_work(tmp_path, image_file):
    """After running out of memory the advice is a lighter mode: the work directory still applies."""
    from swifti2v.memory import oom_advice

    out = tmp_path / "clip.mp4"
    pipeline.generate(SHORT, image_file, PROMPT, out, work=WorkOptions(keep=True))
    pipeline.generate(replace(SHORT, memory_mode="low"), image_file, PROMPT, out)  # resumed, not refused
    assert "--memory-mode low" in oom_advice("balanced")
    assert "resumes" in oom_advice(CFG.memory_mode)
