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

`--pipeline` (under torchrun, an even number of processes): Stage I of job k+1 on one process while Stage II of
job k runs on its partner (`run_pipelined`).
"""

from __future__ import annotations

import argparse
import datetime
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
    pipelined = getattr(base, "pipeline", False)
    if pipelined and (world < 2 or world % 2):
        raise UserError(f"batch --pipeline pairs a Stage I process with a Stage II process; launch an even number "
                        f"of them (torchrun --nproc_per_node 2 or more), not {world}")
    out_dir.mkdir(parents=True, exist_ok=True)
    status = Status(out_dir)
    runner = JobRunner(base, jobs_path.parent, out_dir, status)
    _join(world)  # every process is there before any job runs
    t0 = time.perf_counter()
    if pipelined:
        try:
            stage = run_pipelined(runner, jobs, progress, rank, world)
        except Exception as e:  # the partner died: its connection closed
            stage = _lost(e)
    else:
        stage = "all"
        mine = [j for j in jobs if j.index % world == rank]
        for done, job in enumerate(mine, 1):
            if runner.wanted(job):
                runner.attempt(job, "all")
            progress("batch jobs", done, len(mine))
    report = {"rank": rank, "stage": stage, "busy_s": round(runner.busy, 2),
              "wall_s": round(time.perf_counter() - t0, 2)}
    reports = None if stage is None else _wait_for_all(world, report)
    summary = summarise(jobs, status)
    if reports is None:
        summary["lost_processes"] = True
    elif pipelined:
        summary["pipeline"] = _utilisation(reports)
    if rank == 0:
        atomic_write_json(out_dir / "summary.json", summary)
    return summary


def _join(world: int) -> None:
    """The process group of a torchrun launch (gloo: small CPU messages only), joined at the start so that a
    process that dies later is seen by the others (its connections close) instead of awaited."""
    if world <= 1:
        return
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("gloo", timeout=datetime.timedelta(hours=24))  # others may still be working


def _wait_for_all(world: int, report: dict) -> list[dict] | None:
    """Wait for every process to finish its share; their reports, or None when one of them died (its
    unfinished jobs stay pending, and a re-run of the same command finishes exactly those)."""
    if world <= 1:
        return [report]
    import torch.distributed as dist

    try:
        reports = [None] * world
        dist.all_gather_object(reports, report)
        dist.destroy_process_group()
        return reports
    except Exception as e:  # gloo: "Connection closed by peer" and the like
        return _lost(e)


def _lost(error: Exception) -> None:
    log.error("a batch process stopped before finishing its share (%s); its unfinished jobs are pending: re-run "
              "the same command to finish them", str(error).splitlines()[0] if str(error) else type(error).__name__)


class JobRunner:
    """Runs jobs (or one of their two halves) with their own options, keeping the loaded models for the
    jobs that share them and recording each attempt in the job's status file."""

    def __init__(self, base: argparse.Namespace, jobs_dir: Path, out_dir: Path, status: Status):
        self.base, self.jobs_dir, self.out_dir, self.status = base, jobs_dir, out_dir, status
        self.pipes: dict[tuple, SwiftI2V] = {}  # loaded models, shared by the jobs that use them
        self.busy = 0.0  # seconds spent running jobs (for the utilisation in the summary)

    def wanted(self, job: Job) -> bool:
        """Not finished on an earlier run and not out of retries."""
        state = self.status.read(job)
        if state.get("state") == "done" and Path(state.get("output", "")).is_file():
            return False
        return state.get("attempts", 0) <= self.base.retries

    def attempt(self, job: Job, stages: str, taken: float | None = None) -> bool:
        """Run `stages` of the job ("all", or "stage1"/"stage2" of a pipelined run), retrying an error other
        than a user error at once; True when it finished. A bad job never stops the others. `taken`: when a
        Stage II process took the job over (the start of its span)."""
        state = self.status.read(job)
        attempts = state.get("attempts", 0) if stages != "stage2" else state.get("attempts", 1) - 1
        while True:
            attempts += 1
            t0, started = time.perf_counter(), taken or time.time()
            try:
                self._run(job, stages)
                seconds, span = round(time.perf_counter() - t0, 2), [round(started, 3), round(time.time(), 3)]
                if stages == "stage1":
                    self.status.write(job, state="stage1-done", attempts=attempts, stage1_seconds=seconds,
                                      stage1_span=span)
                else:
                    times = ({k: state.get(k) for k in ("stage1_seconds", "stage1_span")} | {"stage2_span": span}
                             if stages == "stage2" else {})
                    self.status.write(job, state="done", attempts=attempts, output=str(output_path(self.out_dir, job)),
                                      seconds=seconds, **times)
                return True
            except Exception as e:  # the reason is kept in the status file
                message = str(e).splitlines()[0] if str(e) else type(e).__name__
                log.warning("%s failed (attempt %d, %s): %s", job.id, attempts, stages, message)
                if not isinstance(e, UserError):
                    log.debug("%s", traceback.format_exc())
                self.status.write(job, state="failed", attempts=attempts, error=message, kind=type(e).__name__)
                # A user error would fail the same way now; a re-run (after a fix) tries it again.
                if isinstance(e, UserError) or attempts > self.base.retries:
                    return False
            finally:
                self.busy += time.perf_counter() - t0

    def _run(self, job: Job, stages: str) -> None:
        if job.problem:
            raise UserError(f"line {job.index + 1}: {job.problem}")
        out = output_path(self.out_dir, job)
        args = _job_args(self.base, job, self.jobs_dir)
        models = {k: getattr(args, k, None) for k in MODEL_OVERRIDES}
        key = (args.preset, stages == "stage2", *models.values())
        if key not in self.pipes:
            self.pipes[key] = SwiftI2V.from_preset(args.preset, with_stage1=stages != "stage2",
                                                   force=bool(getattr(args, "force", False)),
                                                   **{k: v for k, v in models.items() if v is not None})
        per_call = {k: getattr(args, k, None) for k in OVERRIDES if k not in MODEL_OVERRIDES}
        self.pipes[key].generate(args.image, args.prompt, out=out, crf=args.crf, keep_frames=False, stages=stages,
                                 **per_call)


