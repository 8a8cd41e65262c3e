"""Camera clips over a bank of stills: the `tiny` models' training data, cheap enough to feed a GPU.

`synthetic.camera_clip` draws a new collage for every clip, which costs more CPU than a GPU training step.
A bank makes `collages` collages once (in parallel) and holds the photographs of a split at native scale
and shrunk (x0.75, x0.5). Each clip takes one of them — a photograph alone half of the time, since
photographs are what users feed — crops, flips and colour-jitters it, and moves a camera over it along
a random path (pans of up to `speed` pixels per frame at the output size, zooms, rotations; see
`synthetic.camera_path`), rendered with bicubic sampling. Held-out photo clips (`heldout_photo_clip`)
use the held-out photographs alone, so the benchmark's photographs never reach training.
"""

from __future__ import annotations

import math
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from swifti2v.data.synthetic import (
    HELDOUT_SEED,
    MOTIONS,
    PHOTOS,
    PanSpeed,
    Split,
    SyntheticClip,
    _photo,
    camera_shot,
    photo_folder,
    render_camera,
    render_shots,
    still,
)
from swifti2v.errors import UserError

Tensor = torch.Tensor
PHOTO_SCALES = (1.0, 0.75, 0.5)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
COLLAGE_SIZE = 512


def _collage(args: tuple[int, Split]) -> np.ndarray:
    seed, split = args
    img = still(np.random.default_rng(seed), COLLAGE_SIZE, COLLAGE_SIZE, split)
    return ((img.permute(1, 2, 0).numpy() + 1) * 127.5).round().clip(0, 255).astype(np.uint8)


def _shrink(img: np.ndarray, scale: float) -> np.ndarray:
    if scale == 1.0:
        return (img * 255).round().astype(np.uint8)
    size = (round(img.shape[1] * scale), round(img.shape[0] * scale))
    return np.asarray(Image.fromarray((img * 255).round().astype(np.uint8)).resize(size, Image.LANCZOS))


