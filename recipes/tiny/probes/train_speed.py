"""Seconds per training step of the tiny Stage II under each mixed precision, side by side in one run: the figure
behind docs/training.md's precision note. Runs `train` for STEPS steps per precision from the bundle, as the CPU
recipe does (batch 4, 128-px crops, procedural clips, downsampled references), and reports the median step time
after the first WARMUP steps (the logged samples/s of each step) and its ratio to fp32.

    python -m recipes.tiny.probes.train_speed [--steps 16] [--warmup 4] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
from pathlib import Path

import torch

from swifti2v.files import atomic_write_json
from swifti2v.training.config import load_train_config
from swifti2v.training.engine import train

BATCH = 4


def step_seconds(precision: str, steps: int, warmup: int, out: Path) -> float:
    overrides = [f"batch_size={BATCH}", "data.height=128", "data.width=128", "condition.kind=\"downsample\"",
                 "model.stage2=\"src/swifti2v/weights/tiny/stage2\"", f"max_steps={steps}", "log_every=1",
                 "save_every=100000", "tracker=none", f"mixed_precision=\"{precision}\""]
    train(load_train_config("configs/train/tiny-stage2.toml", overrides, {"output_dir": str(out)}))
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return statistics.median(BATCH / r["samples_per_s"] for r in rows[warmup:])


def cpu_name() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
             if line.startswith("model name")] if cpuinfo.is_file() else []
    return names[0] if names else platform.machine()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m recipes.tiny.probes.train_speed", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--warmup", type=int, default=4)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        seconds = {p: step_seconds(p, args.steps, args.warmup, Path(tmp) / p) for p in ("no", "bf16")}
    result = {"cpu": cpu_name(), "capability": torch.backends.cpu.get_cpu_capability(),
              "threads": torch.get_num_threads(), "steps": args.steps, "warmup": args.warmup,
              "seconds_per_step": seconds, "bf16_speedup": seconds["no"] / seconds["bf16"]}
    print(json.dumps(result, indent=1))
    if args.json:
        atomic_write_json(args.json, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
