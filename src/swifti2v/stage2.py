"""Stage II: 2K detail, segment by segment (CSG), in `concat` or zero-shot `refine` mode."""

from __future__ import annotations

from collections.abc import Callable

import torch

from swifti2v.config import Stage2Config
from swifti2v.models.adapter import WanVelocity
from swifti2v.models.components import Stage2Components
from swifti2v.plan import stage2_plan
from swifti2v.sampling import STEPS, Segment, clip_noise, csg_sample, flow_sigmas, step_noises


@torch.no_grad()
def add_detail(
    c: Stage2Components,
    z_ref: torch.Tensor,
    text: torch.Tensor,
    cfg: Stage2Config,
    seed: int,
    on_segment: Callable[[Segment, torch.Tensor], None] | None = None,
    on_step: Callable[[Segment, int, int], None] | None = None,
) -> torch.Tensor:
    """Denoise the 2K latent conditioned on z_ref. Returns the clip's latents (1, z, F, h, w), fp32."""
    shape = tuple(z_ref.shape)
    noise = clip_noise(seed, "stage2", shape).to(z_ref.device)
    sch = cfg.schedule
    return csg_sample(
        WanVelocity(c.transformer, text, prediction=c.prediction),
        z_ref,
        noise,
        flow_sigmas(sch.steps, sch.shift, sch.start_sigma),
        stage2_plan(cfg, shape[2]),
        concat_reference=c.concat,
        step=STEPS[sch.sampler],
        step_noise=step_noises(seed, "stage2", shape, sch.steps, sch.sampler, z_ref.device),
        on_segment=on_segment,
        on_step=on_step,
    )
