"""Device/dtype choice, stage timing and peak memory: what every run reports in its sidecar."""

from __future__ import annotations

import logging
import resource
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from swifti2v.errors import UserError

log = logging.getLogger(__name__)
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        log.info("device: %s (%s)", device, "CUDA available" if device.type == "cuda" else "no CUDA found")
        return device
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"--device {name!r} is not a device; use auto, cpu or cuda[:N]") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {name} requested but CUDA is not available; use --device cpu")
    return device


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
        log.info("DiT compute dtype: %s (%s)", dtype,
                 "bf16 on GPU" if device.type == "cuda" else "fp32: bf16 matmuls are slow on CPU")
        return dtype
    if name not in DTYPES:
        raise UserError(f"--dtype {name!r} is unknown; use auto, {', '.join(DTYPES)}")
    return DTYPES[name]


def peak_memory(device: torch.device) -> dict[str, float]:
    """Peak GPU memory allocated (CUDA) or peak resident set size of this process (CPU), in GiB."""
    if device.type == "cuda":
        return {"peak_allocated_gib": torch.cuda.max_memory_allocated(device) / 2**30,
                "peak_reserved_gib": torch.cuda.max_memory_reserved(device) / 2**30}
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return {"peak_rss_gib": rss / (2**30 if sys.platform == "darwin" else 2**20)}


def rss_peak_gib() -> float | None:
    """This process's peak resident set size since the last `reset_rss_peak` (Linux's VmHWM), or None."""
    try:
        with open("/proc/self/status") as f:
            line = next(x for x in f if x.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return None
    return int(line.split()[1]) / 2**20  # kB


def reset_rss_peak() -> bool:
    """Start a new peak-RSS window (Linux: `5` to /proc/self/clear_refs); False where the system has none."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


class StageTimer:
    """Wall seconds per named stage (synchronising CUDA at the boundaries), each stage's own: a stage
    opened inside another pauses the outer one's clock. Also the peak memory inside each stage (CUDA: allocated;
    CPU on Linux: resident set size), nested stages folding their peaks into the enclosing ones, and the
    run's overall peak (`run_peak_gib`: the counters are reset per stage, so the process's own counter is not it)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.seconds: dict[str, float] = {}
        self.peaks_gib: dict[str, float] = {}
        self.run_peak_gib = 0.0
        self._open: list[str] = []
        self._since = 0.0  # when the innermost open stage's clock last started
        self._rss = device.type == "cpu" and rss_peak_gib() is not None and reset_rss_peak()

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        self._sync()
        self._fold_peak()
        self._charge()
        self._open.append(name)
        try:
            yield
        finally:
            self._sync()
            self._charge()
            self._fold_peak()
            self._open.pop()

    def _charge(self) -> None:
        """Credit the time since the last boundary to the innermost open stage."""
        now = time.perf_counter()
        if self._open:
            name = self._open[-1]
            self.seconds[name] = self.seconds.get(name, 0.0) + now - self._since
        self._since = now

    def _fold_peak(self) -> None:
        """Credit the peak since the last reset to every open stage, then start a new window."""
        if self.device.type == "cuda":
            peak = torch.cuda.max_memory_allocated(self.device) / 2**30
            torch.cuda.reset_peak_memory_stats(self.device)
        elif self._rss:
            peak = rss_peak_gib() or 0.0
            reset_rss_peak()
        else:
            return
        self.run_peak_gib = max(self.run_peak_gib, peak)
        for name in self._open:
            self.peaks_gib[name] = max(self.peaks_gib.get(name, 0.0), peak)

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
