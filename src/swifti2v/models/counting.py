"""Counting without running: FLOPs of a Wan DiT call from its config, and peak live memory of any forward
traced on the meta device.

`dit_flops` is the closed form (every matmul and the patch convolution; norms, RoPE and elementwise ops
are left out, as FLOP counters do). tests/unit/test_cost.py checks it against torch.utils.flop_counter
on real models run on the CPU and on the full-size configs on meta.

`trace_peak` runs a forward on meta tensors and follows every tensor an op creates until its last
reference (view or not) is gone: the peak of live bytes is the activation memory of that forward in eager
mode, without allocator overhead. Attention is swapped for an output-sized placeholder, as a flash-style
kernel keeps no L x L matrix; its workspace (the per-row softmax statistics) is added by `dit_memory`.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import FlopCounterMode

TEXT_TOKENS = 512


@dataclass(frozen=True)
class DiTCall:
    """One DiT forward: `frames` latent frames of h x w latent pixels (before patching)."""

    frames: int
    height: int
    width: int
    text_tokens: int = TEXT_TOKENS
    image_tokens: int = 0  # CLIP tokens (Wan2.1 I2V)
    mixed_timesteps: bool = False  # clean context + noisy frames in one window (CSG)

    def tokens(self, cfg: dict) -> int:
        p_t, p_h, p_w = cfg["patch_size"]
        return (self.frames // p_t) * (self.height // p_h) * (self.width // p_w)


def dit_flops(cfg: dict, call: DiTCall, per_frame_modulation: bool = True) -> dict[str, float]:
    """Forward FLOPs (2 per multiply-add) of a WanTransformer3DModel call, split linear / attention."""
    d = cfg["num_attention_heads"] * cfg["attention_head_dim"]
    f, layers = cfg["ffn_dim"], cfg["num_layers"]
    p = cfg["patch_size"][0] * cfg["patch_size"][1] * cfg["patch_size"][2]
    out_ch = cfg.get("out_channels") or cfg["in_channels"]
    n = call.tokens(cfg)
    t, i = call.text_tokens, call.image_tokens if cfg.get("image_dim") else 0
    n_time = (call.frames // cfg["patch_size"][0] if per_frame_modulation else n) if call.mixed_timesteps else 1
    linear = (2 * n * cfg["in_channels"] * p * d  # patch embedding
              + 2 * n_time * (cfg["freq_dim"] * d + d * d + 6 * d * d)  # time embedding + modulation
              + 2 * t * (cfg["text_dim"] * d + d * d)  # text projection
              + 2 * n * d * out_ch * p)  # output projection
    per_layer = (2 * n * 4 * d * d  # self-attention q, k, v, o
                 + 2 * n * 2 * d * d + 2 * t * 2 * d * d  # cross-attention q, o on video; k, v on text
                 + 2 * n * 2 * d * f)  # FFN
    attention = 4 * n * n * d + 4 * n * t * d  # scores and values: self, text
    if i:
        image_dim = cfg["image_dim"]
        linear += 2 * i * (image_dim * image_dim + image_dim * d)  # CLIP token embedder
        per_layer += 2 * i * 2 * d * d  # added k, v
        attention += 4 * n * i * d
    linear += layers * per_layer
    attention *= layers
    return {"linear": float(linear), "attention": float(attention), "total": float(linear + attention)}


def measured_flops(fn: Callable[[], object]) -> int:
    """FLOPs torch.utils.flop_counter sees while `fn` runs (works on meta tensors too). Attention runs as
    explicit matmuls (the math kernel), which the counter sees on every device."""
    with FlopCounterMode(display=False) as counter, torch.no_grad(), sdpa_kernel(SDPBackend.MATH):
        fn()
    return counter.get_total_flops()


class _FlashAttention(TorchFunctionMode):
    """scaled_dot_product_attention -> an output-sized placeholder (a fused kernel's footprint)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func is F.scaled_dot_product_attention:
            kwargs = kwargs or {}
            query = args[0] if args else kwargs["query"]
            value = args[2] if len(args) > 2 else kwargs["value"]
            return query.new_empty((*query.shape[:-1], value.shape[-1]))
        return func(*args, **(kwargs or {}))


class LiveBytes(TorchDispatchMode):
    """Bytes of tensors created under it and still referenced (`live`), and the most ever (`peak`)."""

    def __init__(self):
        super().__init__()
        self.live = self.peak = 0
        self.refs: dict[int, list[int]] = {}  # storage -> [python tensors alive, bytes]

    def _release(self, key: int) -> None:
        entry = self.refs[key]
        entry[0] -= 1
        if entry[0] == 0:
            self.live -= entry[1]
            del self.refs[key]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if not isinstance(t, torch.Tensor):
                continue
            key = t.untyped_storage()._cdata
            if key not in self.refs:
                fresh = not any(r.alias_info for r in func._schema.returns)
                self.refs[key] = [0, t.untyped_storage().nbytes() if fresh else 0]
                self.live += self.refs[key][1]
                self.peak = max(self.peak, self.live)
            self.refs[key][0] += 1
            weakref.finalize(t, self._release, key)
        return out


@contextmanager
def tracing() -> Iterator[LiveBytes]:
    """Follow live bytes (meta tensors, no grad, attention as a fused kernel) inside the block."""
    tracker = LiveBytes()
    with torch.no_grad(), _FlashAttention(), tracker:
        yield tracker


def trace_peak(fn: Callable[[], object]) -> int:
    """Peak bytes of the tensors created while `fn` runs (inputs and weights excluded); meta tensors."""
    with tracing() as tracker:
        fn()
    return tracker.peak
