"""Flow-matching sigma schedules (x_sigma = (1 - sigma) x0 + sigma eps), owned here, not by a scheduler."""

from __future__ import annotations

import torch


def shift_sigma(sigma: torch.Tensor | float, shift: float) -> torch.Tensor:
    """Wan/SD3 time shift: s -> shift*s / (1 + (shift-1)*s). Spends more steps at high noise."""
    s = torch.as_tensor(sigma, dtype=torch.float64)
    return shift * s / (1 + (shift - 1) * s)


def unshift_sigma(sigma: float, shift: float) -> float:
    """Inverse of `shift_sigma`."""
    return sigma / (shift - (shift - 1) * sigma)


def flow_sigmas(steps: int, shift: float, start_sigma: float = 1.0) -> torch.Tensor:
    """`steps + 1` descending sigmas (float32), first = start_sigma, last = 0.

    Uniform in the unshifted domain, then shifted: with start 1 and 4 steps this is LightX2V's
    schedule (unshifted [1, .75, .5, .25] -> shift 5 -> [1, .9375, .8333, .625], then 0).
    """
    u0 = unshift_sigma(start_sigma, shift)
    u = torch.linspace(u0, 0.0, steps + 1, dtype=torch.float64)
    return shift_sigma(u, shift).to(torch.float32)
