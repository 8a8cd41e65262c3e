"""RoPE seam: Wan's temporal rotary table read at explicit per-frame positions.

diffusers' `WanRotaryPosEmbed.forward` only reads the input shape, so frame f always gets position f.
CSG needs the anchor at 0 and the segment at its global block indices. We swap the module's class for
a subclass (same buffers, same state dict, LoRA and context-parallel plans unaffected) and set the
positions through a context manager. With no positions set it runs the stock code unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from diffusers.models.transformers.transformer_wan import WanRotaryPosEmbed, WanTransformer3DModel


class PositionalRotaryPosEmbed(WanRotaryPosEmbed):
    positions: tuple[int, ...] | None = None

    def forward(self, hidden_states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.positions is None:
            return super().forward(hidden_states)
        _, _, num_frames, height, width = hidden_states.shape
        p_t, p_h, p_w = self.patch_size
        ppf, pph, ppw = num_frames // p_t, height // p_h, width // p_w
        if len(self.positions) != ppf:
            raise ValueError(f"{len(self.positions)} RoPE positions for {ppf} latent frames")
        if max(self.positions) >= self.max_seq_len:
            raise ValueError(f"RoPE position {max(self.positions)} exceeds rope_max_seq_len {self.max_seq_len}")
        frame_index = torch.tensor(self.positions).to(self.freqs_cos.device, non_blocking=True)  # no host sync
        out = []
        for table in (self.freqs_cos, self.freqs_sin):
            t, h, w = table.split([self.t_dim, self.h_dim, self.w_dim], dim=1)
            grid = torch.cat(
                [
                    t[frame_index].view(ppf, 1, 1, -1).expand(ppf, pph, ppw, -1),
                    h[:pph].view(1, pph, 1, -1).expand(ppf, pph, ppw, -1),
                    w[:ppw].view(1, 1, ppw, -1).expand(ppf, pph, ppw, -1),
                ],
                dim=-1,
            )
            out.append(grid.reshape(1, ppf * pph * ppw, 1, -1))
        return out[0], out[1]


def install_positional_rope(transformer: WanTransformer3DModel) -> WanTransformer3DModel:
    """Make `transformer.rope` position-aware in place (idempotent)."""
    rope = transformer.rope
    if not isinstance(rope, PositionalRotaryPosEmbed) and getattr(transformer, "_parallel_config", None) is not None:
        raise RuntimeError("install_positional_rope after enable_parallelism: its hooks would keep the stock RoPE")
    if not isinstance(rope, PositionalRotaryPosEmbed):
        if type(rope) is not WanRotaryPosEmbed:
            raise TypeError(f"unexpected RoPE module {type(rope).__name__}; diffusers==0.42.1 is required")
        rope.__class__ = PositionalRotaryPosEmbed
        rope.positions = None
    return transformer


@contextmanager
def rope_positions(transformer: WanTransformer3DModel, positions: Sequence[int] | None) -> Iterator[None]:
    """Within the block, latent frame i of the input gets temporal position positions[i]."""
    rope = install_positional_rope(transformer).rope
    previous = rope.positions
    rope.positions = None if positions is None else tuple(int(p) for p in positions)
    try:
        yield
    finally:
        rope.positions = previous
