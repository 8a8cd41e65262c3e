"""Context parallelism for the Wan DiTs: one window's tokens split over K processes (diffusers' own).

diffusers' `enable_parallelism(ContextParallelConfig(...))` and Wan's `_cp_plan` do the work: the RoPE
tables and the hidden states are split by sequence before the first block, the per-token timesteps at the
model's input, attention runs as Ulysses (all-to-all over heads) or ring (K/V passed around), and the output
projection gathers the sequence back. Our seams follow the tokens to their rank:

- RoPE positions: `PositionalRotaryPosEmbed` stays the module named `rope`, so its table (at the window's
  global block indices) is what the plan splits.
- Per-frame timesteps: `frame_modulated_forward` bypasses the model's forward (where the plan splits the
  timestep), so a parallel model takes the stock forward with per-token timesteps (`WanVelocity`); the
  per-token modulation is then built only for this rank's tokens (1/K of it).

The Stage II decode tiles (memory mode `balanced`) are spread over the processes too (`decode_shard`):
each decodes its own tiles and the blended frames are summed over them.

Ring attention needs a kernel that returns the log-sum-exp (flash, sage on CUDA); PyTorch's SDPA does
not, so on CPU only Ulysses runs. diffusers reads the device from `torch.accelerator`, which has no
devices on a CPU-only machine; `cpu_devices` gives it one for the call (the process group is gloo's).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.distributed as dist
from diffusers import ContextParallelConfig
from diffusers.models.transformers.transformer_wan import WanTransformer3DModel

from swifti2v.config import PARALLEL_KINDS
from swifti2v.errors import UserError
from swifti2v.models.modulation import install_frame_modulation
from swifti2v.models.rope import install_positional_rope
from swifti2v.models.vae import Shard


@contextlib.contextmanager
def cpu_devices() -> Iterator[None]:
    """torch.accelerator.device_count() = 1 while diffusers sets up on a machine with no accelerator."""
    if torch.accelerator.device_count() > 0:
        yield
        return
    original = torch.accelerator.device_count
    torch.accelerator.device_count = lambda: 1
    try:
        yield
    finally:
        torch.accelerator.device_count = original


def check_parallel(kind: str, degree: int, heads: int, attention: str, device: torch.device) -> None:
    """Raise UserError for a context-parallel setting that cannot run, naming the fix."""
    if kind not in PARALLEL_KINDS:
        raise UserError(f"--parallel {kind!r} is unknown; use one of {', '.join(PARALLEL_KINDS)}")
    if degree < 2:
        raise UserError(f"--parallel {kind} needs at least 2 processes (torchrun --nproc_per_node K); got {degree}")
    if kind == "ulysses" and heads % degree:
        raise UserError(f"--parallel ulysses splits the {heads} attention heads over {degree} processes; use a "
                        f"process count dividing {heads}, or --parallel ring")
    if kind == "ring" and (attention == "sdpa" or device.type != "cuda"):
        raise UserError("--parallel ring needs an attention kernel that returns the log-sum-exp (--attention flash "
                        "or sage, on CUDA); use --parallel ulysses")


def context_parallel(dit: WanTransformer3DModel, kind: str, degree: int) -> WanTransformer3DModel:
    """Split `dit`'s sequence over `degree` processes of the initialised process group (in place)."""
    if not dist.is_initialized():
        raise UserError("--parallel needs a process group: launch with torchrun --nproc_per_node K -m swifti2v ...")
    config = (ContextParallelConfig(ulysses_degree=degree) if kind == "ulysses"
              else ContextParallelConfig(ring_degree=degree))
    # Our class swaps first: diffusers' hooks keep the forward they find, so a RoPE module swapped after
    # them would run the stock table (positions 0..F-1) instead of the window's global block indices.
    install_positional_rope(dit)
    install_frame_modulation(dit)
    with cpu_devices():
        dit.enable_parallelism(config=config)
    return dit


def is_parallel(dit: WanTransformer3DModel) -> bool:
    return getattr(dit, "_parallel_config", None) is not None


def init_parallel(device_name: str) -> torch.device:
    """This process's device in a torchrun launch, the process group started (NCCL on CUDA, gloo on CPU)."""
    import os

    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        raise UserError("--parallel needs several processes: launch with torchrun --nproc_per_node K -m swifti2v ...")
    cuda = device_name != "cpu" and torch.cuda.is_available()
    local = int(os.environ.get("LOCAL_RANK", 0))
    device = torch.device("cuda", local) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo", device_id=device if cuda else None)
    return device


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def decode_shard() -> Shard | None:
    """This process's share of the decode tiles in a context-parallel run (None without a process group)."""
    if not dist.is_initialized() or dist.get_world_size() < 2:
        return None
    return Shard(dist.get_rank(), dist.get_world_size(), lambda t: dist.all_reduce(t))


def gather(obj) -> list:
    """Every process's `obj`, in rank order ([obj] without a process group)."""
    if not dist.is_initialized():
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out
