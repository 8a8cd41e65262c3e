"""Streaming encode/decode for both Wan VAEs (2.1: z16, 4x8x8; 2.2: z48, 4x16x16 with patchify) and
the `tiny` models' fixed PixelCodec (no cache: every window is coded alone).

Every public `AutoencoderKLWan.encode/decode` call restarts the causal cache, so a temporal window
coded alone is wrong. These wrappers keep the encoder/decoder feature caches across calls and match
one-shot coding exactly; windows must come in order. Encoder windows: first 1+4k frames, then
multiples of 4. Latents here are always normalised: (z - mean) / std.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import torch
from diffusers.models.autoencoders.autoencoder_kl_wan import (
    AutoencoderKLWan,
    WanCausalConv3d,
    patchify,
    unpatchify,
)

from swifti2v.models.codec import PixelCodec

Tensor = torch.Tensor


class WanVAE:
    """A loaded AutoencoderKLWan plus its latent statistics and geometry."""

    def __init__(self, vae: AutoencoderKLWan | PixelCodec):
        self.vae = vae
        cfg = vae.config
        self.z_dim: int = cfg.z_dim
        self.temporal: int = cfg.scale_factor_temporal
        self.spatial: int = cfg.scale_factor_spatial
        self._mean = torch.tensor(cfg.latents_mean, dtype=torch.float32).view(1, -1, 1, 1, 1)
        self._std = torch.tensor(cfg.latents_std, dtype=torch.float32).view(1, -1, 1, 1, 1)

    @property
    def device(self) -> torch.device:
        return self.vae.device

    @property
    def dtype(self) -> torch.dtype:
        return self.vae.dtype

    def normalize(self, z: Tensor) -> Tensor:
        return (z.float() - self._mean.to(z.device)) / self._std.to(z.device)

    def denormalize(self, z: Tensor) -> Tensor:
        return z.float() * self._std.to(z.device) + self._mean.to(z.device)

    def encoder(self) -> StreamingEncoder | CodecWindows:
        return CodecWindows(self, encode=True) if isinstance(self.vae, PixelCodec) else StreamingEncoder(self)

    def decoder(self, tile: int | None = None, overlap: int = 4, shard: Shard | None = None
                ) -> StreamingDecoder | TiledDecoder | CodecWindows:
        """Streaming decoder; `tile` (latent pixels) splits every frame into overlapping spatial tiles, and
        `shard` spreads those tiles over the processes of a context-parallel run."""
        if isinstance(self.vae, PixelCodec):
            return CodecWindows(self, encode=False)
        return StreamingDecoder(self) if tile is None else TiledDecoder(self, tile, overlap, shard)

    def encode(self, frames: Tensor) -> Tensor:
        """One-shot encode (B, 3, 1+4k, H, W) in [-1, 1] -> normalised latent mean."""
        return self.encoder()(frames)

    def decode(self, z: Tensor) -> Tensor:
        """One-shot decode of normalised latents -> frames in [-1, 1], fp32."""
        return self.decoder()(z)


def _conv_count(module: torch.nn.Module) -> int:
    return sum(isinstance(m, WanCausalConv3d) for m in module.modules())


class StreamingEncoder:
    """Encode a clip window by window with the causal cache carried across calls."""

    def __init__(self, vae: WanVAE):
        self.w = vae
        self.cache: list = [None] * _conv_count(vae.vae.encoder)
        self.frames_seen = 0

    @torch.no_grad()
    def __call__(self, frames: Tensor) -> Tensor:
        """frames (B, 3, T, H, W) in [-1, 1] -> normalised latent blocks (B, z, T', h, w), fp32."""
        vae, t = self.w.vae, frames.shape[2]
        first = self.frames_seen == 0
        if (first and (t - 1) % 4) or (not first and t % 4):
            need = "1+4k frames" if first else "a multiple of 4 frames"
            raise ValueError(f"streaming encode window of {t} frames; this window needs {need}")
        x = frames.to(device=vae.device, dtype=vae.dtype)
        if vae.config.patch_size is not None:
            x = patchify(x, patch_size=vae.config.patch_size)
        bounds = ([(0, 1)] if first else []) + [(s, s + 4) for s in range(1 if first else 0, t, 4)]
        outs = [vae.encoder(x[:, :, a:b], feat_cache=self.cache, feat_idx=[0]) for a, b in bounds]
        self.frames_seen += t
        moments = vae.quant_conv(torch.cat(outs, dim=2))  # 1x1x1 conv: per-window is exact
        return self.w.normalize(moments[:, : self.w.z_dim])  # the posterior mode


class StreamingDecoder:
    """Decode latent blocks in order with the causal cache carried across calls."""

    def __init__(self, vae: WanVAE):
        self.w = vae
        self.cache: list = [None] * _conv_count(vae.vae.decoder)
        self.blocks_seen = 0

    @torch.no_grad()
    def __call__(self, z: Tensor) -> Tensor:
        """Normalised latents (B, z, F, h, w) -> frames (B, 3, T, H, W) in [-1, 1], fp32.

        The first block gives 1 frame, every later block 4.
        """
        vae = self.w.vae
        x = vae.post_quant_conv(self.w.denormalize(z).to(device=vae.device, dtype=vae.dtype))
        outs = []
        for i in range(x.shape[2]):
            first = self.blocks_seen == 0
            outs.append(vae.decoder(x[:, :, i : i + 1], feat_cache=self.cache, feat_idx=[0], first_chunk=first))
            self.blocks_seen += 1
        out = torch.cat(outs, dim=2)
        if vae.config.patch_size is not None:
            out = unpatchify(out, patch_size=vae.config.patch_size)
        return out.clamp(-1.0, 1.0).float()


def tile_spans(size: int, tile: int, overlap: int) -> list[tuple[int, int]]:
    """The fewest [start, end) spans of length `tile`, evenly spread over 0..size, neighbours overlapping by
    at least `overlap` (one span if it fits)."""
    if size <= tile:
        return [(0, size)]
    n = math.ceil((size - overlap) / (tile - overlap))
    return [(a, a + tile) for a in (round(i * (size - tile) / (n - 1)) for i in range(n))]


def _ramp(n: int, lo: int, hi: int) -> Tensor:
    """Weights over n pixels rising over the first `lo` and falling over the last `hi` (blend overlaps)."""
    w = torch.ones(n)
    if lo:
        w[:lo] = torch.arange(1, lo + 1) / (lo + 1)
    if hi:
        w[n - hi :] = torch.minimum(w[n - hi :], torch.arange(hi, 0, -1) / (hi + 1))
    return w


Tile = tuple[tuple[int, int], tuple[int, int], tuple[int, int, int, int]]  # rows, cols, overlaps t/b/l/r


def _overlaps(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """For each span, how far it overlaps the previous and the next one."""
    return [(spans[i - 1][1] - a if i else 0, b - spans[i + 1][0] if i + 1 < len(spans) else 0)
            for i, (a, b) in enumerate(spans)]


def _tiles(h: int, w: int, tile: int, overlap: int) -> list[Tile]:
    if not 0 <= overlap < tile:
        raise ValueError(f"tile overlap {overlap} must be in [0, tile={tile})")
    rows, cols = tile_spans(h, tile, overlap), tile_spans(w, tile, overlap)
    return [(ys, xs, (*oy, *ox)) for ys, oy in zip(rows, _overlaps(rows), strict=True)
            for xs, ox in zip(cols, _overlaps(cols), strict=True)]


def _blend_weight(vae: WanVAE, tile: Tile) -> Tensor:
    """Pixel weights of one tile: linear ramps across its overlaps with its neighbours, 1 elsewhere."""
    (y0, y1), (x0, x1), (top, bottom, left, right) = tile
    s = vae.spatial
    wy = _ramp((y1 - y0) * s, top * s, bottom * s)
    wx = _ramp((x1 - x0) * s, left * s, right * s)
    return wy[:, None] * wx[None, :]


def _accumulate(out: Tensor | None, total: Tensor | None, frames: Tensor, vae: WanVAE, tile: Tile, h: int,
                w: int) -> tuple[Tensor, Tensor]:
    """Add one decoded tile into the frame buffer `out` with its blend weight (summed in `total`)."""
    (y0, y1), (x0, x1), _ = tile
    s = vae.spatial
    if out is None:
        out = frames.new_zeros((*frames.shape[:3], h * s, w * s))
        total = frames.new_zeros((h * s, w * s))
    weight = _blend_weight(vae, tile).to(frames.device)
    out[..., y0 * s : y1 * s, x0 * s : x1 * s] += frames * weight
    total[y0 * s : y1 * s, x0 * s : x1 * s] += weight
    return out, total


@dataclass(frozen=True)
class Shard:
    """This process's share of the tiles: tile i is decoded by process i % size; `sum` adds a tensor over
    all processes in place (an all-reduce)."""

    rank: int
    size: int
    sum: Callable[[Tensor], None]


class TiledDecoder:
    """Streaming decode in overlapping spatial tiles, each with its own causal cache; overlaps are blended
    linearly. Peak activation memory is one tile's, so 2K decodes on small GPUs; one tile = StreamingDecoder.
    With a `shard`, each process decodes (and keeps the caches of) its own tiles, and the blended frames
    are summed over the processes: every process gets the whole frames."""

    def __init__(self, vae: WanVAE, tile: int, overlap: int, shard: Shard | None = None):
        self.w, self.tile, self.overlap, self.shard = vae, tile, overlap, shard
        self.decoders: dict[tuple, StreamingDecoder] = {}

    @torch.no_grad()
    def __call__(self, z: Tensor) -> Tensor:
        h, w = z.shape[-2:]
        out = total = None
        tiles = _tiles(h, w, self.tile, self.overlap)
        shard = self.shard if self.shard is not None and len(tiles) >= self.shard.size else None
        for i, tile in enumerate(tiles):
            if shard is not None and i % shard.size != shard.rank:
                continue
            (y0, y1), (x0, x1), _ = tile
            decoder = self.decoders.setdefault((y0, y1, x0, x1), StreamingDecoder(self.w))
            out, total = _accumulate(out, total, decoder(z[..., y0:y1, x0:x1]), self.w, tile, h, w)
        if shard is not None:  # every process holds at least one tile, so frames of the same shape
            shard.sum(out)
            shard.sum(total)
        return out / total


@torch.no_grad()
def decode_tile_major(vae: WanVAE, z: Tensor, tile: int, overlap: int, out_device: str = "cpu") -> Tensor:
    """Decode a whole clip tile by tile, each tile streamed through every block with its own causal cache,
    into a frame buffer on `out_device`. Equals TiledDecoder block by block, but only one tile's cache is
    ever alive on the accelerator (at 2K a whole frame's cache is ~12 GiB in bf16, docs/benchmarks.md)."""
    h, w = z.shape[-2:]
    if isinstance(vae.vae, PixelCodec):
        return vae.decoder()(z).to(out_device)
    out = total = None
    for t in _tiles(h, w, tile, overlap):
        (y0, y1), (x0, x1), _ = t
        decoder = StreamingDecoder(vae)
        frames = torch.cat([decoder(z[:, :, b : b + 1, y0:y1, x0:x1]).to(out_device) for b in range(z.shape[2])],
                           dim=2)
        out, total = _accumulate(out, total, frames, vae, t, h, w)
    return out / total


class CodecWindows:
    """Streaming coding for PixelCodec: windows are independent; only "is this the first" matters."""

    def __init__(self, vae: WanVAE, encode: bool):
        self.w, self.encode, self.first = vae, encode, True

    @torch.no_grad()
    def __call__(self, x: Tensor) -> Tensor:
        codec, first = self.w.vae, self.first
        self.first = False
        if self.encode:
            return self.w.normalize(codec.pack(x.to(codec.anchor.device, torch.float32), first))
        return codec.frames(self.w.denormalize(x).to(codec.anchor.device), first).float()


def frame_windows(frames: Iterable[Tensor], first: int = 1, size: int = 4) -> Iterator[Tensor]:
    """Group single frames (B, 3, H, W) into encoder windows: `first` frames, then `size` at a time."""
    buf: list[Tensor] = []
    want = first
    for f in frames:
        buf.append(f)
        if len(buf) == want:
            yield torch.stack(buf, dim=2)
            buf, want = [], size
    if buf:
        raise ValueError(f"{len(buf)} frames left over: the clip length must be 4k+1")
