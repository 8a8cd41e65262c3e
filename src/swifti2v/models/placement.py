"""Where the weights live while a run goes: the three memory modes, in one place.

    fast      everything on the accelerator for the whole run; segments decoded as they finish.
    balanced  text encoder on the CPU (only the prompt's real tokens are encoded); each stage's models are
              on the accelerator only while that stage runs (Stage I's 14B leaves before Stage II);
              segments decoded as they finish, in spatial tiles.
    low       balanced, plus: both DiTs stored in fp8 (e4m3, computed in bf16, layer by layer; a DiT quantized
              by --quant or loaded from GGUF keeps that storage instead); Stage I's
              DiT streamed from CPU memory block by block with prefetch on a side stream; Stage II decoded
              at the end tile by tile into CPU memory, so one tile's causal cache is alive, not a whole
              frame's (~12 GiB in bf16 at 2K). For 24 GB cards (docs/benchmarks.md has the prediction).

VAEs run in the run's dtype (bf16 on GPUs).

On the CPU "the accelerator" is the CPU itself: moves are no-ops, the rest still applies.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from swifti2v.config import MEMORY_MODES
from swifti2v.errors import UserError
from swifti2v.models.quant import storage


@dataclass(frozen=True)
class Placement:
    text_on_cpu: bool
    offload_idle: bool  # a stage's models leave the accelerator when the stage ends
    fp8: tuple[str, ...]  # DiTs ("stage1", "stage2") stored in float8_e4m3fn, computed in the run's dtype
    streamed: tuple[str, ...]  # DiTs kept in CPU memory, streamed block by block (group offload + prefetch)
    decode_tile: int | None  # Stage II decode tile, in latent pixels (None: whole frames); 46 splits a 2K
    # latent (88 x 160) into 2 x 4 tiles with 20% overlap
    decode_order: str = "segment"  # "segment": as segments finish; "tile": at the end, one tile at a time
    tile_overlap: int = 2


PLACEMENTS = {
    "fast": Placement(text_on_cpu=False, offload_idle=False, fp8=(), streamed=(), decode_tile=None),
    "balanced": Placement(text_on_cpu=True, offload_idle=True, fp8=(), streamed=(), decode_tile=46),
    "low": Placement(text_on_cpu=True, offload_idle=True, fp8=("stage1", "stage2"), streamed=("stage1",),
                     decode_tile=46, decode_order="tile"),
}


def get_placement(mode: str) -> Placement:
    if mode not in PLACEMENTS:
        raise UserError(f"--memory-mode {mode!r} is unknown; use one of {', '.join(MEMORY_MODES)}")
    return PLACEMENTS[mode]


def load_device(p: Placement, device: torch.device, part: str) -> torch.device:
    """Where a component is loaded: the CPU when it will be moved (or streamed) later."""
    if part == "text":
        return torch.device("cpu") if p.text_on_cpu else device
    return torch.device("cpu") if p.offload_idle else device


def store_fp8(transformer: torch.nn.Module, compute_dtype: torch.dtype) -> None:
    """Weights in float8_e4m3fn, each layer upcast to `compute_dtype` for its forward (diffusers hooks).
    Norms, embeddings and the modulation tables stay in their dtype (diffusers' default skip list)."""
    transformer.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=compute_dtype)


def stream_blocks(transformer: torch.nn.Module, device: torch.device) -> None:
    """Keep the weights in CPU memory; each block is copied in just before it runs, the next one
    prefetched on a side stream (CUDA), and dropped after (diffusers group offloading)."""
    cuda = device.type == "cuda"
    transformer.enable_group_offload(onload_device=device, offload_device=torch.device("cpu"),
                                     offload_type="block_level", num_blocks_per_group=1, use_stream=cuda,
                                     non_blocking=cuda)
    transformer._swifti2v_streamed = True  # the adapter keeps to diffusers' own forward for it


