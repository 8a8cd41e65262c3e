"""Spatial tiles of a CSG window: the model sees overlapping crops of the window and their velocities are blended.

Attention over a window costs (tokens)^2; tiles of a quarter of the frame cost about a quarter of it in all, and
a refiner trained on crops sees at inference the context size it was trained on. RoPE is relative, so a crop
needs no position offset. The blend is a linear ramp across each overlap (weights sum to 1 everywhere).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import torch

Tensor = torch.Tensor
ModelFn = Callable[..., Tensor]


def spans(length: int, tile: int, overlap: int, align: int = 1) -> list[tuple[int, int]]:
    """Cover [0, length) with the fewest windows of at most `tile` that overlap by about `overlap` or more, all of
    one size (a multiple of `align`), evenly spaced. A tile of 0 or at least `length`: one window."""
    if tile <= 0 or tile >= length:
        return [(0, length)]
    if not 0 <= overlap < tile:
        raise ValueError(f"tile overlap {overlap} must be in [0, {tile})")
    count = -(-(length - overlap) // (tile - overlap))
    size = -(-(length + (count - 1) * overlap) // count)
    size = min(length, -(-size // align) * align)
    starts = [round(i * (length - size) / (count - 1) / align) * align for i in range(count)]
    return [(s, s + size) for s in starts]


def weights(length: int, cuts: list[tuple[int, int]]) -> list[Tensor]:
    """Per span, blend weights along it: a linear ramp across each overlap with a neighbour, then divided by their
    sum at every position, so the blend is exact where the spans agree."""
    ramps = []
    for i, (a, b) in enumerate(cuts):
        w = torch.ones(b - a)
        if i > 0 and cuts[i - 1][1] > a:  # rise across the overlap with the previous span
            n = cuts[i - 1][1] - a
            w[:n] = torch.arange(1, n + 1) / (n + 1)
        if i + 1 < len(cuts) and cuts[i + 1][0] < b:  # fall across the overlap with the next
            n = b - cuts[i + 1][0]
            w[-n:] = torch.minimum(w[-n:], torch.arange(n, 0, -1) / (n + 1))
        ramps.append(w)
    total = torch.zeros(length)
    for (a, b), w in zip(cuts, ramps, strict=True):
        total[a:b] += w
    return [w / total[a:b] for (a, b), w in zip(cuts, ramps, strict=True)]


def tiled(model_fn: ModelFn, tile: tuple[int, int], overlap: tuple[int, int], align: int = 1) -> ModelFn:
    """model_fn(x (B, C, F, H, W), sigma, window) run on overlapping spatial tiles of at most `tile` (H, W) latent
    pixels, their velocities blended. A tile at least the frame's size runs the window whole, unchanged."""

    def fn(x: Tensor, sigma: Tensor, window) -> Tensor:
        h, w = x.shape[-2:]
        rows, cols = spans(h, tile[0], overlap[0], align), spans(w, tile[1], overlap[1], align)
        if len(rows) == len(cols) == 1:
            return model_fn(x, sigma, window)
        out = None
        for (y0, y1), wy in zip(rows, weights(h, rows), strict=True):
            for (x0, x1), wx in zip(cols, weights(w, cols), strict=True):
                ref = None if window.reference is None else window.reference[..., y0:y1, x0:x1]
                v = model_fn(x[..., y0:y1, x0:x1], sigma, replace(window, reference=ref)).float()
                out = torch.zeros(v.shape[:-2] + (h, w), dtype=v.dtype, device=v.device) if out is None else out
                out[..., y0:y1, x0:x1] += v * (wy[:, None] * wx[None, :]).to(v.device)
        return out

    return fn
