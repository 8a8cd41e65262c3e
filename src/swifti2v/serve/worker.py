"""Workers: one process per device, each holding its loaded pipeline, taking jobs from the queue until stopped.

A job's files live in DATA/jobs/ID/: the inputs the server stored (image.*, motion.*), the outputs (video.mp4,
its video.json, stage1.mp4) and the work directory (work/), so a job taken over after a crash, on this host or
another one sharing the folder, resumes from its finished steps and writes the bytes an uninterrupted run writes.

The server's `Workers` starts the processes, restarts one that dies (out of memory, killed) and hands its job back
to the queue (retried up to `retries` times, then failed with the reason); other jobs go on.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing as mp
import os
import shutil
import signal
import socket
import threading
import time
import traceback
import uuid
from dataclasses import dataclass
from pathlib import Path

from swifti2v.errors import Cancelled, UserError
from swifti2v.serve.queue import Claim, JobQueue

log = logging.getLogger(__name__)
VIDEO, SIDECAR, STAGE1, WORK = "video.mp4", "video.json", "stage1.mp4", "work"


@dataclass(frozen=True)
class WorkerSpec:
    url: str  # the queue's database
    data_dir: Path
    device: str  # cpu, cuda:0, ...
    preset: str  # loaded at start (jobs may name another: it replaces the loaded one)
    lease_s: float = 30.0  # a job whose worker stops heartbeating is taken over this long after its last beat
    retries: int = 2  # extra attempts after a failure other than a user error
    poll_s: float = 0.5  # how often an idle worker looks for a job


def job_dir(data_dir: Path, job_id: str) -> Path:
    return data_dir / "jobs" / job_id


def input_file(folder: Path, stem: str) -> Path | None:
    found = sorted(folder.glob(f"{stem}.*"))
    return found[0] if found else None


# ---------------------------------------------------------------- inside the worker process

def worker_main(spec: WorkerSpec, worker_id: str) -> None:
    """The worker process: load the models once, then claim and run jobs until the server stops it."""
    _die_with_parent()
    logging.basicConfig(level=logging.WARNING, format=f"%(levelname)s worker {spec.device}: %(message)s")
    from swifti2v.cli.common import quiet_libraries
    from swifti2v.models.placement import own_heap

    quiet_libraries()
    own_heap()  # a process of the service's own, as the command's is
    queue, runner = JobQueue(spec.url), Runner(spec)
    runner.load(spec.preset)
    while True:
        claim = queue.claim(worker_id, spec.lease_s)
        if claim is None:
            time.sleep(spec.poll_s)
            continue
        run_claim(queue, runner, claim, spec, worker_id)


def run_claim(queue: JobQueue, runner: Runner, claim: Claim, spec: WorkerSpec, worker_id: str) -> str:
    """Run one claimed job to its end state (or hand it back); returns what happened."""
    beat = Heartbeat(queue, claim.id, worker_id, spec.lease_s)
    folder = job_dir(spec.data_dir, claim.id)
    try:
        info = runner.run(claim, folder, beat)
    except Cancelled:
        if beat.lost:  # another worker holds the job now: leave its files alone
            return "lost"
        shutil.rmtree(folder, ignore_errors=True)  # nothing stays under the job's output names
        queue.finish(claim.id, worker_id, "cancelled", error="cancelled on request", progress=beat.progress)
        return "cancelled"
    except UserError as e:
        queue.finish(claim.id, worker_id, "failed", error=_line(e), progress=beat.progress)
        return "failed"
    except Exception as e:  # out of memory and the like: back to the queue while retries are left
        log.warning("job %s attempt %d: %s\n%s", claim.id, claim.attempt, _line(e), traceback.format_exc())
        _free_memory()
        return queue.release(claim.id, worker_id, f"{type(e).__name__}: {_line(e)}", spec.retries) or "lost"
    finally:
        beat.stop()
    ok = queue.finish(claim.id, worker_id, "done", seconds=info["seconds"], progress=beat.progress)
    return "done" if ok else "lost"


class Runner:
    """The loaded pipeline of one worker: one set of models at a time (a job naming another preset or Stage II
    mode replaces them)."""

    def __init__(self, spec: WorkerSpec):
        self.spec, self.key, self.pipe = spec, None, None

    def load(self, preset: str, mode: str | None = None):
        if self.key != (preset, mode):
            from swifti2v.api import SwiftI2V

            self.pipe = None  # the old models go before the new ones load
            self.pipe = SwiftI2V.from_preset(preset, device=self.spec.device, **({"mode": mode} if mode else {}))
            self.key = (preset, mode)
        return self.pipe

    def run(self, claim: Claim, folder: Path, beat: Heartbeat) -> dict:
        """The job as `swifti2v generate|refine` runs it (the same config, so the same bytes)."""
        from swifti2v.presets import MODEL_OVERRIDES, OVERRIDES
        from swifti2v.serve.options import job_args
        from swifti2v.workdir import WorkOptions

        motion = input_file(folder, "motion") if claim.kind == "refine" else None
        args = job_args(claim.kind, claim.options, input_file(folder, "image"), folder / VIDEO, motion)
        pipe = self.load(args.preset, args.mode)
        per_call = {k: getattr(args, k, None) for k in OVERRIDES if k not in MODEL_OVERRIDES}
        common = dict(out=folder / VIDEO, crf=args.crf, progress=beat.report, cancel=beat.stopping,
                      work=WorkOptions(folder / WORK), keep_frames=False)
        if claim.kind == "generate":
            result = pipe.generate(args.image, args.prompt, stage1_out=folder / STAGE1, **common, **per_call)
        else:
            frames = per_call.pop("frames")
            result = pipe.refine(args.image, args.motion, args.prompt, frames=frames, **common, **per_call)
        return result.info


class Heartbeat:
    """Keeps the job's lease alive from a thread, stores its progress, and tells the run to stop between steps
    when the user cancels or the lease is lost."""

    def __init__(self, queue: JobQueue, job_id: str, worker_id: str, lease_s: float):
        self.queue, self.job_id, self.worker_id, self.lease_s = queue, job_id, worker_id, lease_s
        self.progress: dict[str, list[int]] = {}
        self.stopping, self.lost = threading.Event(), False
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="heartbeat")
        self._thread.start()

    def report(self, name: str, done: int, total: int) -> None:
        self.progress[name] = [done, total]

    def _loop(self) -> None:
        every = min(0.5, self.lease_s / 3)
        while not self._done.wait(every):
            try:
                said = self.queue.heartbeat(self.job_id, self.worker_id, self.lease_s, dict(self.progress))
            except Exception as e:  # the database is briefly unreachable: the lease covers a few misses
                log.warning("heartbeat of job %s failed: %s", self.job_id, _line(e))
                continue
            if said != "ok":
                self.lost = said == "lost"
                self.stopping.set()

    def stop(self) -> None:
        self._done.set()
        self._thread.join()


def _die_with_parent() -> None:
    """A worker must not outlive its server (a SIGKILLed server's workers would go on holding jobs)."""
    with contextlib.suppress(OSError, AttributeError):  # not Linux: the parent watch below does it
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()


def _free_memory() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _line(e: BaseException) -> str:
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    return text[:500]


# ---------------------------------------------------------------- in the server process

class Workers:
    """The server's worker processes, one per device, watched: one that dies is replaced and its job handed back."""

    def __init__(self, spec: WorkerSpec, devices: list[str], queue: JobQueue):
        self.spec, self.devices, self.queue = spec, devices, queue
        self.server = f"{socket.gethostname()}/{uuid.uuid4().hex[:8]}"
        self.procs: dict[str, tuple[str, mp.Process]] = {}  # device -> (worker id, process)
        self.restarts = 0
        self._stop = threading.Event()
        self._ctx = mp.get_context("spawn")
        self._watcher = threading.Thread(target=self._watch, daemon=True, name="workers")

    def start(self) -> None:
        for n, device in enumerate(self.devices):
            self._start(device, n)
        self._watcher.start()

    def _start(self, device: str, n: int) -> None:
        worker_id = f"{self.server}/{device}/{n}"
        spec = WorkerSpec(**{**self.spec.__dict__, "device": device})
        proc = self._ctx.Process(target=worker_main, args=(spec, worker_id), daemon=True, name=f"worker-{device}")
        proc.start()
        self.procs[device] = (worker_id, proc)

    def _watch(self) -> None:
        while not self._stop.wait(0.5):
            for device, (worker_id, proc) in list(self.procs.items()):
                if proc.is_alive() or self._stop.is_set():
                    continue
                reason = f"the worker on {device} died (exit code {proc.exitcode})"
                for job_id in self.queue.held_by(worker_id):
                    state = self.queue.release(job_id, worker_id, reason, self.spec.retries)
                    log.warning("job %s: %s; %s", job_id, reason, "queued again" if state == "queued" else state)
                self.restarts += 1
                self._start(device, len(self.devices) + self.restarts)

    def describe(self) -> list[dict]:
        out = []
        for device, (worker_id, proc) in self.procs.items():
            held = self.queue.held_by(worker_id)
            out.append({"device": device, "id": worker_id, "pid": proc.pid, "alive": proc.is_alive(),
                        "job": held[0] if held else None})
        return out

    def stop(self) -> None:
        """Stop the processes; their jobs go back to the queue (a stop is not the job's failure)."""
        self._stop.set()
        for worker_id, proc in self.procs.values():
            proc.kill()
            proc.join(10)
            for job_id in self.queue.held_by(worker_id):
                self.queue.release(job_id, worker_id, "the server stopped", retries=1 << 30)
