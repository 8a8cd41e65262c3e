"""`swifti2v batch JOBS.jsonl --out-dir D`: many generations, resumable, across processes.

One job per line: {"image": ..., "prompt": ..., "name": "clip.mp4" (optional), and any `generate` option by
its flag name with underscores ("frames", "seed", "preset", "height", "segment_blocks", ...)}. Image paths
are relative to the jobs file. Each job has a status file (D/status/JOB.json: state, attempts, error,
output); finished jobs are skipped on a re-run, failed ones are retried up to `retries` more times, and a
bad job (unreadable line, missing image, bad option, out of memory) is recorded and never stops the others.
Outputs stay inside D: a name that resolves outside it is a failed job. Under `torchrun --nproc_per_node K`
each rank takes every K-th job; rank 0 waits for the others and writes D/summary.json.

Retries: a job that fails for a reason other than a user error is tried again at once; every job that
failed is tried again by a re-run; `retries` bounds the extra attempts over all runs.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from swifti2v.api import SwiftI2V
from swifti2v.errors import UserError
from swifti2v.files import atomic_write_json
from swifti2v.presets import MODEL_OVERRIDES, OVERRIDES

log = logging.getLogger(__name__)
JOB_KEYS = {"image", "prompt", "name"}


@dataclass(frozen=True)
class Job:
    index: int
    spec: dict  # the parsed line, or {} when it could not be parsed
    problem: str | None = None  # why the line cannot run at all

    @property
    def id(self) -> str:
        return f"job-{self.index:05d}"


def read_jobs(path: Path) -> list[Job]:
    if not path.is_file():
        raise UserError(f"jobs file {path} not found; pass a .jsonl file with one job per line")
    jobs = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        try:
            spec = json.loads(line)
            problem = None if isinstance(spec, dict) else "a job must be a JSON object"
        except json.JSONDecodeError as e:
            spec, problem = {}, f"not JSON ({e.msg})"
        if problem is None:
            missing = [k for k in ("image", "prompt") if not isinstance(spec.get(k), str)]
            problem = f"missing {', '.join(missing)}" if missing else None
        jobs.append(Job(len(jobs), spec if isinstance(spec, dict) else {}, problem))
    return jobs


def output_path(out_dir: Path, job: Job) -> Path:
    """D/NAME (default job-00003.mp4); a name that leaves D is refused."""
    name = job.spec.get("name") or f"{job.id}.mp4"
    out = (out_dir / name).resolve()
    if not out.is_relative_to(out_dir.resolve()) or out == out_dir.resolve():
        raise UserError(f"job name {name!r} leaves --out-dir {out_dir}; use a plain relative file name")
    return out if out.suffix else out.with_suffix(".mp4")


def check_names(jobs: list[Job], out_dir: Path) -> None:
    """Two jobs writing the same output would overwrite each other: refused before any job runs."""
    seen: dict[Path, Job] = {}
    for job in jobs:
        if job.problem:
            continue
        try:
            out = output_path(out_dir, job)
        except UserError:
            continue  # recorded as that job's failure when it runs
        if out in seen:
            raise UserError(f"jobs on lines {seen[out].index + 1} and {job.index + 1} both write {out.name}; give "
                            "each job its own \"name\"")
        seen[out] = job


class Status:
    def __init__(self, out_dir: Path):
        self.dir = out_dir / "status"
        self.dir.mkdir(parents=True, exist_ok=True)

    def read(self, job: Job) -> dict:
        try:
            return json.loads((self.dir / f"{job.id}.json").read_text())
        except (OSError, ValueError):
            return {"state": "pending", "attempts": 0}

    def write(self, job: Job, **state) -> None:
        atomic_write_json(self.dir / f"{job.id}.json", {"job": job.spec, **state})


def _job_args(base: argparse.Namespace, job: Job, jobs_dir: Path) -> argparse.Namespace:
    """The batch command's options with the job's own on top, as `generate` would parse them."""
    args = argparse.Namespace(**vars(base))
    known = set(vars(base))
    for key, value in job.spec.items():
        if key in JOB_KEYS:
            continue
        if key not in known or key in ("jobs", "out_dir", "retries", "command"):
            raise UserError(f"job option {key!r} is unknown; use generate's options with underscores, e.g. "
                            "frames, seed, preset, height, width, segment_blocks")
        if key == "lora" and isinstance(value, list):  # several LoRAs: a tuple keys the loaded models
            value = tuple(map(str, value))
        setattr(args, key, value)
    image = Path(job.spec["image"])
    args.image = str(image if image.is_absolute() else jobs_dir / image)
    args.prompt = job.spec["prompt"]
    return args


def run_batch(base: argparse.Namespace, progress) -> dict:
    """Run this rank's share of the jobs; rank 0 then writes the summary of all of them."""
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    base = _own_device(base)
    jobs_path, out_dir = Path(base.jobs), Path(base.out_dir)
    jobs = read_jobs(jobs_path)
    check_names(jobs, out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    status = Status(out_dir)
    mine = [j for j in jobs if j.index % world == rank]
    pipes: dict[tuple, SwiftI2V] = {}  # loaded models, shared by the jobs that use them
    for done, job in enumerate(mine, 1):
        _run_job(job, base, jobs_path.parent, out_dir, status, pipes)
        progress("batch jobs", done, len(mine))
    _barrier(world)
    summary = summarise(jobs, status)
    if rank == 0:
        atomic_write_json(out_dir / "summary.json", summary)
    return summary


def _run_job(job, base, jobs_dir, out_dir, status, pipes) -> None:
    state = status.read(job)
    if state.get("state") == "done" and Path(state.get("output", "")).is_file():
        return  # finished on an earlier run
    attempts = state.get("attempts", 0)
    if attempts > base.retries:
        return  # out of retries
    while True:
        attempts += 1
        t0 = time.perf_counter()
        try:
            if job.problem:
                raise UserError(f"line {job.index + 1}: {job.problem}")
            out = output_path(out_dir, job)
            args = _job_args(base, job, jobs_dir)
            models = {k: getattr(args, k, None) for k in MODEL_OVERRIDES}
            key = (args.preset, *models.values())
            if key not in pipes:
                pipes[key] = SwiftI2V.from_preset(args.preset, **{k: v for k, v in models.items() if v is not None})
            per_call = {k: getattr(args, k, None) for k in OVERRIDES if k not in MODEL_OVERRIDES}
            pipes[key].generate(args.image, args.prompt, out=out, crf=args.crf, keep_frames=False, **per_call)
            status.write(job, state="done", attempts=attempts, output=str(out),
                         seconds=round(time.perf_counter() - t0, 2))
            return
        except Exception as e:  # a bad job never stops the others; its reason is kept
            message = str(e).splitlines()[0] if str(e) else type(e).__name__
            log.warning("%s failed (attempt %d): %s", job.id, attempts, message)
            if not isinstance(e, UserError):
                log.debug("%s", traceback.format_exc())
            status.write(job, state="failed", attempts=attempts, error=message, kind=type(e).__name__)
            # A user error would fail the same way now; a re-run (after a fix) tries it again.
            if isinstance(e, UserError) or attempts > base.retries:
                return


def _own_device(base: argparse.Namespace) -> argparse.Namespace:
    """Under torchrun each rank takes the GPU of its LOCAL_RANK unless --device names one."""
    import torch

    if base.device in (None, "auto") and "LOCAL_RANK" in os.environ and torch.cuda.is_available():
        base = argparse.Namespace(**{**vars(base), "device": f"cuda:{int(os.environ['LOCAL_RANK'])}"})
        torch.cuda.set_device(base.device)
    return base


def _barrier(world: int) -> None:
    if world <= 1:
        return
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("gloo")
    dist.barrier()
    dist.destroy_process_group()


def summarise(jobs: list[Job], status: Status) -> dict:
    states = {job.id: status.read(job) for job in jobs}
    done = [k for k, s in states.items() if s.get("state") == "done"]
    failed = {k: s.get("error", "") for k, s in states.items() if s.get("state") == "failed"}
    return {"jobs": len(jobs), "done": len(done), "failed": len(failed), "pending": len(jobs) - len(done) - len(failed),
            "failures": failed}
