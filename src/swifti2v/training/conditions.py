"""Stage-transition conditions: a training clip's z_ref, made to look like what Stage I gives at inference.

stage1 (the paper's): downsample the clip to the Stage I size, encode with the Stage I VAE, noise it to
an intermediate sigma, let Stage I denoise it in a few steps ("lightly denoise"), decode; `oracle_share` of
the clips keep the clean low-res clip instead. degrade: a
cheap pixel-space stand-in (blur, noise, JPEG) when no Stage I model is at hand. downsample: the clean
low-res clip. Then, as at inference, the hybrid reference: upsample, frame 0 := the clip's real first
frame at full resolution, encode with the Stage II VAE.

All randomness comes from the generator passed in (seeded per clip by the caller), so a clip's
condition is the same whether it is computed on the fly or read from the cache.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from PIL import Image

from swifti2v import media
from swifti2v.models.components import Stage1Components
from swifti2v.models.vae import WanVAE
from swifti2v.reference import decoded_windows, hybrid_reference
from swifti2v.sampling import STEPS, flow_sigmas, sample
from swifti2v.stage1 import stage1_velocity
from swifti2v.training.config import ConditionConfig

Tensor = torch.Tensor


@dataclass
class ConditionModels:
    stage2_vae: WanVAE
    stage1: Stage1Components | None = None  # needed for kind "stage1" only


def pixel_windows(frames: Tensor) -> Iterator[Tensor]:
    """(B, 3, 1+4k, h, w) -> encoder windows of 1, 4, 4, ... frames."""
    yield frames[:, :, :1]
    for s in range(1, frames.shape[2], 4):
        yield frames[:, :, s : s + 4]


def to_image(frame: Tensor) -> Image.Image:
    """(3, h, w) in [-1, 1] -> PIL RGB."""
    return Image.fromarray(media.to_uint8(frame[None, :, None])[0])


def _gaussian_blur(x: Tensor, sigma: float) -> Tensor:
    """(N, C, h, w) separable Gaussian blur, reflect padding."""
    if sigma <= 0:
        return x
    r = max(1, math.ceil(3 * sigma))
    k = torch.exp(-0.5 * (torch.arange(-r, r + 1, dtype=x.dtype, device=x.device) / sigma) ** 2)
    k = (k / k.sum()).view(1, 1, 1, -1).expand(x.shape[1], 1, 1, -1)
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="reflect"), k, groups=x.shape[1])
    return F.conv2d(F.pad(x, (0, 0, r, r), mode="reflect"), k.transpose(2, 3), groups=x.shape[1])


def _jpeg(frame: Tensor, quality: int) -> Tensor:
    buf = io.BytesIO()
    to_image(frame).save(buf, format="JPEG", quality=quality)
    return media.to_tensor(Image.open(buf).convert("RGB"))[0].to(frame.device)


def degrade(low: Tensor, cfg: ConditionConfig, generator: torch.Generator) -> Tensor:
    """Pixel-space stand-in for Stage I's artefacts: blur, additive noise, per-frame JPEG, each scaled by the
    clip's strength (drawn from cfg.strength). (1, 3, F, h, w)."""
    lo, hi = cfg.strength
    s = lo + (hi - lo) * float(torch.rand((), generator=generator)) if hi > lo else lo
    b, c, f, h, w = low.shape
    x = _gaussian_blur(low.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w), s * cfg.blur)
    x = x + s * cfg.noise * torch.randn(x.shape, generator=generator).to(x.device)
    x = x.clamp(-1, 1)
    quality = round(100 - s * (100 - cfg.jpeg_quality))
    if quality < 100:
        x = torch.stack([_jpeg(fr, quality) for fr in x])
    return x.reshape(b, f, c, h, w).permute(0, 2, 1, 3, 4)


@torch.no_grad()
def lightly_denoise(low: Tensor, text: Tensor, s1: Stage1Components, cfg: ConditionConfig,
                    generator: torch.Generator) -> Tensor:
    """Stage I re-generates the clip from an intermediate noise level. low: (1, 3, F, h, w) -> latents."""
    device = s1.vae.device
    z = s1.vae.encode(low.to(device))
    sigma = cfg.sigma_min + (cfg.sigma_max - cfg.sigma_min) * float(torch.rand((), generator=generator))
    noise = torch.randn(z.shape, generator=generator).to(device)
    step_noise = [torch.randn(z.shape, generator=generator).to(device) for _ in range(cfg.steps)]
    velocity = stage1_velocity(s1, to_image(low[0, :, 0]), text.to(device), low.shape[2], device)
    sigmas = flow_sigmas(cfg.steps, cfg.shift, start_sigma=sigma)
    x = (1 - sigma) * z + sigma * noise
    return sample(lambda x, s: velocity(x, s), x, sigmas, STEPS[cfg.sampler], step_noise)


@torch.no_grad()
def condition_reference(clip: Tensor, text: Tensor, cfg: ConditionConfig, models: ConditionModels,
                        generator: torch.Generator) -> Tensor:
    """clip: (1, 3, F, H, W) in [-1, 1] at the training size; text: (1, 512, D). Returns z_ref, fp32."""
    low = media.downsample(clip, cfg.downscale)
    if cfg.kind == "stage1" and cfg.oracle_share > 0 and float(torch.rand((), generator=generator)) < cfg.oracle_share:
        windows = pixel_windows(low)
    elif cfg.kind == "stage1":
        if models.stage1 is None:
            raise ValueError("condition kind 'stage1' needs the Stage I model")
        windows = decoded_windows(models.stage1.vae, lightly_denoise(low, text, models.stage1, cfg, generator))
    elif cfg.kind == "degrade":
        windows = pixel_windows(degrade(low, cfg, generator))
    else:
        windows = pixel_windows(low)
    image = clip[:, :, 0].to(models.stage2_vae.device)
    return hybrid_reference(windows, image, models.stage2_vae)
