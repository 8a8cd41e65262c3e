"""Stage I: the whole clip's motion at low resolution from a large Wan I2V DiT, few-step, no CFG.

diffusers' WanImageToVideoPipeline prepares the conditioning (CLIP tokens, the mask + image latent);
the denoising loop is ours (custom sigmas, LightX2V's re-noise sampler, seeded whole-clip noise).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from PIL import Image

from swifti2v.config import Stage1Config, VideoConfig
from swifti2v.models.adapter import WanVelocity
from swifti2v.models.components import Stage1Components
from swifti2v.sampling import STEPS, clip_noise, flow_sigmas, sample, step_noises


def stage1_velocity(c: Stage1Components, image: Image.Image, text: torch.Tensor, frames: int,
                    device: torch.device) -> WanVelocity:
    """The Stage I velocity for one clip: text, CLIP tokens (Wan2.1) and the mask + image latent channels.

    image: the first frame at the Stage I size; text: (1, 512, D).
    """
    pipe, height, width = c.pipe, image.height, image.width
    with torch.no_grad():
        image_embeds = pipe.encode_image(image, device) if c.transformer.config.image_dim is not None else None
        pixels = pipe.video_processor.preprocess(image, height=height, width=width).to(device, torch.float32)
        shape = (1, c.vae.z_dim, (frames - 1) // 4 + 1, height // c.vae.spatial, width // c.vae.spatial)
        _, condition = pipe.prepare_latents(
            pixels, 1, c.vae.z_dim, height, width, frames, torch.float32, device, latents=torch.zeros(shape)
        )  # condition: (1, 4 mask + z image-latent channels, F, h, w)
    return WanVelocity(c.transformer, text, image_embeds=image_embeds, extra_channels=condition,
                       transformer_2=c.transformer_2, boundary_sigma=c.boundary_sigma, prediction=c.prediction)


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
