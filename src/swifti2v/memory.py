"""Memory before a run: `--memory-mode auto` takes the fastest memory mode whose predicted peak fits the free
GPU memory, and `check_fits` refuses a run predicted not to fit at all, naming what would.

The prediction is footprint.py's (weights per mode and storage + activations traced on the meta device, for
this preset, size and clip length; `swifti2v bench cost` reports the same numbers). Modes from fastest to
lightest: fast, balanced, low. CPU runs take `balanced` (placement changes nothing there but the decode
tiling), and are checked against available RAM with every model resident.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import torch

from swifti2v.config import MEMORY_MODES, RunConfig
from swifti2v.errors import UserError
from swifti2v.footprint import GIB, predicted_peaks
from swifti2v.models.quant import FP8_CAPABILITY

log = logging.getLogger(__name__)
AUTO = "auto"
CPU_MODE = "balanced"
HEADROOM_GIB = 2.0  # CUDA context, allocator fragmentation and what the prediction leaves out


@dataclass(frozen=True)
class MemoryChoice:
    mode: str
    free_gib: float | None  # free accelerator memory when the run started (None: CPU)
    predicted_gib: dict[str, float]  # predicted peak per mode (per "mode/quant" with --quant auto)
    quant: str | None = None  # what --quant auto chose (None: the user chose)

    def to_dict(self) -> dict:
        return {"mode": self.mode, "quant": self.quant, "free_gib": self.free_gib, "headroom_gib": HEADROOM_GIB,
                "predicted_peak_gib": {k: round(v, 2) for k, v in self.predicted_gib.items()}}


def choose(predicted_gib: dict, free_gib: float, order: list | None = None):
    """The first of `order` (default MEMORY_MODES, fastest first) whose peak + headroom fits; the lightest
    when none does (which check_fits then refuses, naming what would fit)."""
    order = list(MEMORY_MODES) if order is None else order
    return next((key for key in order if predicted_gib[key] + HEADROOM_GIB <= free_gib), order[-1])


QUANT_SPEED = ("fp8", "none", "int8")  # fastest first: fp8 matmuls; int8 and GGUF de-quantize every call


def auto_quants(cfg: RunConfig, device: torch.device) -> tuple[str, ...]:
    """The storages `--quant` allows: the one chosen, or for `auto` those this device runs, fastest first."""
    if cfg.quant != AUTO:
        return (cfg.quant,)
    try:
        import torchao  # noqa: F401
    except ImportError:
        return ("none",)
    if device.type != "cuda":
        return ("none",)  # a CPU run computes in fp32: int8 saves memory, not time
    fp8 = torch.cuda.get_device_capability(device) >= FP8_CAPABILITY
    return tuple(q for q in QUANT_SPEED if q != "fp8" or fp8)


def resolve_memory_mode(cfg: RunConfig, device: torch.device) -> tuple[RunConfig, MemoryChoice | None]:
    """cfg with `auto` memory mode and quant replaced by the fastest combination predicted to fit (modes
    fastest first, then storages fastest first), and the numbers behind the choice (None when nothing was
    auto)."""
    quants = auto_quants(cfg, device)
    if cfg.memory_mode != AUTO and cfg.quant != AUTO:
        return cfg, None
    chosen = None if cfg.quant != AUTO else quants[0]
    if device.type != "cuda":
        mode = CPU_MODE if cfg.memory_mode == AUTO else cfg.memory_mode
        return replace(cfg, memory_mode=mode, quant=quants[0]), MemoryChoice(mode, None, {}, chosen)
    modes = MEMORY_MODES if cfg.memory_mode == AUTO else (cfg.memory_mode,)
    predicted = {(m, q): predicted_peaks(replace(cfg, memory_mode=CPU_MODE, quant=q))[m]["peak"]
                 for q in quants for m in modes}
    free_gib = torch.cuda.mem_get_info(device)[0] / 2**30
    mode, quant = choose(predicted, free_gib, [(m, q) for m in modes for q in quants])
    names = {(m, q): m if len(quants) == 1 else f"{m}/{q}" for m, q in predicted}
    log.info("memory mode %s, quant %s: %.1f GiB free; predicted peak %s (+ %.1f GiB headroom)", mode, quant,
             free_gib, ", ".join(f"{names[k]} {g:.1f} GiB" for k, g in predicted.items()), HEADROOM_GIB)
    choice = MemoryChoice(mode, round(free_gib, 2), {names[k]: g for k, g in predicted.items()},
                          None if cfg.quant != AUTO else quant)
    return replace(cfg, memory_mode=mode, quant=quant), choice


def free_gib(device: torch.device) -> float | None:
    """Memory a run on `device` may use: free GPU memory plus what this process's allocator already holds; on
    a CPU, the kernel's MemAvailable plus this process's resident memory (None where neither can be read)."""
    if device.type == "cuda":
        return (torch.cuda.mem_get_info(device)[0] + torch.cuda.memory_reserved(device)) / GIB
    try:
        import psutil
    except ImportError:
        return None
    return (psutil.virtual_memory().available + psutil.Process().memory_info().rss) / GIB


CPU_MARGIN = 1.5  # a CPU run's resident memory over the prediction: the allocator keeps freed blocks, frame
# buffers and the video encoder are not counted (measured up to 1.5 GiB over on debug-random at 1024x2048)


def predicted_gib(cfg: RunConfig, device: torch.device, dtype: torch.dtype) -> dict[str, float]:
    """The run's predicted peak per step and overall on `device` (the host's memory for a CPU run, with
    CPU_MARGIN)."""
    cfg = replace(cfg, seed=0, device="auto")  # what memory does not depend on: one prediction serves every seed
    if device.type == "cuda":
        return predicted_peaks(cfg)[cfg.memory_mode]
    host = predicted_peaks(cfg, host_scale=torch.empty(0, dtype=dtype).element_size() / 2)["host"]
    return {k: v * CPU_MARGIN for k, v in host.items()}


def check_fits(cfg: RunConfig, device: torch.device, dtype: torch.dtype, force: bool = False) -> None:
    """Refuse, before anything loads, a run whose predicted peak (+ headroom) exceeds the memory its device
    has free, naming the setting that would fit; `force` runs it anyway (with a warning)."""
    free = free_gib(device)
    need = predicted_gib(cfg, device, dtype)
    if free is None or need["peak"] + HEADROOM_GIB <= free:
        return
    where = "GPU memory" if device.type == "cuda" else "RAM"
    step = max(("stage1", "reference", "stage2"), key=lambda k: need[k])
    text = (f"this run is predicted to need {need['peak']:.1f} GiB of {where} at its peak ({STEP_NAMES[step]}) "
            f"+ {HEADROOM_GIB:.0f} GiB headroom, and {free:.1f} GiB is free")
    if force:
        log.warning("%s; running anyway (--force)", text)
        return
    raise UserError(f"{text}; {what_fits(cfg, device, dtype, free, need)}, or pass --force to run it anyway")


STEP_NAMES = {"stage1": "Stage I", "reference": "the hybrid reference", "stage2": "Stage II and its decode"}


def what_fits(cfg: RunConfig, device: torch.device, dtype: torch.dtype, free: float, need: dict) -> str:
    """The first setting predicted to fit: a lighter memory mode, int8 weights, or a smaller size (the
    activations scale with the pixel count; the estimate is checked with one more prediction)."""
    budget = free - HEADROOM_GIB
    options = []
    if device.type == "cuda":
        options += [(f"--memory-mode {m}", replace(cfg, memory_mode=m))
                    for m in MEMORY_MODES[MEMORY_MODES.index(cfg.memory_mode) + 1:]]
        if cfg.quant == "none":
            options.append((f"--memory-mode {cfg.memory_mode} --quant int8", replace(cfg, quant="int8")))
    for flag, option in options:
        gib = predicted_gib(option, device, dtype)["peak"]
        if gib <= budget:
            return f"{flag} is predicted to fit ({gib:.1f} GiB)"
    models = need.get("models", 0.0)
    v, mult = cfg.video, max(32, cfg.stage2.geometry.pixel_multiple)
    scale = ((budget - models) / max(need["peak"] - models, 1e-9)) ** 0.5 if budget > models else 0.0
    for shrink in (1.0, 0.7):
        h, w = (max(mult, int(x * scale * shrink) // mult * mult) for x in (v.height, v.width))
        if scale > 0 and (h, w) != (v.height, v.width):
            smaller = replace(cfg, video=replace(v, height=h, width=w))
            gib = predicted_gib(smaller, device, dtype)["peak"]
            if gib <= budget:
                return f"--height {h} --width {w} is predicted to fit ({gib:.1f} GiB)"
    return (f"the models alone are predicted to take {models:.1f} GiB: use a smaller preset or quantized weights"
            if models > budget else "use a smaller --height/--width or fewer --frames")


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
