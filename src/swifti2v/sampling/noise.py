"""Reproducible noise from seeded CPU generators: a whole clip's at once (Stage I), or a latent block's at a time
(Stage II's segments, so nothing of the clip's length is held)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

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


@dataclass(frozen=True)
class BlockNoise:
    """A clip's noise drawn per latent block when a segment needs it, block b from stream `{stream}/block{b}`:
    no tensor of the clip's size, and a block's noise does not depend on the clip's length."""

    seed: int
    stream: str
    shape: tuple[int, ...]  # the whole clip's (B, C, F, H, W)
    device: torch.device | str = "cpu"

    def blocks(self, index: Sequence[int]) -> torch.Tensor:
        b, c, _, h, w = self.shape
        parts = [clip_noise(self.seed, f"{self.stream}/block{i}", (b, c, 1, h, w)) for i in index]
        return torch.cat(parts, dim=2).to(self.device)


def block_step_noises(seed: int, stream: str, shape: tuple[int, ...], steps: int, sampler: str,
                      device: torch.device | str = "cpu") -> list[BlockNoise] | None:
    """step_noises, drawn per block: each re-noise step's fresh noise as a BlockNoise; None for Euler."""
    if sampler != "renoise":
        return None
    return [BlockNoise(seed, f"{stream}/step{i}", shape, device) for i in range(steps)]
