"""Stateless solver steps on the velocity v = eps - x0, and the plain whole-clip sampler."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

Tensor = torch.Tensor
StepFn = Callable[[Tensor, Tensor, float, float, "Tensor | None"], Tensor]


def euler_step(x: Tensor, v: Tensor, sigma: float, sigma_next: float, noise: Tensor | None = None) -> Tensor:
    """Deterministic flow ODE step."""
    return x + (sigma_next - sigma) * v


def renoise_step(x: Tensor, v: Tensor, sigma: float, sigma_next: float, noise: Tensor | None = None) -> Tensor:
    """LightX2V-style stochastic step: predict x0, then re-noise it to sigma_next with fresh noise."""
    x0 = x - sigma * v
    if sigma_next == 0:
        return x0
    assert noise is not None, "renoise_step needs fresh noise for every step but the last"
    return (1 - sigma_next) * x0 + sigma_next * noise


STEPS: dict[str, StepFn] = {"euler": euler_step, "renoise": renoise_step}


def sample(
    model_fn: Callable[[Tensor, Tensor], Tensor],
    x: Tensor,
    sigmas: Tensor,
    step: StepFn,
    step_noise: Sequence[Tensor] | None = None,
    callback: Callable[[int, int], None] | None = None,
) -> Tensor:
    """Integrate x from sigmas[0] to sigmas[-1]. model_fn(x, sigma) -> velocity; solver math in fp32."""
    x = x.float()
    n = len(sigmas) - 1
    for i in range(n):
        s, s_next = float(sigmas[i]), float(sigmas[i + 1])
        v = model_fn(x, sigmas[i]).float()
        x = step(x, v, s, s_next, None if step_noise is None else step_noise[i])
        if callback is not None:
            callback(i + 1, n)
    return x
