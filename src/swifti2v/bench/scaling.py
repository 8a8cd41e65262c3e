"""`swifti2v bench scaling`: wall time and peak memory of CSG versus end-to-end Stage II (`--no-csg`) as
the clip grows, side by side in one run; with `--tiles PX`, Stage II in spatial tiles of PX pixels versus whole
frames instead; with `--long`, clips past Stage I's window (its windows joined by `--extend last-frame` and
`context`), Stage I's and Stage II's peaks each against the one-window run's.

Every measurement is a fresh `swifti2v generate` process (so its peak memory is its own), run in
interleaved order (CSG, end-to-end, CSG, ... at each length), with the same image, prompt and seed.
Seconds per stage and the peak come from the run's own sidecar; wall is the process's, imports included.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from swifti2v.errors import UserError

MODES = {"csg": [], "no-csg": ["--no-csg"]}  # the method, then its baseline
LABELS = {"csg": "CSG (M=3, N=1)", "no-csg": "end-to-end (--no-csg)", "tiles": "tiles", "whole": "whole frames"}
EXTENDS = {"last-frame": ["--extend", "last-frame"], "context": ["--extend", "context"]}


@dataclass(frozen=True)
class ScalingConfig:
    preset: str = "bench-cpu"
    frames: tuple[int, ...] = (33, 65, 129, 257)
    repeats: int = 1
    device: str = "auto"
    seed: int = 0
    long: bool = False  # the rows are Stage I's join methods (EXTENDS), not CSG vs end-to-end
    tiles: int = 0  # > 0: Stage II in tiles of this many pixels vs whole frames, not CSG vs end-to-end

    def __post_init__(self):
        from swifti2v.config import nearest_4k1
        from swifti2v.presets import get_preset

        for f in self.frames:
            if f < 5 or (f - 1) % 4:
                raise UserError(f"--frames value {f} is not 4k+1; use {nearest_4k1(max(f, 5))}")
        if self.tiles < 0 or (self.tiles and self.long):
            raise UserError(f"--tiles {self.tiles} must be a tile side in pixels, and not with --long")
        if self.repeats < 1:
            raise UserError(f"--repeats {self.repeats} must be at least 1")
        get_preset(self.preset)  # an unknown preset fails here, not in the first child process


def _image(path: Path, size: int = 512) -> Path:
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path)
    return path


def run_once(cfg: ScalingConfig, frames: int, mode: str, image: Path, work: Path) -> dict:
    out = work / f"{mode}-{frames}.mp4"
    cmd = [sys.executable, "-m", "swifti2v", "generate", "--preset", cfg.preset, "--image", str(image),
           "--prompt", "the camera pans left", "--frames", str(frames), "--seed", str(cfg.seed),
           "--device", cfg.device, "--out", str(out), "-q", *modes(cfg)[mode]]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise UserError(f"bench run {mode} at {frames} frames failed (exit {proc.returncode}): "
                        f"{proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else 'no message'}")
    info = json.loads(out.with_suffix(".json").read_text())
    seconds = info["seconds"]
    memory, stages = info["memory"], info.get("stage_peak_gib", {})
    peak = memory.get("peak_allocated_gib", memory.get("peak_rss_gib"))
    return {"frames": frames, "mode": mode, "wall_s": round(wall, 2),
            "stage2_s": round(seconds.get("stage2", 0.0), 2), "seconds": seconds, "peak_gib": peak, "memory": memory,
            # per stage where the system reports it (CUDA, Linux), else the process's peak
            "stage1_peak_gib": stages.get("stage1", peak), "stage2_peak_gib": stages.get("stage2", peak),
            "stage1_windows": len(info["plan"]["stage1"]["windows"]),
            "call_tokens": info["plan"]["largest_call_tokens"]}  # the largest DiT call: a window, or its tile


def modes(cfg: ScalingConfig) -> dict[str, list[str]]:
    if cfg.tiles:
        return {"tiles": ["--stage2-tile", str(cfg.tiles)], "whole": ["--stage2-tile", "0"]}
    return EXTENDS if cfg.long else MODES


def run_scaling(cfg: ScalingConfig, progress: Callable[[str, int, int], None]) -> dict:
    runs = []
    total = len(cfg.frames) * len(modes(cfg)) * cfg.repeats
    with tempfile.TemporaryDirectory(prefix="swifti2v-scaling-") as tmp:
        work = Path(tmp)
        image = _image(work / "input.png")
        for _ in range(cfg.repeats):
            for frames in cfg.frames:
                for mode in modes(cfg):  # interleaved: the two modes meet the same machine state
                    runs.append(run_once(cfg, frames, mode, image, work))
                    progress("bench runs", len(runs), total)
    table = summarise_long(runs) if cfg.long else summarise(runs, tuple(modes(cfg)))
    return {"config": asdict(cfg), "runs": runs, "table": table}


def summarise(runs: list[dict], pair: tuple[str, str] = tuple(MODES)) -> list[dict]:
    """Per length: medians of the method and its baseline (`pair`), and baseline / method ratios (> 1: the
    method is better)."""
    rows = []
    for frames in sorted({r["frames"] for r in runs}):
        med = {}
        for mode in pair:
            mine = [r for r in runs if r["frames"] == frames and r["mode"] == mode]
            med[mode] = {k: float(np.median([r[k] for r in mine])) for k in ("wall_s", "stage2_s", "peak_gib")}
            med[mode]["tokens"] = mine[0]["call_tokens"]
        c, e = med[pair[0]], med[pair[1]]
        rows.append({"frames": frames, pair[0]: c, pair[1]: e,
                     "stage2_ratio": round(e["stage2_s"] / c["stage2_s"], 3),
                     "wall_ratio": round(e["wall_s"] / c["wall_s"], 3),
                     "peak_ratio": round(e["peak_gib"] / c["peak_gib"], 3)})
    return rows


def summarise_long(runs: list[dict]) -> list[dict]:
    """Per join method and length: medians, and each against the shortest length's (the one-window run):
    wall seconds per frame, Stage I's and Stage II's peaks (RSS on a CPU, allocated on a GPU)."""
    rows = []
    for mode in EXTENDS:
        base = None
        for frames in sorted({r["frames"] for r in runs}):
            mine = [r for r in runs if r["frames"] == frames and r["mode"] == mode]
            if not mine:
                continue
            row = {"mode": mode, "frames": frames, "stage1_windows": mine[0]["stage1_windows"],
                   **{k: float(np.median([r[k] for r in mine])) for k in ("wall_s", "stage1_peak_gib",
                                                                         "stage2_peak_gib", "peak_gib")}}
            row["wall_per_frame_s"] = row["wall_s"] / frames
            base = base or row
            for k in ("wall_per_frame_s", "stage1_peak_gib", "stage2_peak_gib"):
                row[f"{k}_ratio"] = round(row[k] / base[k], 3)
            rows.append(row)
    return rows


def long_markdown(result: dict) -> str:
    lines = ["| --extend | frames | Stage I windows | wall s | s per frame (× shortest) | Stage I peak GiB (×) | "
             "Stage II peak GiB (×) |", "|---|---|---|---|---|---|---|"]
    for r in result["table"]:
        cells = [f"{r[k]:{f}} ({r[f'{k}_ratio']:.2f}×)" for k, f in (("wall_per_frame_s", ".2f"),
                                                                     ("stage1_peak_gib", ".3f"),
                                                                     ("stage2_peak_gib", ".3f"))]
        lines.append(f"| {r['mode']} | {r['frames']} | {r['stage1_windows']} | {r['wall_s']:.1f} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def to_markdown(result: dict) -> str:
    if result["config"].get("long"):
        return long_markdown(result)
    rows, (a, b) = result["table"], _pair(result)
    n, d = ("CSG", "e2e") if a == "csg" else (a, b)
    lines = [f"| frames | tokens per DiT call {n} / {d} | Stage II s {n} / {d} | wall s {n} / {d} | "
             f"peak GiB {n} / {d} | {d}÷{n}: Stage II, wall, peak |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        c, e = r[a], r[b]
        lines.append(f"| {r['frames']} | {c['tokens']:,} / {e['tokens']:,} | {c['stage2_s']:.1f} / {e['stage2_s']:.1f}"
                     f" | {c['wall_s']:.1f} / {e['wall_s']:.1f} | {c['peak_gib']:.3f} / {e['peak_gib']:.3f} | "
                     f"{r['stage2_ratio']:.2f}×, {r['wall_ratio']:.2f}×, {r['peak_ratio']:.2f}× |")
    first, last = rows[0][a]["peak_gib"], rows[-1][a]["peak_gib"]
    lines.append("")
    lines.append(f"{LABELS[a]} peak at {rows[-1]['frames']} frames / at {rows[0]['frames']} frames: "
                 f"{last / first:.3f}×; {LABELS[b]}: {rows[-1][b]['peak_gib'] / rows[0][b]['peak_gib']:.3f}×.")
    return "\n".join(lines) + "\n"


def _pair(result: dict) -> tuple[str, str]:
    """The method and its baseline that a (CSG or tiles) result compares."""
    return ("tiles", "whole") if result["config"].get("tiles") else tuple(MODES)


def plot(result: dict, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UserError("the scaling plot needs matplotlib: pip install 'swifti2v[bench]'") from None
    if result["config"].get("long"):
        return plot_long(result, path, plt)
    rows = result["table"]
    frames = [r["frames"] for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for mode, style, color in zip(_pair(result), ("o-", "s--"), ("tab:blue", "tab:orange"), strict=True):
        label = LABELS[mode] + (f" of {result['config']['tiles']} px" if mode == "tiles" else "")
        axes[0].plot(frames, [r[mode]["stage2_s"] for r in rows], style, color=color, label=f"{label}, Stage II")
        axes[0].plot(frames, [r[mode]["wall_s"] for r in rows], style, color=color, alpha=0.4,
                     label=f"{label}, whole run")
        axes[1].plot(frames, [r[mode]["peak_gib"] for r in rows], style, color=color, label=label)
    axes[0].set(xlabel="frames", ylabel="seconds", title="time")
    axes[1].set(xlabel="frames", ylabel="GiB", title="peak memory", ylim=(0, None))
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.set_xticks(frames, [str(f) for f in frames])
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    cfg = result["config"]
    fig.suptitle(f"swifti2v bench scaling --preset {cfg['preset']}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_long(result: dict, path: Path, plt) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for mode, style in zip(EXTENDS, ("o-", "s--"), strict=True):
        rows = [r for r in result["table"] if r["mode"] == mode]
        frames = [r["frames"] for r in rows]
        axes[0].plot(frames, [r["wall_per_frame_s"] for r in rows], style, label=f"--extend {mode}")
        axes[1].plot(frames, [r["stage1_peak_gib"] for r in rows], style, label=f"{mode}: Stage I")
        axes[1].plot(frames, [r["stage2_peak_gib"] for r in rows], style, alpha=0.5, label=f"{mode}: Stage II")
    axes[0].set(xlabel="frames", ylabel="wall seconds per frame", title="time per frame", ylim=(0, None))
    axes[1].set(xlabel="frames", ylabel="GiB", title="peak memory per stage", ylim=(0, None))
    frames = sorted({r["frames"] for r in result["table"]})
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.set_xticks(frames, [str(f) for f in frames])
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle(f"swifti2v bench scaling --long --preset {result['config']['preset']}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
