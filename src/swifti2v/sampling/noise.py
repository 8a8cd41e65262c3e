"""Reproducible noise: the whole clip's noise is drawn once from a seeded CPU generator, then sliced."""

from __future__ import annotations

import hashlib

import torch


def derive_seed(seed: int, stream: str) -> int:
    """Independent 63-bit seeds for named streams ("stage1", "stage2", "stage2/step3", ...)."""
    digest = hashlib.sha256(f"{seed}:{stream}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def clip_noise(seed: int, stream: str, shape: tuple[int, ...]) -> torch.Tensor:
    """Standard normal noise of `shape` (float32, CPU), identical on every machine for (seed, stream)."""
    g = torch.Generator(device="cpu").manual_seed(derive_seed(seed, stream))
    return torch.randn(shape, generator=g, dtype=torch.float32)


def step_noises(seed: int, stream: str, shape: tuple[int, ...], steps: int, sampler: str,
                device: torch.device | str = "cpu") -> list[torch.Tensor] | None:
    """Fresh noise for each stochastic (re-noise) step, drawn once for the whole clip; None for Euler."""
    if sampler != "renoise":
        return None
    return [clip_noise(seed, f"{stream}/step{i}", shape).to(device) for i in range(steps)]
