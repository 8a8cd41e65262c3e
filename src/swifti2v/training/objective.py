"""Flow-matching objectives. Stage II trains on CSG windows cut exactly as inference cuts them.

x_sigma = (1 - sigma) x0 + sigma eps, the model predicts the velocity eps - x0 (as the samplers use it).
A Stage II window is [anchor (clean)] + [N neighbours (clean)] + [M noisy blocks], each with its z_ref
block, temporal RoPE at the global block indices, timestep 0 on the clean blocks; the loss covers the
noisy blocks only. The neighbours are the truth, or (`reference_neighbors`) their z_ref blocks. The
segment is drawn from the same `plan_segments` inference runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from swifti2v.models.adapter import WanVelocity, loss_weight
from swifti2v.sampling import Segment, Window, plan_segments, shift_sigma

Tensor = torch.Tensor


def sample_train_sigmas(n: int, kind: str, generator: torch.Generator, *, mean: float = 0.0, std: float = 1.0,
                        shift: float = 1.0) -> Tensor:
    """(n,) training sigmas in (0, 1): logit-normal (SD3) or uniform, then the Wan/SD3 time shift."""
    if kind == "logit_normal":
        s = torch.sigmoid(mean + std * torch.randn(n, generator=generator))
    elif kind == "shifted_uniform":
        s = torch.rand(n, generator=generator)
    else:
        raise ValueError(f"unknown sigma sampling {kind!r}")
    return shift_sigma(s, shift).float() if shift != 1.0 else s


def pick_segment(num_blocks: int, segment_blocks: int, neighbor_blocks: int, generator: torch.Generator) -> Segment:
    """One of the segments inference would run on a clip of `num_blocks`, uniformly."""
    plan = plan_segments(num_blocks, segment_blocks, neighbor_blocks)
    return plan[int(torch.randint(len(plan), (), generator=generator))]


@dataclass(frozen=True)
class TrainingWindow:
    x: Tensor  # (B, C, 1+N+M, h, w): clean context blocks, then the noised blocks
    frame_sigmas: Tensor  # (B, 1+N+M): 0 on the context
    window: Window  # global positions and z_ref at them
    target: Tensor  # (B, C, M, h, w): eps - x0 on the noised blocks

    @property
    def n_context(self) -> int:
        return self.x.shape[2] - self.target.shape[2]


def training_window(z: Tensor, z_ref: Tensor, segment: Segment, sigma: Tensor, noise: Tensor,
                    reference_neighbors: Tensor | None = None) -> TrainingWindow:
    """z, z_ref, noise: whole clips (B, C, F, h, w); sigma: (B,). The window inference builds for `segment`.

    reference_neighbors (B,) bool: those samples' clean neighbour blocks are their z_ref blocks (a neighbour
    with no more detail than the reference), the anchor stays the truth.
    """
    x0, eps = z[:, :, list(segment.blocks)], noise[:, :, list(segment.blocks)]
    s = sigma.view(-1, 1, 1, 1, 1).to(z)
    context = z[:, :, list(segment.context)]
    if reference_neighbors is not None and segment.neighbors:
        n = len(segment.neighbors)  # the neighbours come last in the context
        swap = reference_neighbors.view(-1, 1, 1, 1, 1).to(z.device)
        neighbors = torch.where(swap, z_ref[:, :, list(segment.neighbors)], context[:, :, -n:])
        context = torch.cat([context[:, :, :-n], neighbors], dim=2)
    n_ctx, m = context.shape[2], x0.shape[2]
    frame_sigmas = torch.cat([sigma.new_zeros(len(sigma), n_ctx), sigma[:, None].expand(-1, m)], dim=1)
    return TrainingWindow(
        x=torch.cat([context, (1 - s) * x0 + s * eps], dim=2),
        frame_sigmas=frame_sigmas.to(z.device),
        window=Window(segment.positions, z_ref[:, :, list(segment.positions)]),
        target=eps - x0,
    )


def _weighted_mse(velocity: WanVelocity, v: Tensor, target: Tensor, frame_sigmas: Tensor) -> Tensor:
    """Velocity MSE, or x0 MSE (velocity MSE x sigma^2) for a model that predicts x0."""
    per_sample = (v.float() - target.float()).pow(2).flatten(1).mean(1)
    return (per_sample * loss_weight(velocity, frame_sigmas).to(per_sample)).mean()


def window_loss(velocity: WanVelocity, tw: TrainingWindow) -> Tensor:
    """MSE between predicted and true velocity (or x0) on the noisy blocks only."""
    v = velocity(tw.x, tw.frame_sigmas, tw.window)[:, :, tw.n_context :]
    return _weighted_mse(velocity, v, tw.target, tw.frame_sigmas)


def clip_loss(velocity: WanVelocity, z: Tensor, sigma: Tensor, noise: Tensor) -> Tensor:
    """Whole-clip flow matching (Stage I): every block noised to its sample's sigma."""
    s = sigma.view(-1, 1, 1, 1, 1).to(z)
    frame_sigmas = sigma[:, None].expand(-1, z.shape[2]).to(z.device)
    v = velocity((1 - s) * z + s * noise, frame_sigmas, None)
    return _weighted_mse(velocity, v, noise - z, frame_sigmas)
