"""Stage I: the whole clip's motion at low resolution from a large Wan I2V DiT, few-step, no CFG.

diffusers' WanImageToVideoPipeline prepares the conditioning (CLIP tokens, the mask + image latent);
the denoising loop is ours (custom sigmas, LightX2V's re-noise sampler, seeded whole-clip noise).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch
from PIL import Image

from swifti2v.config import Stage1Config, VideoConfig
from swifti2v.models.adapter import WanVelocity
from swifti2v.models.components import Stage1Components
from swifti2v.plan import blocks_of, context_windows
from swifti2v.sampling import STEPS, clip_noise, flow_sigmas, sample, step_noises


def stage1_velocity(c: Stage1Components, image: Image.Image, text: torch.Tensor, frames: int,
                    device: torch.device) -> WanVelocity:
    """The Stage I velocity for one clip: text, CLIP tokens (Wan2.1) and the mask + image latent channels.

    image: the first frame at the Stage I size; text: (1, 512, D).
    """
    with torch.no_grad():
        image_embeds = c.pipe.encode_image(image, device) if c.transformer.config.image_dim is not None else None
    pixels = c.pipe.video_processor.preprocess(image, height=image.height, width=image.width)
    return WanVelocity(c.transformer, text, image_embeds=image_embeds,
                       extra_channels=condition(c, pixels, frames, device),
                       transformer_2=c.transformer_2, boundary_sigma=c.boundary_sigma, prediction=c.prediction)


@torch.no_grad()
def condition(c: Stage1Components, pixels: torch.Tensor, frames: int, device: torch.device) -> torch.Tensor:
    """diffusers' I2V conditioning of a `frames` clip whose first frame is `pixels` (1, 3, H, W) in [-1, 1]:
    (1, 4 mask + z image-latent channels, F, h, w), the mask set on the first latent frame."""
    height, width = pixels.shape[-2:]
    shape = (1, c.vae.z_dim, (frames - 1) // 4 + 1, height // c.vae.spatial, width // c.vae.spatial)
    _, cond = c.pipe.prepare_latents(pixels.to(device, torch.float32), 1, c.vae.z_dim, height, width, frames,
                                     torch.float32, device, latents=torch.zeros(shape))
    return cond


@torch.no_grad()
def generate_motion(
    c: Stage1Components,
    image: Image.Image,
    text: torch.Tensor,
    cfg: Stage1Config,
    video: VideoConfig,
    seed: int,
    device: torch.device,
    on_step: Callable[[int, int], None] | None = None,
    frames: int | None = None,
    window: int = 0,
) -> torch.Tensor:
    """One Stage I window of `frames` (default: the clip's) from `image`, the window's first frame already fit
    to the Stage I size; window k > 0 draws its own noise. Returns normalised latents (1, z, F, h, w), fp32."""
    frames = frames or video.frames
    velocity = stage1_velocity(c, image, text, frames, device)
    shape = (1, c.vae.z_dim, (frames - 1) // 4 + 1, image.height // c.vae.spatial, image.width // c.vae.spatial)
    key = "stage1" if window == 0 else f"stage1-window{window}"
    noise = clip_noise(seed, key, shape).to(device)
    sch = cfg.schedule
    sigmas = flow_sigmas(sch.steps, sch.shift, sch.start_sigma)
    return sample(lambda x, s: velocity(x, s), noise, sigmas, STEPS[sch.sampler],
                  step_noises(seed, key, shape, sch.steps, sch.sampler, device), on_step)


@torch.no_grad()
def generate_motion_context(
    c: Stage1Components,
    image: Image.Image,
    text: torch.Tensor,
    cfg: Stage1Config,
    video: VideoConfig,
    seed: int,
    device: torch.device,
    on_step: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """The whole clip at once in overlapping windows of Stage I's length (`--extend context`), denoised together:
    at every step each window's velocity is computed on its slice, and the overlaps are blended with linear ramps.
    The first window is conditioned on `image`; each later one on the current step's estimate of its own first
    latent frame (x0 = x - sigma v from the windows before it), so content flows along the clip. Returns
    normalised latents (1, z, F, h, w), fp32, F = the clip's blocks."""
    window = blocks_of(cfg.window)
    starts = context_windows(video.num_blocks, window)
    first = stage1_velocity(c, image, text, cfg.window, device)
    grey = condition(c, torch.zeros(1, 3, image.height, image.width), cfg.window, device)  # mask on frame 0
    ramps = [ramp.to(device) for ramp in blend_ramps(starts, window)]

    def velocity(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        total, weight = torch.zeros_like(x), torch.zeros(x.shape[2], device=x.device)
        for start, ramp in zip(starts, ramps, strict=True):
            part = slice(start, start + window)
            model = first
            if start:  # conditioned on x0 = x - sigma v of its first frame, from the windows before it
                cond = grey.clone()
                cond[:, 4:, 0] = x[:, :, start] - sigma * total[:, :, start] / weight[start]
                model = dataclasses.replace(first, extra_channels=cond)
            total[:, :, part] += model(x[:, :, part], sigma) * ramp.view(1, 1, -1, 1, 1)
            weight[part] += ramp
        return total / weight.view(1, 1, -1, 1, 1)

    shape = (1, c.vae.z_dim, video.num_blocks, image.height // c.vae.spatial, image.width // c.vae.spatial)
    noise = clip_noise(seed, "stage1", shape).to(device)
    sch = cfg.schedule
    sigmas = flow_sigmas(sch.steps, sch.shift, sch.start_sigma)
    return sample(velocity, noise, sigmas, STEPS[sch.sampler],
                  step_noises(seed, "stage1", shape, sch.steps, sch.sampler, device), on_step)


def blend_ramps(starts: list[int], window: int) -> list[torch.Tensor]:
    """Each context window's blend weight per block: 1, ramping linearly down across its overlap with the next
    window and up across its overlap with the previous one (never 0, so every block has a weight)."""
    ramps = []
    for k, start in enumerate(starts):
        i = torch.arange(window, dtype=torch.float32)
        ramp = torch.ones(window)
        if k:
            before = starts[k - 1] + window - start
            ramp = torch.minimum(ramp, (i + 1) / (before + 1))
        if k + 1 < len(starts):
            after = start + window - starts[k + 1]
            ramp = torch.minimum(ramp, (window - i) / (after + 1))
        ramps.append(ramp)
    return ramps
