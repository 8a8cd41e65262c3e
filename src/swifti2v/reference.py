"""Hybrid reference construction: decode the low-res clip, upsample every frame to the target size,
replace frame 0 with the full-resolution input image, encode with the Stage II VAE -> z_ref.

Everything streams window by window (1 frame, then 4 at a time) through the causal VAEs, so the
full-resolution clip never exists in memory at once.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch

from swifti2v.media import upsample
from swifti2v.models.vae import WanVAE


def decoded_windows(vae: WanVAE, latents: torch.Tensor) -> Iterator[torch.Tensor]:
    """Stage I latents -> pixel windows (1, 3, T, h, w): block 0 gives 1 frame, every later block 4."""
    decoder = vae.decoder()
    for b in range(latents.shape[2]):
        yield decoder(latents[:, :, b : b + 1])


def match_colour(first: torch.Tensor, target: torch.Tensor):
    """A per-channel affine map taking `first` (1, 3, h, w) to `target`'s mean and std: a continued Stage I
    window's first frame re-made from the previous window's last frame, so the same picture; applied to the
    whole window it removes the brightness and colour step at the join."""
    dims = (0, 2, 3)
    scale = target.std(dim=dims, keepdim=True) / first.std(dim=dims, keepdim=True).clamp_min(1e-4)
    shift = target.mean(dim=dims, keepdim=True) - first.mean(dim=dims, keepdim=True) * scale
    return lambda frames: (frames * scale.unsqueeze(2) + shift.unsqueeze(2)).clamp(-1, 1)


def clip_windows(vae: WanVAE, latents: list[torch.Tensor]) -> Iterator[torch.Tensor]:
    """The low-res clip across Stage I's windows, as pixel windows of 1, 4, 4, ... frames: a continued window's
    first frame (its conditioning image: the previous window's last) is left out, and its colours matched to
    that frame."""
    last = None
    for k, z in enumerate(latents):
        correct = None
        for b, window in enumerate(decoded_windows(vae, z)):
            if k > 0 and b == 0:
                correct = match_colour(window[:, :, 0], last)
                continue
            window = correct(window) if correct is not None else window
            last = window[:, :, -1]
            yield window


def decode_clip(vae: WanVAE, latents: torch.Tensor) -> torch.Tensor:
    """Stage I latents -> the whole low-res clip (1, 3, F, h, w), decoded window by window."""
    return torch.cat(list(decoded_windows(vae, latents)), dim=2)


@torch.no_grad()
def hybrid_reference(windows: Iterable[torch.Tensor], image: torch.Tensor, vae: WanVAE) -> torch.Tensor:
    """windows: low-res pixel windows of 1, 4, 4, ... frames; image: (1, 3, H, W) in [-1, 1].

    Returns z_ref (1, z, F, H/s, W/s), normalised, fp32. Block 0 is the input image's own latent.
    """
    height, width = image.shape[-2:]
    encoder, blocks = vae.encoder(), []
    for i, window in enumerate(windows):
        hi = upsample(window.to(image.device), height, width)
        if i == 0:
            hi = hi.clone()
            hi[:, :, 0] = image
        blocks.append(encoder(hi))
    return torch.cat(blocks, dim=2)