# ---------------------------------------------------------------- pipelined: Stage I || Stage II

READY, SKIP, END = 1, 0, -1  # what a Stage I process tells its Stage II partner about a job


def run_pipelined(runner: JobRunner, jobs: list[Job], progress, rank: int, world: int) -> str:
    """`batch --pipeline` under torchrun: processes pair up, (0, 1), (2, 3), ...; the even one of a pair runs
    Stage I + the hybrid reference of its jobs, the odd one Stage II + decode, so Stage I of job k+1 runs
    while Stage II of job k does. The handover is the job's work directory; a message per job says it is
    ready, and the Stage I process starts a job only once its partner has taken the last one (at most one
    finished Stage I waits). Each pair takes every (world/2)-th job. Returns this process's stage."""
    stage = "stage1" if rank % 2 == 0 else "stage2"
    mine = [j for j in jobs if j.index % (world // 2) == rank // 2]
    (_feed if stage == "stage1" else _drain)(runner, mine, rank ^ 1, progress)
    return stage


def _message(kind: int, job: int = -1):
    import torch

    return torch.tensor([kind, job], dtype=torch.int64)


class _Link:
    """Messages to and from the partner process (gloo, CPU tensors). Sends do not wait for the partner to
    receive, so a process never waits on a send while the other computes."""

    def __init__(self, partner: int):
        self.partner, self.sending = partner, []

    def send(self, kind: int, job: int = -1) -> None:
        import torch.distributed as dist

        message = _message(kind, job)
        self.sending = [(w, m) for w, m in self.sending if not w.is_completed()]
        self.sending.append((dist.isend(message, dst=self.partner), message))

    def receive(self) -> tuple[int, int]:
        import torch.distributed as dist

        message = _message(END)
        dist.recv(message, src=self.partner)
        return int(message[0]), int(message[1])

    def close(self) -> None:
        for work, _ in self.sending:
            work.wait()


def _feed(runner: JobRunner, jobs: list[Job], partner: int, progress) -> None:
    """Stage I side: one message per job, in order. A job is started only once the partner has taken the
    last ready one, so at most one finished Stage I waits."""
    link, waiting = _Link(partner), False
    for done, job in enumerate(jobs, 1):
        if waiting:
            link.receive()  # taken
        ready = runner.wanted(job) and runner.attempt(job, "stage1")
        link.send(READY if ready else SKIP, job.index)
        waiting = ready
        progress("batch stage1", done, len(jobs))
    if waiting:
        link.receive()
    link.send(END)
    link.close()


def _drain(runner: JobRunner, jobs: list[Job], partner: int, progress) -> None:
    """Stage II side: take each ready job (telling the partner at once, so its next Stage I starts) and
    finish it."""
    link, by_index, done = _Link(partner), {job.index: job for job in jobs}, 0
    while True:
        kind, index = link.receive()
        if kind == END:
            link.close()
            return
        if kind == READY:
            taken = time.time()
            link.send(READY, index)  # taken: the partner starts its next Stage I
            runner.attempt(by_index[index], "stage2", taken)
        done += 1
        progress("batch stage2", done, len(jobs))


def _utilisation(reports: list[dict]) -> dict:
    """Per stage: busy seconds over wall seconds of its processes."""
    out = {}
    for stage in ("stage1", "stage2"):
        mine = [r for r in reports if r["stage"] == stage]
        busy, wall = sum(r["busy_s"] for r in mine), sum(r["wall_s"] for r in mine)
        out[stage] = {"processes": [r["rank"] for r in mine], "busy_s": round(busy, 2), "wall_s": round(wall, 2),
                      "utilisation": round(busy / wall, 3) if wall else 0.0}
    return out


def _own_device(base: argparse.Namespace) -> argparse.Namespace:
    """Under torchrun each rank takes the GPU of its LOCAL_RANK unless --device names one."""
    import torch

    if base.device in (None, "auto") and "LOCAL_RANK" in os.environ and torch.cuda.is_available():
        base = argparse.Namespace(**{**vars(base), "device": f"cuda:{int(os.environ['LOCAL_RANK'])}"})
        torch.cuda.set_device(base.device)
    return base


def summarise(jobs: list[Job], status: Status) -> dict:
    states = {job.id: status.read(job) for job in jobs}
    done = [k for k, s in states.items() if s.get("state") == "done"]
    failed = {k: s.get("error", "") for k, s in states.items() if s.get("state") == "failed"}
    return {"jobs": len(jobs), "done": len(done), "failed": len(failed), "pending": len(jobs) - len(done) - len(failed),
            "failures": failed}
