"""Attention backends and torch.compile for the DiTs (diffusers' own switches, checked here).

Backends: PyTorch SDPA (default), flash-attn 2, flash-attn 3, SageAttention, flex, each through
diffusers' `set_attention_backend` when its package is installed (extras `flash`, `sage`; flash-attn 3 is
built from source).
`attention_error` measures a backend against SDPA on the same inputs (used by `swifti2v bench gpu`).

Compile: every DiT block is compiled (regional compilation, as `compile_repeated_blocks`). CSG windows differ in length
(the first has no neighbours, the last may have fewer noisy blocks), so the blocks are compiled with a
dynamic token dimension: one graph for every window, no recompiles (tests/unit/test_speed.py counts them).
"""

from __future__ import annotations

import importlib.util

import torch
from diffusers.models.attention_dispatch import dispatch_attention_fn

from swifti2v.config import ATTENTION_BACKENDS
from swifti2v.errors import UserError

# our name (config.ATTENTION_BACKENDS) -> (diffusers backend, the package it needs, how to install it)
ATTENTION = {
    "sdpa": ("native", None, None),
    "flash": ("flash", "flash_attn", "pip install 'swifti2v[flash]'"),
    "flash3": ("_flash_3", "flash_attn_interface", "build flash-attention's hopper/ package"),
    "sage": ("sage", "sageattention", "pip install 'swifti2v[sage]'"),
    "flex": ("flex", None, None),
}


def check_attention(name: str) -> str:
    """The diffusers backend for `name`, or a UserError naming what to install."""
    if name not in ATTENTION_BACKENDS:
        raise UserError(f"--attention {name!r} is unknown; use one of {', '.join(ATTENTION)}")
    backend, package, install = ATTENTION[name]
    if package is not None and importlib.util.find_spec(package) is None:
        raise UserError(f"--attention {name} needs the {package} package ({install}; CUDA only), "
                        "or use --attention sdpa")
    return backend


def set_attention(transformer: torch.nn.Module, name: str) -> None:
    backend = check_attention(name)
    if name != "sdpa":
        transformer.set_attention_backend(backend)


def compile_blocks(transformer: torch.nn.Module, **kwargs) -> None:
    """torch.compile every DiT block, as diffusers' `compile_repeated_blocks` does (it finds blocks by class
    name, which our per-frame block subclass changes): one graph shared by all windows, dynamic token count.

    Duck shapes are turned off (process-wide, only when compiling): otherwise dynamo notices that two sizes
    of the first window happen to be equal, specialises on it, and recompiles at the next window length."""
    import torch.fx.experimental._config as fx_config

    fx_config.use_duck_shape = False
    for block in transformer.blocks:
        block.compile(dynamic=True, **kwargs)


@torch.no_grad()
def attention_error(name: str, device: torch.device, dtype: torch.dtype = torch.bfloat16, tokens: int = 4096,
                    heads: int = 24, head_dim: int = 128, seed: int = 0) -> float:
    """Max |backend - SDPA| / max |SDPA| on random q, k, v (B, L, H, D), diffusers' layout."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    q, k, v = (torch.randn(1, tokens, heads, head_dim, generator=g).to(device, dtype) for _ in range(3))
    backend = ATTENTION[name][0] if name in ATTENTION else name  # diffusers' own names pass through
    ref = dispatch_attention_fn(q, k, v, backend="native").float()
    out = dispatch_attention_fn(q, k, v, backend=backend).float()
    return float((out - ref).abs().max() / ref.abs().max())