class Placer:
    """Applies a Placement to loaded components and moves each stage's models in and out."""

    def __init__(self, placement: Placement, device: torch.device, dtype: torch.dtype):
        self.p, self.device, self.dtype = placement, device, dtype

    def prepare(self, comps) -> None:
        """fp8 storage and block streaming, once after loading."""
        for stage, models in (("stage1", self._stage_dits(comps, "stage1")),
                              ("stage2", self._stage_dits(comps, "stage2"))):
            for model in models:
                if stage in self.p.fp8 and storage(model) is None:  # quantized weights keep their storage
                    store_fp8(model, self.dtype)
                if stage in self.p.streamed:
                    stream_blocks(model, self.device)
        for vae in self._vaes(comps):
            torch.nn.Module.to(vae, self.dtype)  # (diffusers warns about fp32 modules; a VAE has none)

    @contextmanager
    def stage(self, comps, name: str) -> Iterator[None]:
        """The models of stage `name` ("stage1", "reference", "stage2") on the device while it runs."""
        modules = self._modules(comps, name)
        self._move(modules, self.device)
        try:
            yield
        finally:
            if self.p.offload_idle:
                self._move(modules, torch.device("cpu"))
            if self.device.type == "cpu":
                trim_heap()  # what the stage freed goes back to the system, not into the next stage's peak

    def _move(self, modules: list[torch.nn.Module], device: torch.device) -> None:
        for m in modules:
            if not getattr(m, "_swifti2v_streamed", False):
                m.to(device)
        if device.type == "cpu" and self.device.type == "cuda":
            torch.cuda.empty_cache()  # hand the freed blocks back before the next stage allocates

    def dits(self, comps) -> list[torch.nn.Module]:
        return self._stage_dits(comps, "stage1") + self._stage_dits(comps, "stage2")

    @staticmethod
    def _stage_dits(comps, stage: str) -> list[torch.nn.Module]:
        if stage == "stage2":
            return [comps.stage2.transformer]
        if comps.stage1 is None:
            return []
        return [m for m in (comps.stage1.transformer, comps.stage1.transformer_2) if m is not None]

    @staticmethod
    def _vaes(comps) -> list[torch.nn.Module]:
        vaes = [comps.stage2.vae.vae] + ([comps.stage1.vae.vae] if comps.stage1 is not None else [])
        return [v for v in vaes if any(True for _ in v.parameters())]  # the fixed codec has no weights

    def _modules(self, comps, name: str) -> list[torch.nn.Module]:
        s1 = comps.stage1
        if name == "stage1":
            encoder = s1.pipe.image_encoder
            return self._stage_dits(comps, "stage1") + [s1.vae.vae] + ([encoder] if encoder is not None else [])
        if name == "reference":
            return ([s1.vae.vae] if s1 is not None else []) + [comps.stage2.vae.vae]
        return [comps.stage2.transformer, comps.stage2.vae.vae]


@functools.cache
def _libc():
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name) if name else None
    except OSError:
        return None


M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter


_OWN_HEAP = False


def own_heap() -> None:
    """Mark this process as swifti2v's own (the `swifti2v` command, its UI and service): a CPU run may then tune
    glibc's allocator, which is process-wide (`steady_heap`). A program that imports swifti2v keeps its own."""
    global _OWN_HEAP
    _OWN_HEAP = True


def steady_heap(threshold: int = 1 << 20) -> None:
    """Allocations from `threshold` bytes up get their own pages, handed back when freed (glibc's mallopt
    M_MMAP_THRESHOLD, which also stops glibc raising the threshold as it goes): a DiT window's activations then
    leave nothing behind, and the resident set follows what is alive, segment after segment. Measured on the tiny
    preset (Stage II's peak at 33 -> 257 frames; Stage II's seconds at 33): glibc's own threshold 1.07 -> 1.20 GiB,
    28.0 s; 16 MiB 0.93-0.98 -> 1.12-1.13 GiB (1.14-1.22x: where the smaller blocks land varies), 29.3 s; 1 MiB
    0.88 -> 0.99 GiB (1.13x in both join methods), 30-32 s: every large allocation's pages are faulted in afresh.
    A no-op unless `own_heap` was called, or without glibc."""
    libc = _libc()
    if _OWN_HEAP and libc is not None and hasattr(libc, "mallopt"):
        libc.mallopt(M_MMAP_THRESHOLD, threshold)


def trim_heap() -> None:
    """Return the heap pages freed so far to the system (glibc's malloc_trim): freed activations otherwise stay
    resident, so a stage's peak would carry the one before it. A no-op where the C library has no malloc_trim."""
    libc = _libc()
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)