@dataclass
class StillBank:
    """uint8 HxWx3 stills: collages (made from seeds) and the split's photographs at PHOTO_SCALES."""

    collages: list[np.ndarray]
    photos: list[np.ndarray]

    @classmethod
    def build(cls, collages: int, split: Split = "train", seed: int = 0, workers: int = 1,
              more_photos: str = "") -> StillBank:
        """more_photos: a folder of photographs added to the split's (training only: held-out clips never read it)."""
        photo_folder()
        jobs = [(seed + i, split) for i in range(collages)]
        if workers > 1 and collages > 1:
            # spawn, not fork: a forked child of a process whose OpenMP pool has run hangs in its first
            # parallel region (libgomp is not fork-safe), and a trainer has always run torch ops by now
            with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                     initializer=torch.set_num_threads, initargs=(1,)) as pool:
                made = list(pool.map(_collage, jobs, chunksize=4))
        else:
            made = [_collage(j) for j in jobs]
        stills = [_photo(name) for name in PHOTOS[split]] + (folder_photos(more_photos) if more_photos else [])
        return cls(made, [_shrink(img, s) for img in stills for s in PHOTO_SCALES])

    def pick(self, rng: np.random.Generator, h: int, w: int, photo_share: float = 0.5) -> Tensor:
        """(3, h, w) in [-1, 1]: a random crop of a random still (mirror-tiled where too small), flipped and
        colour-jittered."""
        pool = self.photos if (rng.random() < photo_share or not self.collages) else self.collages
        img = pool[rng.integers(len(pool))]
        if rng.random() < 0.5:
            img = img[:, ::-1]
        if rng.random() < 0.25:
            img = img[::-1]
        ph, pw = img.shape[:2]
        if ph < h or pw < w:  # mirror tiling keeps the seams continuous
            tile = np.concatenate([img, img[:, ::-1]], 1)
            tile = np.concatenate([tile, tile[::-1]], 0)
            img = np.tile(tile, (h // (2 * ph) + 1, w // (2 * pw) + 1, 1))
        y0, x0 = rng.integers(0, img.shape[0] - h + 1), rng.integers(0, img.shape[1] - w + 1)
        crop = torch.from_numpy(np.ascontiguousarray(img[y0 : y0 + h, x0 : x0 + w])).permute(2, 0, 1).float() / 255
        gain = torch.from_numpy(rng.uniform(0.85, 1.15, 3)).float().view(3, 1, 1)
        gamma = float(rng.uniform(0.8, 1.25))
        return ((crop.clamp_min(0) ** gamma) * gain).clamp(0, 1) * 2 - 1


def folder_photos(folder: str) -> list[np.ndarray]:
    """`data.photos`: every image in `folder`, as float HxWx3 in [0, 1] like the built-in photographs."""
    path = Path(folder)
    files = sorted(f for f in path.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES) if path.is_dir() else []
    if not files:
        raise UserError(f"data.photos {folder}: not a folder of images ({', '.join(IMAGE_SUFFIXES)}); "
                        "give a folder of photographs, or leave it empty")
    photos = []
    for f in files:
        try:
            with Image.open(f) as im:
                photos.append(np.asarray(im.convert("RGB"), np.float32) / 255.0)
        except OSError as e:
            raise UserError(f"data.photos: {f} is not a readable image ({e}); remove it or fix it") from None
    return photos


def to_uint8(pixels: Tensor) -> Tensor:
    return ((pixels + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)


def to_float(pixels: Tensor) -> Tensor:
    """uint8 pixels -> [-1, 1] floats; floats pass through."""
    return pixels.float() / 127.5 - 1 if pixels.dtype == torch.uint8 else pixels


def still_bound(height: int, width: int, frames: int, k: int, max_speed: float) -> tuple[int, int]:
    """The largest still (at 1/k) a camera path over a (height, width) frame can need (camera_path's ranges:
    pans of up to `max_speed` px/frame on each axis at 33 frames, rotations up to 20 degrees, zooms that only
    magnify)."""
    pan = max_speed * 33 / frames * (frames - 1)
    c, s = math.cos(math.radians(20)), math.sin(math.radians(20))
    w = max(width + pan, width * c + height * s) + 9 * k + 3
    h = max(height + pan, height * c + width * s) + 9 * k + 3
    return math.ceil(h / k), math.ceil(w / k)


class BankClips(Dataset):
    """Training camera clips from a StillBank, as shots to render where the model runs (`batch_pixels`):
    {"still": uint8 (3, h, w) padded to `still_bound`, "affine", "lo", "frame_size", "caption", "name"}.
    A loader worker only crops a still (milliseconds) and sends it as uint8; the GPU samples the frames.

    `low`: the 1/downscale twin (Stage I training), rendered at that size directly.
    """

    def __init__(self, bank: StillBank, count: int, height: int, width: int, frames: int, seed0: int = 0,
                 downscale: int = 4, low: bool = False, speed: tuple[float, float] = (0.25, 4.5),
                 photo_share: float = 0.5, motions: tuple[str, ...] = tuple(MOTIONS), pan_speed: PanSpeed = "path"):
        if seed0 + count > HELDOUT_SEED:
            raise UserError(f"synthetic seeds {seed0}..{seed0 + count} reach the held-out range ({HELDOUT_SEED})")
        self.bank, self.count, self.size, self.frames = bank, count, (height, width), frames
        self.seed0, self.k, self.speed, self.photo_share = seed0, downscale if low else 1, speed, photo_share
        self.motions, self.pan_speed = motions, pan_speed
        self.bound = still_bound(height, width, frames, self.k, speed[1])

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> dict:
        seed = self.seed0 + index
        rng = np.random.default_rng(seed)
        make = lambda h, w: self.bank.pick(rng, h, w, self.photo_share)
        shot = camera_shot(rng, *self.size, self.frames, self.k, make, self.speed, self.motions, self.pan_speed)
        h, w = shot.still.shape[-2:]
        assert h <= self.bound[0] and w <= self.bound[1], (shot.still.shape, self.bound)
        still = torch.zeros(3, *self.bound, dtype=torch.uint8)
        still[:, :h, :w] = to_uint8(shot.still)
        return {"still": still, "affine": shot.affine, "lo": shot.lo, "caption": shot.caption,
                "frame_size": torch.tensor([*self.size, self.k]), "name": f"bank-{seed}"}


def batch_pixels(batch: dict, device: torch.device | str) -> Tensor:
    """A batch's clips as (B, 3, F, H, W) in [-1, 1] on `device`: bank shots are rendered there."""
    if "still" not in batch:
        return to_float(batch["pixels"].to(device))
    h, w, k = (int(v) for v in batch["frame_size"][0])
    return render_shots(to_float(batch["still"].to(device)), batch["affine"], batch["lo"], h, w, k)


_HELDOUT_BANK: list[StillBank] = []


def heldout_photo_clip(index: int, height: int, width: int, frames: int, downscale: int = 4,
                       speed: tuple[float, float] = (0.5, 4.0)) -> SyntheticClip:
    """Held-out clip `index` over a held-out photograph (no collage): a seed and photographs training never uses."""
    if not _HELDOUT_BANK:
        _HELDOUT_BANK.append(StillBank.build(0, split="heldout"))
    rng = np.random.default_rng(HELDOUT_SEED + 500_000 + index)
    bank = _HELDOUT_BANK[0]
    return render_camera(rng, height, width, frames, downscale, lambda h, w: bank.pick(rng, h, w, 1.0), speed)
