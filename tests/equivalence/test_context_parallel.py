"""Context parallelism (Ulysses, 2 CPU processes over gloo) gives what one process gives: a Stage II CSG
window with RoPE at global block indices and per-frame timesteps, and a Stage I whole-clip I2V call."""

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
