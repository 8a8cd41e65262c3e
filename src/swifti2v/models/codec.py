"""A fixed, lossless video codec behind the Wan VAE interface: space-to-depth over 4 frames x s x s pixels.

The `tiny` models use it instead of a trained VAE. A latent "pixel" is one s x s patch of 4 consecutive
frames, its 3*4*s*s values as channels (frame-major, then colour, then the patch rows); block 0 holds
the first frame alone, repeated into the 4 frame slots, exactly as Wan's causal VAE codes frame 0 alone.
Without a projection reconstruction is exact (PSNR = inf). Every window is coded independently (no causal
cache). Latents are normalised with one fixed scale (`latents_std`).

`projected_dim`: a fixed orthonormal projection of the patch values to fewer channels, lossy, so latents
are as compact as a real VAE's (Wan2.2: 48 channels per 4x16x16 pixels) while coding still costs next to
nothing. Random (benchmarks with random weights), or `fitted`: a PCA of real patches (`fit_pca`), stored
with the patches' mean as the codec's weights. The `tiny` models use a 192-channel PCA of 4x8x8 patches:
smooth, nearly lossless on natural video, and narrow enough for a 384-wide DiT to carry a token's detail.
`deblock` (pixels): the decoder ramps the steps at patch boundaries, as block-transform codecs' deblocking
filters do; tiny Stage I's codec does, so its tokens' disagreements do not show as tiles.

It exposes what diffusers' Wan pipelines and our `WanVAE` wrapper read from `AutoencoderKLWan`:
`config.{z_dim, latents_mean, latents_std, scale_factor_temporal, scale_factor_spatial, patch_size}`,
`encode(x).latent_dist.mode()` and `decode(z).sample`.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.autoencoders.vae import DecoderOutput, DiagonalGaussianDistribution
from diffusers.models.modeling_outputs import AutoencoderKLOutput
from diffusers.models.modeling_utils import ModelMixin

Tensor = torch.Tensor


class PixelCodec(ModelMixin, ConfigMixin):
    """Lossless 4 x s x s space-to-depth "VAE" (z_dim = 3 * 4 * s * s)."""

    @register_to_config
    def __init__(self, scale_factor_spatial: int = 8, scale_factor_temporal: int = 4, z_dim: int | None = None,
                 latents_mean: list[float] | None = None, latents_std: list[float] | None = None,
                 patch_size: None = None, projected_dim: int | None = None, fitted: bool = False,
                 deblock: int = 0):
        super().__init__()
        if not 0 <= deblock <= scale_factor_spatial // 2:
            raise ValueError(f"PixelCodec deblock {deblock} must be 0..{scale_factor_spatial // 2} pixels")
        full = 3 * scale_factor_temporal * scale_factor_spatial**2
        z = projected_dim or full
        if z_dim not in (None, z) or patch_size is not None:
            raise ValueError(f"PixelCodec {scale_factor_temporal}x{scale_factor_spatial}x{scale_factor_spatial} "
                             f"has z_dim {z} and no patch_size")
        self.register_to_config(z_dim=z, latents_mean=latents_mean or [0.0] * z,
                                latents_std=latents_std or [0.5] * z)
        # A parameterless module has no dtype/device of its own; this buffer carries them.
        self.register_buffer("anchor", torch.zeros(()), persistent=False)
        if fitted:  # a PCA basis (orthonormal columns) and the patch mean, loaded as the codec's weights
            if not projected_dim:
                raise ValueError("a fitted PixelCodec needs projected_dim")
            self.register_buffer("projection", torch.zeros(full, projected_dim))
            self.register_buffer("offset", torch.zeros(full))
        elif projected_dim:  # orthonormal columns, the same for every instance
            g = torch.Generator().manual_seed(0)
            q = torch.linalg.qr(torch.randn(full, projected_dim, generator=g))[0]
            self.register_buffer("projection", q, persistent=False)

    @property
    def z_dim(self) -> int:
        return self.config.z_dim

    def pack(self, frames: Tensor, first: bool) -> Tensor:
        """(B, 3, T, H, W) -> unnormalised latents (B, z, T', H/s, W/s); first: T = 1+4k, else 4k."""
        s, t = self.config.scale_factor_spatial, self.config.scale_factor_temporal
        b, c, n, h, w = frames.shape
        if h % s or w % s:
            raise ValueError(f"frame size {h}x{w} is not a multiple of the codec's {s} pixels")
        if first:
            if (n - 1) % t:
                raise ValueError(f"a clip of {n} frames is not 1+{t}k")
            frames = torch.cat([frames[:, :, :1].expand(b, c, t, h, w), frames[:, :, 1:]], dim=2)
        elif n % t:
            raise ValueError(f"a window of {n} frames is not a multiple of {t}")
        n = frames.shape[2] // t
        x = frames.reshape(b, c, n, t, h // s, s, w // s, s)
        x = x.permute(0, 3, 1, 5, 7, 2, 4, 6)  # b, t, c, sy, sx | n, h', w'
        x = x.reshape(b, t * c * s * s, n, h // s, w // s)
        if self.config.projected_dim is None:
            return x
        if self.config.fitted:
            x = x - self.offset.float().view(1, -1, 1, 1, 1)
        return torch.einsum("bfnhw,fz->bznhw", x, self.projection.to(x.dtype))

    def unpack(self, z: Tensor, first: bool) -> Tensor:
        """Inverse of `pack`; block 0 of a first window gives one frame (the mean of its 4 slots)."""
        s, t = self.config.scale_factor_spatial, self.config.scale_factor_temporal
        b, _, n, h, w = z.shape
        if self.config.projected_dim is not None:
            z = torch.einsum("bznhw,fz->bfnhw", z, self.projection.to(z.dtype))
            if self.config.fitted:
                z = z + self.offset.float().view(1, -1, 1, 1, 1)
        x = z.reshape(b, t, 3, s, s, n, h, w).permute(0, 2, 5, 1, 6, 3, 7, 4)
        frames = x.reshape(b, 3, n * t, h * s, w * s)
        if first:
            frames = torch.cat([frames[:, :, :t].mean(dim=2, keepdim=True), frames[:, :, t:]], dim=2)
        return frames

    def frames(self, z: Tensor, first: bool) -> Tensor:
        """Unnormalised latents -> frames in [-1, 1]: `unpack`, clamped, deblocked when the config says so."""
        frames = self.unpack(z, first).clamp(-1.0, 1.0)
        return deblock(frames, self.config.scale_factor_spatial, self.config.deblock)

    def encode(self, x: Tensor, return_dict: bool = True):
        """Frames (B, 3, 1+4k, H, W) in [-1, 1] -> latents (raw, like AutoencoderKLWan before normalising)."""
        mean = self.pack(x, first=True)
        dist = DiagonalGaussianDistribution(torch.cat([mean, torch.full_like(mean, -30.0)], dim=1))
        return AutoencoderKLOutput(latent_dist=dist) if return_dict else (dist,)

    def decode(self, z: Tensor, return_dict: bool = True):
        frames = self.frames(z, first=True)
        return DecoderOutput(sample=frames) if return_dict else (frames,)


def deblock(frames: Tensor, block: int, radius: int) -> Tensor:
    """Spread each patch boundary's excess step over a ramp `radius` pixels into both patches, on both axes.

    A patch's latent is predicted on its own (a DiT token, a PCA of 8x8 patches), so an undertrained model's
    errors step at patch boundaries: tiles (4x larger once Stage I's clip is upsampled). The excess step is the
    step across the boundary, p0 -> q0, minus the mean step just inside the two patches ((p0 - p1) and
    (q1 - q0)); it goes, in equal parts, to the 2 * radius pixels around the boundary, so a flat tile's edge
    becomes a ramp and a linear gradient is left exactly as it is. The decoder-side loop filter of
    block-transform codecs (H.264's deblocking filter), without their thresholds: measured on Stage I's
    re-generated clips, the ungated ramp gave the best fidelity. (B, 3, T, H, W) -> the same; radius 0: as is.
    """
    if radius == 0:
        return frames
    x = frames.clone()
    for dim in (-1, -2):
        x = x.movedim(dim, -1)
        tiles = x.unflatten(-1, (x.shape[-1] // block, block))  # a view: (..., patches, block)
        p, q = tiles[..., :-1, :], tiles[..., 1:, :]
        excess = (q[..., 0] - p[..., -1]) - ((p[..., -1] - p[..., -2]) + (q[..., 1] - q[..., 0])) / 2
        for i in range(radius):  # pixel i from the boundary moves by (radius - i - 1/2) / (2 radius) of the step
            share = excess * (radius - i - 0.5) / (2 * radius)
            p[..., -1 - i] += share
            q[..., i] -= share
        x = x.movedim(-1, dim)
    return x.clamp(-1.0, 1.0)


def fit_pca(batches: Iterable[tuple[Tensor, float]], dim: int) -> tuple[Tensor, Tensor, Tensor]:
    """Principal components of weighted patch vectors, given as (batch (N, D), weight) pairs ->
    (basis (D, dim), mean (D,), variances (D,) descending).

    Moments are accumulated in float64; the basis columns are orthonormal, so the codec's latent error is
    exactly its pixel error on the patches.
    """
    n, total, outer = 0, None, None
    for x, weight in batches:
        x = x.double()
        total = weight * x.sum(0) if total is None else total + weight * x.sum(0)
        outer = weight * x.T @ x if outer is None else outer + weight * x.T @ x
        n += weight * x.shape[0]
    mean = total / n
    cov = (outer - n * torch.outer(mean, mean)) / max(1, n - 1)
    variances, vectors = torch.linalg.eigh(cov)  # ascending
    order = variances.argsort(descending=True)
    return vectors[:, order[:dim]].float().contiguous(), mean.float(), variances[order].float()


def patch_vectors(frames: Tensor, spatial: int, temporal: int) -> Tensor:
    """A clip (B, 3, 1+4k, H, W) -> the codec's patch vectors (N, 3 * temporal * spatial^2), its first
    (still) block included."""
    x = PixelCodec(scale_factor_spatial=spatial, scale_factor_temporal=temporal).pack(frames, first=True)
    return x.permute(0, 2, 3, 4, 1).reshape(-1, x.shape[1])
