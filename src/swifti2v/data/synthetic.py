"""Procedural video with known ground truth, deterministic from a seed (the `tiny` models' data).

Two kinds of clip, each rendered at full resolution with a low-resolution twin (the antialiased
1/downscale downsample the Stage II oracle conditions use), a caption naming the motion, and for every
pixel of every frame where its content sits in frame 0 (`source`, `valid`), so an oracle can copy the
first frame's detail along the true motion:

- camera: a pan (8 directions), zoom (in/out) or rotation (clockwise/counterclockwise) path over a large
  still, sampled with bicubic interpolation; zoom never minifies, so frames are alias-free.
- sprite: one or two textured shapes ("a red square moves up") sliding over a static textured background.

Stills are collages with high-frequency detail everywhere: a fine base (fractal noise, a grating, or a
photograph), then "dead leaves" (overlapping shapes with power-law sizes) filled with noisy colours,
gratings or photo crops, then a few lines of text. Photographs come from scikit-image's bundled sample
images (read as files; the package is never imported); the held-out split uses photographs, seeds and
fonts sizes the training split never sees.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont
from torch.utils.data import Dataset

from swifti2v import media
from swifti2v.errors import UserError

Tensor = torch.Tensor
Split = Literal["train", "heldout"]
Kind = Literal["camera", "sprite"]
PanSpeed = Literal["path", "axis"]  # camera_path: what a pan's speed measures
KINDS: tuple[str, ...] = ("camera", "sprite")
HELDOUT_SEED = 1_000_000_000  # held-out clip i uses seed HELDOUT_SEED + i; training seeds stay below it
PHOTOS: dict[str, tuple[str, ...]] = {
    # motorcycle_left is the stereo twin of a held-out photograph: in neither split.
    "train": ("astronaut.png", "coffee.png", "rocket.jpg", "hubble_deep_field.jpg", "ihc.png", "brick.png",
              "grass.png", "camera.png", "coins.png", "moon.png"),
    "heldout": ("chelsea.png", "retina.jpg", "gravel.png", "motorcycle_right.png"),
}
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40), "green": (40, 180, 60), "blue": (40, 80, 220), "yellow": (235, 210, 40),
    "white": (240, 240, 240), "purple": (150, 60, 190), "orange": (240, 140, 30), "cyan": (40, 200, 210),
}
PAN_DIRECTIONS: dict[str, tuple[float, float]] = {
    "left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1),
    "up and to the left": (-1, -1), "up and to the right": (1, -1),
    "down and to the left": (-1, 1), "down and to the right": (1, 1),
}
MOTIONS: dict[str, float] = {"pan": 0.6, "zoom": 0.2, "rotate": 0.2}  # camera motions and their shares
SPRITE_DIRECTIONS: dict[str, tuple[float, float]] = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}


@dataclass(frozen=True)
class SyntheticClip:
    frames: Tensor  # (3, F, H, W) in [-1, 1]: the ground truth
    low: Tensor  # (3, F, H/downscale, W/downscale): its antialiased downsample
    caption: str
    kind: str
    motion: str  # "pan", "zoom", "rotate" or "sprite"
    source: Tensor  # (F, H, W, 2): x, y in frame 0 of each pixel's content (pixel centres at integers)
    valid: Tensor  # (F, H, W) bool: that content is visible in frame 0
    shift: tuple[float, float] | None  # pans: content displacement per frame (dx, dy) in pixels


# ---------------------------------------------------------------------------------------------- stills


def photo_folder() -> Path:
    spec = importlib.util.find_spec("skimage")
    if spec is None or spec.origin is None:
        raise UserError("procedural clips use scikit-image's sample photographs; install them with "
                        "`pip install scikit-image` (or the `data` extra)")
    return Path(spec.origin).parent / "data"


@cache
def _photo(name: str) -> np.ndarray:
    return np.asarray(Image.open(photo_folder() / name).convert("RGB"), dtype=np.float32) / 255.0


def _fractal_noise(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """(h, w, 3) in [0, 1]: octaves of smooth random grids with 1/f amplitudes, down to single pixels."""
    out = np.zeros((h, w), np.float32)
    for octave in range(6):
        cell = 2 ** octave
        g = rng.standard_normal((h // cell + 2, w // cell + 2)).astype(np.float32)
        up = np.asarray(Image.fromarray(g).resize(((w // cell + 2) * cell, (h // cell + 2) * cell), Image.BICUBIC))
        out += up[:h, :w] * cell ** 0.3
    out = (out - out.mean()) / (out.std() + 1e-6)
    a, b = rng.uniform(0, 1, 3), rng.uniform(0, 1, 3)  # a colour ramp from b to a
    return np.clip((a + b)[None, None] / 2 + 0.36 * out[..., None] * (a - b)[None, None], 0, 1)


def _grating(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """(h, w, 3): a warped sinusoidal or square-wave grating with a random period of 2.5-12 pixels."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    angle, period = rng.uniform(0, math.pi), rng.uniform(2.5, 12.0)
    warp = 3.0 * np.sin(y / rng.uniform(20, 60) + rng.uniform(0, 6)) * np.cos(x / rng.uniform(20, 60))
    phase = (x * math.cos(angle) + y * math.sin(angle) + warp) * 2 * math.pi / period
    wave = np.sin(phase) if rng.random() < 0.5 else np.sign(np.sin(phase))
    c1, c2 = rng.uniform(0, 1, 3), rng.uniform(0, 1, 3)
    return (c1[None, None] + (c2 - c1)[None, None] * (0.5 + 0.5 * wave[..., None])).astype(np.float32)


