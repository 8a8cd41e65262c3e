"""`swifti2v batch`: a bad job never stops the others, re-runs do no finished work, outputs stay in the
out-dir, two processes under torchrun cover every job exactly once, `--pipeline` overlaps Stage I and
Stage II, and a multi-node batch that loses a node is finished by a re-run without redoing anything."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from itertools import pairwise
from pathlib import Path

import pytest

from conftest import free_port, run_process


def _jobs(tmp_path: Path, image_file: Path, lines: list) -> Path:
    shutil.copy(image_file, tmp_path / "a.png")
    path = tmp_path / "jobs.jsonl"
    path.write_text("\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n")
    return path


def _batch(jobs: Path, out: Path, *extra: str, launcher: list[str] | None = None):
    cmd = (launcher or [sys.executable, "-m"]) + ["swifti2v", "batch", str(jobs), "--out-dir", str(out),
                                                 "--preset", "debug-random", "--frames", "9", "-q", *extra]
    return run_process(cmd, timeout=600)


def _status(out: Path) -> dict:
    return {p.stem: json.loads(p.read_text()) for p in sorted((out / "status").glob("*.json"))}


def test_bad_jobs_are_recorded_and_the_rest_finish_then_reruns_skip_done_work(tmp_path, image_file):
    jobs = _jobs(tmp_path, image_file, [
        {"image": "a.png", "prompt": "the camera pans left", "name": "first.mp4"},
        {"image": "missing.png", "prompt": "a red square moves up"},
        "{not json",
        {"image": "a.png", "prompt": "escape", "name": "../outside.mp4"},
        {"image": "a.png", "prompt": "bad option", "colour": "red"},
        {"image": "a.png", "prompt": "the camera pans right", "seed": 3, "frames": 37, "extend": "context"},
    ])
    out = tmp_path / "out"
    r = _batch(jobs, out, "--retries", "1")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "2/6 jobs done, 4 failed" in r.stdout
    status = _status(out)
    assert status["job-00000"]["state"] == "done" and (out / "first.mp4").is_file()
    assert status["job-00005"]["state"] == "done" and (out / "job-00005.mp4").is_file()
    long = json.loads((out / "job-00005.json").read_text())["plan"]["stage1"]  # past the window of 33
    assert long["extend"] == "context" and long["windows"] == [33, 33]
    assert "missing.png not found" in status["job-00001"]["error"]
    assert "not JSON" in status["job-00002"]["error"]
    assert "leaves --out-dir" in status["job-00003"]["error"] and not (tmp_path / "outside.mp4").exists()
    assert "'colour' is unknown" in status["job-00004"]["error"]
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["done"], summary["failed"]) == (2, 4)
    mtime = (out / "first.mp4").stat().st_mtime_ns
    shutil.copy(image_file, tmp_path / "missing.png")  # the user fixes the input; the re-run picks it up
    r = _batch(jobs, out, "--retries", "1")
    status = _status(out)
    assert (out / "first.mp4").stat().st_mtime_ns == mtime, "finished work is not redone"
    assert status["job-00001"]["state"] == "done" and status["job-00001"]["attempts"] == 2
    assert status["job-00002"]["attempts"] == 2
    r = _batch(jobs, out, "--retries", "1")
    assert _status(out)["job-00002"]["attempts"] == 2, "out of retries: not tried a third time"
    assert "3/6 jobs done, 3 failed" in r.stdout


def test_two_processes_under_torchrun_cover_every_job_once(tmp_path, image_file):
    jobs = _jobs(tmp_path, image_file, [{"image": "a.png", "prompt": f"job {i}", "seed": i} for i in range(5)])
    out = tmp_path / "out"
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
                "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{free_port()}", "-m"]
    r = _batch(jobs, out, launcher=launcher)
    assert r.returncode == 0, r.stderr[-2000:]
    status = _status(out)
    assert len(status) == 5 and all(s["state"] == "done" and s["attempts"] == 1 for s in status.values())
    assert sorted(p.name for p in out.glob("*.mp4")) == [f"job-{i:05d}.mp4" for i in range(5)]
    assert json.loads((out / "summary.json").read_text())["done"] == 5
    assert r.stdout.count("jobs done") == 1, "rank 0 alone reports"


@pytest.mark.parametrize("line,fragment", [({"image": "a.png"}, "missing prompt"), ([1, 2], "JSON object")])
def test_malformed_jobs_are_described(tmp_path, image_file, line, fragment):
    from swifti2v.cli.jobs import read_jobs

    jobs = read_jobs(_jobs(tmp_path, image_file, [line]))
    assert fragment in jobs[0].problem


def test_jobs_writing_the_same_output_are_refused_before_any_runs(tmp_path, image_file):
    jobs = _jobs(tmp_path, image_file, [{"image": "a.png", "prompt": "x", "name": "same.mp4"},
                                        {"image": "a.png", "prompt": "y"},
                                        {"image": "a.png", "prompt": "z", "name": "same"}])  # .mp4 added
    r = _batch(jobs, tmp_path / "out")
    assert r.returncode == 2 and "lines 1 and 3 both write same.mp4" in r.stderr, r.stderr
    assert not list((tmp_path / "out").glob("*.mp4")), "nothing ran"


def test_a_job_line_stacks_several_loras(tmp_path, image_file):
    import torch
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(0)
    for name, module in (("fewstep", "self_attn.q"), ("lowres", "self_attn.k")):
        save_file({f"diffusion_model.blocks.0.{module}.lora_down.weight": torch.randn(2, 24, generator=g),
                   f"diffusion_model.blocks.0.{module}.lora_up.weight": torch.randn(24, 2, generator=g)},
                  tmp_path / f"{name}.safetensors")
    loras = [str(tmp_path / "fewstep.safetensors"), f"{tmp_path / 'lowres.safetensors'}@0.5"]
    jobs = _jobs(tmp_path, image_file, [{"image": "a.png", "prompt": "stacked", "name": "s.mp4", "lora": loras}])
    r = _batch(jobs, tmp_path / "out")
    assert r.returncode == 0, r.stderr
    info = json.loads((tmp_path / "out" / "s.json").read_text())
    assert [(Path(x["path"]).name, x["strength"]) for x in info["inputs"]["loras"]] == [
        ("fewstep.safetensors", 1.0), ("lowres.safetensors", 0.5)]


def _torchrun(nproc: int, port: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc), "--rdzv-backend", "c10d",
            "--rdzv-endpoint", f"127.0.0.1:{port}", *extra, "-m"]


def test_pipelined_batch_runs_stage1_of_the_next_job_beside_stage2(tmp_path, image_file):
    """batch --pipeline on 2 processes: Stage I of job k+1 overlaps Stage II of job k, a job's Stage I starts
    only after the previous one's Stage II has (at most one finished Stage I waiting), a bad job is skipped
    by both, the summary gives each stage's utilisation, the sidecar both halves' seconds; a re-run
    redoes only a job whose output is gone; an odd process count is a one-line error."""
    lines = [{"image": "a.png", "prompt": f"job {i}", "seed": i} for i in range(4)]
    jobs = _jobs(tmp_path, image_file, [*lines[:2], {"image": "missing.png", "prompt": "x"}, *lines[2:]])
    out = tmp_path / "out"
    r = _batch(jobs, out, "--pipeline", launcher=_torchrun(2, free_port()))
    assert r.returncode != 0 and "4/5 jobs done, 1 failed" in r.stdout, r.stderr[-2000:]  # torchrun: 1
    status = _status(out)
    assert "missing.png not found" in status.pop("job-00002")["error"]
    spans = [(s["stage1_span"], s["stage2_span"]) for s in status.values()]
    assert all(s["state"] == "done" and s["attempts"] == 1 for s in status.values())
    for (s1, s2), (next_s1, _) in pairwise(spans):
        assert s1[1] <= s2[0] and next_s1[0] >= s2[0], "a Stage I starts once the last ready job was taken"
    assert any(next_s1[0] < s2[1] for (_, s2), (next_s1, _) in pairwise(spans)), "the stages overlap"
    pipeline = json.loads((out / "summary.json").read_text())["pipeline"]
    assert pipeline["stage1"]["processes"] == [0] and pipeline["stage2"]["processes"] == [1]
    assert all(0 < pipeline[k]["utilisation"] <= 1 for k in ("stage1", "stage2"))
    info = json.loads((out / "job-00000.json").read_text())
    assert {"stage1", "reference", "stage2"} <= set(info["seconds"])
    assert not list(out.glob(".*.work")), "work directories are removed once Stage II is done"
    mtime = (out / "job-00000.mp4").stat().st_mtime_ns
    (out / "job-00003.mp4").unlink()
    r = _batch(jobs, out, "--pipeline", launcher=_torchrun(2, free_port()))
    assert (out / "job-00003.mp4").is_file() and (out / "job-00000.mp4").stat().st_mtime_ns == mtime
    bad = _batch(jobs, out, "--pipeline")
    assert bad.returncode == 2 and "even number" in bad.stderr and "Traceback" not in bad.stderr


def test_two_nodes_one_dies_and_the_rerun_finishes_exactly_the_rest(tmp_path, image_file):
    """A 2-node batch (2 torchrun launches rendezvousing on loopback, node 0 hosting the store): node 1's
    process is killed after its first job; node 0 finishes its share, sees the loss, writes the summary with
    the rest pending and exits non-zero; the same command on both nodes then runs exactly the unfinished
    jobs (nothing done twice, no partial output ever under a final name)."""
    import psutil

    jobs = _jobs(tmp_path, image_file, [{"image": "a.png", "prompt": f"job {i}", "seed": i} for i in range(4)])
    out = tmp_path / "out"

    def nodes(port: int) -> list[subprocess.Popen]:
        return [subprocess.Popen(
            [*_torchrun(1, port, "--nnodes", "2", "--node-rank", str(r), "--rdzv-id", f"batch-{port}",
                        "--rdzv-conf", f"is_host={r == 0}"),
             "swifti2v", "batch", str(jobs), "--out-dir", str(out), "--preset", "debug-random", "--frames", "9", "-q"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True) for r in (0, 1)]

    def finish(procs, timeout=300):
        try:
            return [p.communicate(timeout=timeout)[0] for p in procs], [p.returncode for p in procs]
        finally:
            for p in procs:
                if p.poll() is None:
                    os.killpg(p.pid, signal.SIGKILL)

    procs = nodes(free_port())
    deadline = time.time() + 300
    while _status(out).get("job-00001", {}).get("state") != "done" if (out / "status").is_dir() else True:
        assert time.time() < deadline and procs[1].poll() is None, "node 1 never finished a job"
        time.sleep(0.1)
    for worker in psutil.Process(procs[1].pid).children(recursive=True):
        worker.kill()  # node 1's rank dies mid-batch
    (out0, _), (rc0, rc1) = finish(procs)
    assert rc0 != 0 and rc1 != 0 and "pending (a process died" in out0
    summary = json.loads((out / "summary.json").read_text())
    first = {k for k, s in _status(out).items() if s["state"] == "done"}
    assert summary["lost_processes"] and summary["done"] == len(first) and summary["pending"] == 4 - len(first)
    assert first == {"job-00000", "job-00001", "job-00002"}
    assert {p.stem for p in out.glob("*.mp4")} == first, "no partial output under a final name"
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.glob("*.mp4")}
    (out0, _), (rc0, rc1) = finish(nodes(free_port()))
    assert (rc0, rc1) == (0, 0) and "4/4 jobs done" in out0
    status = _status(out)
    assert all(s["state"] == "done" and s["attempts"] == 1 for s in status.values()), "no job ran twice"
    assert all(out.joinpath(name).stat().st_mtime_ns == t for name, t in mtimes.items())
