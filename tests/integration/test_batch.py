"""`swifti2v batch`: a bad job never stops the others, re-runs do no finished work, outputs stay in the
out-dir, and two processes under torchrun cover every job exactly once."""

import json
import shutil
import sys
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
        {"image": "a.png", "prompt": "the camera pans right", "seed": 3, "frames": 13},
    ])
    out = tmp_path / "out"
    r = _batch(jobs, out, "--retries", "1")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "2/6 jobs done, 4 failed" in r.stdout
    status = _status(out)
    assert status["job-00000"]["state"] == "done" and (out / "first.mp4").is_file()
    assert status["job-00005"]["state"] == "done" and (out / "job-00005.mp4").is_file()
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
    from swifti2v.cli.batch import read_jobs

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