@cache
def _photo_scaled(name: str, scale: float) -> np.ndarray:
    img = _photo(name)
    size = (max(8, int(img.shape[1] * scale)), max(8, int(img.shape[0] * scale)))
    return np.asarray(Image.fromarray((img * 255).astype(np.uint8)).resize(size, Image.LANCZOS), np.float32) / 255


def _photo_crop(rng: np.random.Generator, h: int, w: int, split: Split) -> np.ndarray:
    """(h, w, 3): a crop of a photograph shrunk by 1-2x (denser detail), mirror-tiled where too small."""
    img = _photo_scaled(PHOTOS[split][rng.integers(len(PHOTOS[split]))], float(rng.choice([0.5, 0.625, 0.75, 1.0])))
    if rng.random() < 0.5:
        img = img[:, ::-1]
    ph, pw = img.shape[:2]
    if ph < h or pw < w:
        img = np.tile(np.concatenate([np.concatenate([img, img[::-1]], 0)] * 2, 1), (h // ph + 1, w // pw + 1, 1))
    y0, x0 = rng.integers(0, img.shape[0] - h + 1), rng.integers(0, img.shape[1] - w + 1)
    return img[y0 : y0 + h, x0 : x0 + w]


def _fill(rng: np.random.Generator, h: int, w: int, split: Split) -> np.ndarray:
    """A shape's fill: a noisy flat colour, a grating or a photo crop."""
    r = rng.random()
    if r < 0.4:
        colour = rng.uniform(0, 1, 3).astype(np.float32)
        return np.clip(colour[None, None] * (1 + 0.35 * rng.standard_normal((h, w, 1)).astype(np.float32)), 0, 1)
    if r < 0.7:
        return _grating(rng, h, w)
    return _photo_crop(rng, h, w, split)


def _font(size: int) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _words(rng: np.random.Generator) -> str:
    letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    return " ".join("".join(rng.choice(list(letters), rng.integers(2, 8))) for _ in range(rng.integers(1, 5)))


def still(rng: np.random.Generator, h: int, w: int, split: Split = "train") -> Tensor:
    """A (3, h, w) collage in [-1, 1] with high-frequency detail everywhere."""
    base = (_fractal_noise, _grating, lambda r, a, b: _photo_crop(r, a, b, split))[rng.integers(3)](rng, h, w)
    canvas = Image.fromarray((np.clip(base, 0, 1) * 255).astype(np.uint8))
    for _ in range(int(h * w / 700)):  # dead leaves: radii ~ r^-3 between 5 and 0.25 * min side
        rmax = 0.25 * min(h, w)
        radius = 5 / math.sqrt(1 - rng.random() * (1 - (5 / rmax) ** 2))
        cy, cx = rng.uniform(-radius, h + radius), rng.uniform(-radius, w + radius)
        bh, bw = int(2 * radius) + 1, int(2 * radius * rng.uniform(0.5, 1.5)) + 1
        mask = Image.new("L", (bw, bh), 0)
        draw = ImageDraw.Draw(mask)
        shape = rng.integers(3)
        if shape == 0:
            draw.ellipse((0, 0, bw - 1, bh - 1), fill=255)
        elif shape == 1:
            draw.rectangle((0, 0, bw - 1, bh - 1), fill=255)
        else:
            draw.polygon([(rng.uniform(0, bw), rng.uniform(0, bh)) for _ in range(3)], fill=255)
        fill = Image.fromarray((_fill(rng, bh, bw, split) * 255).astype(np.uint8))
        canvas.paste(fill, (int(cx - bw / 2), int(cy - bh / 2)), mask)
    draw = ImageDraw.Draw(canvas)
    sizes = (9, 12, 16, 22, 30) if split == "train" else (10, 14, 19, 26)
    for _ in range(int(h * w / 40000) + 1):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        draw.text((rng.uniform(0, w * 0.8), rng.uniform(0, h * 0.95)), _words(rng), fill=colour,
                  font=_font(int(rng.choice(sizes))))
    return torch.from_numpy(np.asarray(canvas, dtype=np.float32) / 127.5 - 1.0).permute(2, 0, 1).contiguous()


# --------------------------------------------------------------------------------------------- rendering


def sample_at(image: Tensor, xy: Tensor, mode: str = "bicubic") -> Tensor:
    """image (C, h, w); xy (F, H, W, 2) pixel coordinates (centres at integers) -> (C, F, H, W)."""
    c, h, w = image.shape
    grid = torch.stack([(xy[..., 0] + 0.5) / w * 2 - 1, (xy[..., 1] + 0.5) / h * 2 - 1], dim=-1)
    out = F.grid_sample(image[None].expand(xy.shape[0], -1, -1, -1), grid, mode=mode, padding_mode="border",
                        align_corners=False)
    return out.permute(1, 0, 2, 3)


def pixel_grid(h: int, w: int, device=None) -> Tensor:
    y, x = torch.meshgrid(torch.arange(h, dtype=torch.float32, device=device),
                          torch.arange(w, dtype=torch.float32, device=device), indexing="ij")
    return torch.stack([x, y], dim=-1)


def downsample_frames(frames: Tensor, factor: int) -> Tensor:
    """(3, F, H, W) -> (3, F, H/factor, W/factor), antialiased bicubic (as the oracle conditions)."""
    return media.downsample(frames[None], factor)[0]


def camera_path(rng: np.random.Generator, frames: int, h: int, w: int, speed: tuple[float, float] = (0.5, 3.5),
                motions: tuple[str, ...] = tuple(MOTIONS), pan_speed: PanSpeed = "path"
                ) -> tuple[str, str, np.ndarray]:
    """-> (motion, caption, A (F, 2, 3)): frame pixel (x, y, 1) -> still offset from the path's start centre.

    The motion is one of `motions`, in MOTIONS' proportions. Pans move `speed` pixels per frame (uniform in
    the range, for a 33-frame clip; longer clips move as far) along their path, or (`pan_speed="axis"`) along
    each axis they move on: a diagonal then goes sqrt(2) x as fast, and a speed that moves an axis pan a whole
    number of half tokens per latent frame moves every pan so.
    """
    t = np.arange(frames, dtype=np.float64)
    scale, angle, centre = np.ones(frames), np.zeros(frames), np.zeros((frames, 2))
    share = np.array([MOTIONS[m] for m in motions])
    motion = motions[rng.choice(len(motions), p=share / share.sum())]
    if motion == "pan":
        name = list(PAN_DIRECTIONS)[rng.integers(len(PAN_DIRECTIONS))]
        d = np.array(PAN_DIRECTIONS[name], dtype=np.float64)
        if pan_speed == "path":
            d /= np.hypot(*d)
        centre = t[:, None] * rng.uniform(*speed) * 33 / frames * d[None]
        caption = f"the camera pans {name}"
    elif motion == "zoom":
        total = rng.uniform(1.15, 1.5)
        zoom_in = rng.random() < 0.5
        z = total ** (t / (frames - 1))
        scale = z if zoom_in else total / z  # magnification of the still, always >= 1
        caption = f"the camera zooms {'in' if zoom_in else 'out'}"
    else:
        total = math.radians(rng.uniform(6, 20))
        clockwise = rng.random() < 0.5
        angle = (-1 if clockwise else 1) * total * t / (frames - 1)
        caption = f"the camera rotates {'clockwise' if clockwise else 'counterclockwise'}"
    a = np.zeros((frames, 2, 3))
    cos, sin = np.cos(angle) / scale, np.sin(angle) / scale
    cx, cy = (w - 1) / 2, (h - 1) / 2
    a[:, 0, 0], a[:, 0, 1], a[:, 1, 0], a[:, 1, 1] = cos, -sin, sin, cos
    a[:, 0, 2] = centre[:, 0] - cos * cx + sin * cy
    a[:, 1, 2] = centre[:, 1] - sin * cx - cos * cy
    return motion, caption, a


def apply_affine(a: Tensor, xy: Tensor) -> Tensor:
    """Affine maps (F, 2, 3) applied to a pixel grid (H, W, 2) -> (F, H, W, 2)."""
    return torch.einsum("fij,hwj->fhwi", a[:, :, :2], xy) + a[:, None, None, :, 2]


def camera_clip(seed: int, height: int, width: int, frames: int, downscale: int = 4,
                split: Split = "train") -> SyntheticClip:
    rng = np.random.default_rng(seed)
    return render_camera(rng, height, width, frames, downscale, lambda h, w: still(rng, h, w, split))


@dataclass(frozen=True)
class CameraShot:
    """A camera clip before rendering: the still (at 1/k) and the path. `render_shots` samples the frames
    (on any device, batched), so a data loader only has to send the still and 33 small matrices."""

    still: Tensor  # (3, h, w) in [-1, 1] at 1/k of full resolution
    affine: Tensor  # (F, 2, 3): frame pixel (x, y, 1) at full resolution -> still offset from the path's start
    lo: Tensor  # (2,): the still's top-left corner in those offsets, full-resolution pixels
    caption: str
    motion: str  # "pan", "zoom" or "rotate"


def camera_shot(rng: np.random.Generator, height: int, width: int, frames: int, k: int,
                make_still: Callable[[int, int], Tensor], speed: tuple[float, float] = (0.5, 3.5),
                motions: tuple[str, ...] = tuple(MOTIONS), pan_speed: PanSpeed = "path") -> CameraShot:
    """A camera path and the still it needs, for frames rendered at 1/k of (height, width).

    Low-res pixel (u, v) sits at full-res (k u + (k-1)/2, ...), and the still is antialiased down by k
    the same way, so k > 1 gives the low-res twin of the k = 1 clip (which is `render_camera`'s).
    """
    motion, caption, a = camera_path(rng, frames, height, width, speed, motions, pan_speed)
    a = torch.from_numpy(a).float()
    corners = apply_affine(a, _centres(height, width, k)[:: height // k - 1, :: width // k - 1])  # affine: extremes
    lo = corners.reshape(-1, 2).amin(0).floor() - 4 * k
    size = ((corners.reshape(-1, 2).amax(0).ceil() + 4 * k - lo + 1) / k).ceil().int() * k
    image = make_still(int(size[1]), int(size[0]))
    if k > 1:
        image = downsample_frames(image[:, None], k)[:, 0]
    return CameraShot(image, a, lo, caption, motion)


def _centres(height: int, width: int, k: int, device=None) -> Tensor:
    return pixel_grid(height // k, width // k, device) * k + (k - 1) / 2


def render_shots(stills: Tensor, affine: Tensor, lo: Tensor, height: int, width: int, k: int) -> Tensor:
    """stills (B, 3, h, w) (each shot's still at its top-left), affine (B, F, 2, 3), lo (B, 2) ->
    frames (B, 3, F, height/k, width/k), bicubic, where the stills live."""
    centres = _centres(height, width, k, stills.device)
    out = []
    for still, a, corner in zip(stills.float(), affine.to(stills.device), lo.to(stills.device), strict=True):
        pts = apply_affine(a, centres)
        out.append(sample_at(still, (pts - corner + 0.5) / k - 0.5).clamp(-1, 1))
    return torch.stack(out)


def render_camera_pixels(rng: np.random.Generator, height: int, width: int, frames: int, k: int,
                         make_still: Callable[[int, int], Tensor], speed: tuple[float, float] = (0.5, 3.5)
                         ) -> tuple[Tensor, str]:
    """Frames alone, rendered at 1/k of (height, width) directly: (3, F, height/k, width/k), caption."""
    shot = camera_shot(rng, height, width, frames, k, make_still, speed)
    return render_shots(shot.still[None], shot.affine[None], shot.lo[None], height, width, k)[0], shot.caption


def render_camera(rng: np.random.Generator, height: int, width: int, frames: int, downscale: int,
                  make_still: Callable[[int, int], Tensor], speed: tuple[float, float] = (0.5, 3.5)) -> SyntheticClip:
    """A camera clip over the still `make_still(h, w)` returns ((3, h, w) in [-1, 1]), with its ground truth."""
    shot = camera_shot(rng, height, width, frames, 1, make_still, speed)
    clip = render_shots(shot.still[None], shot.affine[None], shot.lo[None], height, width, 1)[0]
    # Where each pixel's content sits in frame 0: invert frame 0's (exact, integer) map.
    pts = apply_affine(shot.affine, pixel_grid(height, width))
    inv = torch.linalg.inv(torch.cat([shot.affine[0], torch.tensor([[0.0, 0.0, 1.0]])]))[:2]
    source = torch.einsum("ij,fhwj->fhwi", inv[:, :2], pts) + inv[:, 2]
    valid = ((source[..., 0] >= 1) & (source[..., 0] <= width - 2) & (source[..., 1] >= 1)
             & (source[..., 1] <= height - 2))
    shift = None
    if shot.motion == "pan":
        step = shot.affine[1, :, 2] - shot.affine[0, :, 2]
        shift = (-float(step[0]), -float(step[1]))
    return SyntheticClip(clip, downsample_frames(clip, downscale), shot.caption, "camera", shot.motion, source, valid,
                         shift)


def _sprite(rng: np.random.Generator, size: int, split: Split) -> tuple[str, str, Tensor]:
    """-> (colour name, shape name, RGBA (4, size, size) in [-1, 1] / [0, 1])."""
    colour = list(COLORS)[rng.integers(len(COLORS))]
    shape = ("square", "circle", "triangle")[rng.integers(3)]
    mask = Image.new("L", (size * 4, size * 4), 0)  # drawn at 4x, shrunk: antialiased edges
    draw = ImageDraw.Draw(mask)
    n = size * 4 - 1
    if shape == "square":
        draw.rectangle((0, 0, n, n), fill=255)
    elif shape == "circle":
        draw.ellipse((0, 0, n, n), fill=255)
    else:
        draw.polygon([(n / 2, 0), (n, n), (0, n)], fill=255)
    alpha = torch.from_numpy(np.asarray(mask.resize((size, size), Image.LANCZOS), dtype=np.float32) / 255)
    texture = _fill(rng, size, size, split)
    rgb = np.array(COLORS[colour], np.float32) / 255 * (0.55 + 0.45 * texture.mean(-1, keepdims=True) / 0.5)
    rgb = torch.from_numpy(np.clip(rgb, 0, 1)).permute(2, 0, 1) * 2 - 1
    return colour, shape, torch.cat([rgb, alpha[None]])


def sprite_clip(seed: int, height: int, width: int, frames: int, downscale: int = 4,
                split: Split = "train") -> SyntheticClip:
    rng = np.random.default_rng(seed)
    background = still(rng, height, width, split)
    grid = pixel_grid(height, width)
    t = torch.arange(frames, dtype=torch.float32)[:, None]
    clip = background[:, None].expand(-1, frames, -1, -1).clone()
    source = grid[None].expand(frames, -1, -1, -1).clone()
    owner = torch.zeros(frames, height, width, dtype=torch.long)  # 0 = background, k = sprite k (topmost)
    phrases = []
    for k in range(1, int(rng.integers(1, 3)) + 1):
        size = int(min(height, width) * rng.uniform(0.2, 0.4))
        colour, shape, rgba = _sprite(rng, size, split)
        name = list(SPRITE_DIRECTIONS)[rng.integers(len(SPRITE_DIRECTIONS))]
        d = torch.tensor(SPRITE_DIRECTIONS[name])
        speed = rng.uniform(1.0, 3.0) * 33 / frames
        start = torch.tensor([rng.uniform(0.15, 0.85) * width, rng.uniform(0.15, 0.85) * height])
        start = start - d * speed * (frames - 1) / 2  # centred path: the sprite stays mostly in view
        top_left = start - size / 2 + t * speed * d  # (F, 2)
        local = grid[None] - top_left[:, None, None]  # sprite pixel coordinates of every frame pixel
        layer = sample_at(rgba, local, mode="bilinear")
        inside = ((local >= -0.5) & (local <= size - 0.5)).all(-1)
        alpha = layer[3] * inside
        clip = clip * (1 - alpha) + layer[:3] * alpha
        cover = alpha > 0.5
        owner[cover] = k
        source[cover] = (local + top_left[:1, None, None])[cover]
        phrases.append(f"{'an' if colour[0] in 'aeiou' else 'a'} {colour} {shape} moves {name}")
    own0 = owner[0]
    sx = source[..., 0].round().long().clamp(0, width - 1)
    sy = source[..., 1].round().long().clamp(0, height - 1)
    inside = ((source[..., 0] >= 1) & (source[..., 0] <= width - 2) & (source[..., 1] >= 1)
              & (source[..., 1] <= height - 2))
    valid = inside & (own0[sy, sx] == owner)
    clip = clip.clamp(-1, 1)
    return SyntheticClip(clip, downsample_frames(clip, downscale), " and ".join(phrases), "sprite", "sprite",
                         source, valid, None)


RENDER = {"camera": camera_clip, "sprite": sprite_clip}


def make_clip(seed: int, kind: str, height: int, width: int, frames: int, downscale: int = 4,
              split: Split = "train") -> SyntheticClip:
    if kind not in RENDER:
        raise UserError(f"synthetic kind {kind!r} is unknown; use one of {', '.join(KINDS)}")
    return RENDER[kind](seed, height, width, frames, downscale, split)


def heldout_clip(index: int, kind: str, height: int, width: int, frames: int, downscale: int = 4) -> SyntheticClip:
    """Held-out clip `index` of `kind`: a seed and photographs training never uses."""
    return make_clip(HELDOUT_SEED + index, kind, height, width, frames, downscale, split="heldout")


def heldout_motions(count: int, motion: str, height: int, width: int, frames: int) -> Iterator[SyntheticClip]:
    """The first `count` held-out camera clips whose motion is `motion` ("pan", "zoom" or "rotate"), in order."""
    index = 0
    while count > 0:
        clip = heldout_clip(10_000 + index, "camera", height, width, frames)
        index += 1
        if clip.motion == motion:
            count -= 1
            yield clip


def heldout_pans(count: int, height: int, width: int, frames: int) -> Iterator[SyntheticClip]:
    """The first `count` held-out camera clips that pan (the direction benchmarks' clips, in order)."""
    return heldout_motions(count, "pan", height, width, frames)


class SyntheticClips(Dataset):
    """Training clips drawn from seeds seed0, seed0+1, ...; kinds alternate with the seed.

    Items look like VideoClips': {"pixels": (3, F, H, W), "caption", "name"}.
    """

    def __init__(self, count: int, height: int, width: int, frames: int, kinds: tuple[str, ...] = KINDS,
                 seed0: int = 0, downscale: int = 4, low: bool = False):
        if seed0 + count > HELDOUT_SEED:
            raise UserError(f"synthetic seeds {seed0}..{seed0 + count} reach the held-out range ({HELDOUT_SEED})")
        for kind in kinds:
            if kind not in RENDER:
                raise UserError(f"synthetic kind {kind!r} is unknown; use one of {', '.join(KINDS)}")
        photo_folder()
        self.count, self.size, self.frames, self.kinds = count, (height, width), frames, kinds
        self.seed0, self.downscale, self.low = seed0, downscale, low

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> dict:
        seed = self.seed0 + index
        kind = self.kinds[seed % len(self.kinds)]
        clip = make_clip(seed, kind, *self.size, self.frames, self.downscale)
        return {"pixels": clip.low if self.low else clip.frames, "caption": clip.caption,
                "name": f"synthetic-{kind}-{seed}"}
