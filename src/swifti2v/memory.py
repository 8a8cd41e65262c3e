"""`--memory-mode auto`: the fastest memory mode whose predicted peak fits the free GPU memory.

The prediction is footprint.py's (weights per mode + activations traced on the meta device, for this
preset, size and clip length; `swifti2v bench cost` reports the same numbers). Modes from fastest to
lightest: fast, balanced, low. CPU runs take `balanced` (placement changes nothing there but the decode tiling).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import torch

from swifti2v.config import MEMORY_MODES, RunConfig
from swifti2v.footprint import predicted_peaks

log = logging.getLogger(__name__)
AUTO = "auto"
CPU_MODE = "balanced"
HEADROOM_GIB = 2.0  # CUDA context, allocator fragmentation and what the prediction leaves out


@dataclass(frozen=True)
class MemoryChoice:
    mode: str
    free_gib: float | None  # free accelerator memory when the run started (None: CPU)
    predicted_gib: dict[str, float]  # predicted peak per mode

    def to_dict(self) -> dict:
        return {"mode": self.mode, "free_gib": self.free_gib, "headroom_gib": HEADROOM_GIB,
                "predicted_peak_gib": {k: round(v, 2) for k, v in self.predicted_gib.items()}}


def choose(predicted_gib: dict[str, float], free_gib: float) -> str:
    """The first of MEMORY_MODES (fastest first) whose peak + headroom fits; the lightest when none does."""
    for mode in MEMORY_MODES:
        if predicted_gib[mode] + HEADROOM_GIB <= free_gib:
            return mode
    return MEMORY_MODES[-1]


def resolve_memory_mode(cfg: RunConfig, device: torch.device) -> tuple[RunConfig, MemoryChoice | None]:
    """cfg with `auto` replaced by a mode, and the numbers behind the choice (None when not auto)."""
    if cfg.memory_mode != AUTO:
        return cfg, None
    if device.type != "cuda":
        return replace(cfg, memory_mode=CPU_MODE), MemoryChoice(CPU_MODE, None, {})
    predicted = {mode: peaks["peak"] for mode, peaks in predicted_peaks(replace(cfg, memory_mode=CPU_MODE)).items()}
    free_gib = torch.cuda.mem_get_info(device)[0] / 2**30
    mode = choose(predicted, free_gib)
    log.info("memory mode %s: %.1f GiB free; predicted peak %s (+ %.1f GiB headroom)", mode, free_gib,
             ", ".join(f"{m} {g:.1f} GiB" for m, g in predicted.items()), HEADROOM_GIB)
    if predicted[mode] + HEADROOM_GIB > free_gib:
        log.warning("even --memory-mode low is predicted to need %.1f GiB with %.1f GiB free; trying it anyway",
                    predicted[mode], free_gib)
    return replace(cfg, memory_mode=mode), MemoryChoice(mode, round(free_gib, 2), predicted)


def oom_advice(memory_mode: str | None) -> str:
    """Out of memory: what would fit, and (for a run in a memory mode) that finished work is kept for the re-run."""
    fit = "lower --segment-blocks, --height/--width or --frames, or use a GPU with more memory"
    if memory_mode is None:
        return f"out of GPU memory; {fit}"
    lighter = {"fast": "--memory-mode balanced (or low)", "balanced": "--memory-mode low",
               "auto": "--memory-mode low"}.get(memory_mode)
    fix = f"re-run with {lighter}" if lighter else fit
    return (f"out of GPU memory in --memory-mode {memory_mode}; {fix} (2K fits a 24 GB card in low). "
            "Finished stages and segments are kept: the same command resumes")
