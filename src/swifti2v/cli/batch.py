"""`swifti2v batch JOBS.jsonl --out-dir D`: the command line of the batch runner (cli/jobs.py)."""

from __future__ import annotations

import argparse

from swifti2v.cli.common import EXIT_USER_ERROR, is_rank0, progress, quiet_libraries, run_options, video_options
from swifti2v.errors import UserError

COMMANDS = ("batch",)


def add_parser(sub: argparse._SubParsersAction) -> None:
    b = sub.add_parser("batch", help="many generations from a JSONL file: resumable, retried, across processes",
                       description="One job per line: {\"image\": ..., \"prompt\": ..., \"name\": \"out.mp4\", "
                       "and any generate option by name, e.g. \"frames\": 81, \"seed\": 3}. Finished jobs are "
                       "skipped on a re-run, failed ones retried; a bad job never stops the others. Across processes "
                       "or GPUs: `torchrun --nproc_per_node K -m swifti2v batch ...` (each rank takes every K-th job; "
                       "rank 0 writes OUT_DIR/summary.json).")
    b.add_argument("jobs", help="the jobs file (.jsonl); image paths are relative to it")
    b.add_argument("--out-dir", required=True, help="outputs, status/ and summary.json go here (and only here)")
    b.add_argument("--retries", type=int, default=2, help="extra attempts for a failing job, over all runs (default 2)")
    b.add_argument("--pipeline", action="store_true",
                   help="under torchrun with an even number of processes: pair them, one runs Stage I (+ hybrid "
                   "reference) of job k+1 while its partner runs Stage II of job k (at most one finished Stage I "
                   "waiting); summary.json gives each stage's utilisation")
    video_options(b, "frame count, 4k+1, any length >= 5 (default: preset's; past Stage I's window see --extend)")
    run_options(b, batch=True)


def run(args: argparse.Namespace) -> int:
    quiet_libraries()
    from swifti2v.cli.jobs import run_batch

    if args.retries < 0:
        raise UserError(f"--retries {args.retries} must be 0 or more")
    args.lora = getattr(args, "lora", None)
    summary = run_batch(args, progress(args))
    if is_rank0():
        print(f"{summary['done']}/{summary['jobs']} jobs done, {summary['failed']} failed"
              + (f", {summary['pending']} pending (a process died; re-run the same command)"
                 if summary.get("lost_processes") else "")
              + "".join(f"\n  {job}: {error}" for job, error in summary["failures"].items()))
    if summary.get("lost_processes"):
        return 1
    return 0 if summary["failed"] == 0 else EXIT_USER_ERROR
