"""Context parallelism (Ulysses, 2 CPU processes over gloo) gives what one process gives: a Stage II CSG
window with RoPE at global block indices and per-frame timesteps, a Stage I whole-clip I2V call, and the
Stage II decode with its tiles spread over the processes."""

import json
import sys
from pathlib import Path

import pytest

from conftest import free_port, run_process
from swifti2v.errors import UserError
from swifti2v.models.parallel import check_parallel

WORKER = Path(__file__).with_name("cp_worker.py")


def test_ulysses_over_two_processes_equals_one(tmp_path):
    out = tmp_path / "diffs.json"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
           "--master_addr", "127.0.0.1", "--master_port", str(free_port()), str(WORKER), "ulysses", str(out)]
    r = run_process(cmd, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    diffs = json.loads(out.read_text())
    decode = diffs.pop("tiled decode")  # the Stage II decode tiles spread over the processes
    assert decode["tiles"] == 8 and decode["tiles_this_rank"] == 4 and decode["max_abs_diff"] < 1e-5, decode
    assert set(diffs) == {"stage2 CSG window", "stage1 whole clip"}
    for d in diffs.values():  # really split (each block sees half the tokens), and the same numbers
        assert d["tokens_per_rank"] * 2 == d["tokens"] and d["max_abs_diff"] < 1e-5, diffs


@pytest.mark.parametrize(("kind", "degree", "attention", "words"), [
    ("zigzag", 2, "sdpa", "unknown"), ("ulysses", 1, "sdpa", "at least 2"), ("ulysses", 3, "sdpa", "heads"),
    ("ring", 2, "sdpa", "log-sum-exp")])
def test_parallel_settings_that_cannot_run_are_user_errors(kind, degree, attention, words):
    import torch

    with pytest.raises(UserError, match=words):
        check_parallel(kind, degree, heads=2, attention=attention, device=torch.device("cpu"))


def test_generate_under_torchrun_with_ulysses_equals_one_process(image_file, tmp_path):
    """The whole `generate` (Stage I, hybrid reference, Stage II CSG with two windows) on 2 CPU processes:
    the frames equal one process's up to uint8 rounding; rank 0 alone writes the mp4, JSON and PNGs; the JSON
    holds every process's peak memory."""
    common = ["generate", "--preset", "debug-random", "--image", str(image_file), "--prompt", "a red square moves up",
              "--frames", "17", "-q"]
    one = run_process([sys.executable, "-m", "swifti2v", *common, "--out", str(tmp_path / "one.mp4"), "--png-dir",
                       str(tmp_path / "one")], timeout=300)
    assert one.returncode == 0, one.stderr[-2000:]
    two = run_process([sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
                       "--master_addr", "127.0.0.1", "--master_port", str(free_port()), "-m", "swifti2v", *common,
                       "--parallel", "ulysses", "--out", str(tmp_path / "two.mp4"), "--png-dir", str(tmp_path / "two")],
                      timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    import numpy as np
    from PIL import Image

    frames = lambda d: np.stack([np.asarray(Image.open(p), dtype=np.int16) for p in sorted(d.glob("*.png"))])
    a, b = frames(tmp_path / "one"), frames(tmp_path / "two")
    assert a.shape == b.shape == (17, 128, 256, 3) and np.abs(a - b).max() <= 1
    info = json.loads((tmp_path / "two.json").read_text())
    assert info["config"]["parallel"] == "ulysses" and len(info["memory_per_process"]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one", "one.json", "one.mp4", "two", "two.json", "two.mp4"]


def test_a_parallel_run_resumes_what_a_cancelled_run_left(image_file, tmp_path):
    """Both processes read rank 0's work directory and make the same resume decisions: a single-process run
    cancelled after its first segment, finished by 2 processes, gives the uninterrupted frames."""
    import numpy as np

    from swifti2v import Cancelled, SwiftI2V
    from swifti2v.presets import get_preset, with_overrides
    from swifti2v.workdir import WorkOptions

    pipe = SwiftI2V(with_overrides(get_preset("debug-random"), frames=17))
    whole = pipe.generate(image_file, "a red square moves up").frames
    done = []
    with pytest.raises(Cancelled):
        pipe.generate(image_file, "a red square moves up", work=WorkOptions(tmp_path / "work"), out=tmp_path / "a.mp4",
                      progress=lambda name, i, n: done.append(i) if name == "stage2 segments" and i else None,
                      cancel=lambda: bool(done))
    assert (tmp_path / "work" / "segment-0000.safetensors").is_file()
    r = run_process([sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
                     "--master_addr", "127.0.0.1", "--master_port", str(free_port()), "-m", "swifti2v", "generate",
                     "--preset", "debug-random", "--image", str(image_file), "--prompt", "a red square moves up",
                     "--frames", "17", "--parallel", "ulysses", "--work-dir", str(tmp_path / "work"), "--out",
                     str(tmp_path / "a.mp4"), "--png-dir", str(tmp_path / "png"), "-q"], timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    from PIL import Image

    resumed = np.stack([np.asarray(Image.open(p)) for p in sorted((tmp_path / "png").glob("*.png"))])
    assert np.abs(resumed.astype(np.int16) - whole.astype(np.int16)).max() <= 1
    assert not (tmp_path / "work").exists()
