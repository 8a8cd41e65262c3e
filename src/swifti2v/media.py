"""Images in, mp4 out (H.264 via PyAV/FFmpeg), with the project's resize policy.

Resize policy: the image is EXIF-rotated, converted to RGB (alpha composited on white), scaled so it
covers the target size (Lanczos) and centre-cropped to exactly height x width. Videos given to
`refine` get the same policy per frame. Outputs are written under a temporary name and renamed when
complete, so the final name never holds a half-written file.
"""

from __future__ import annotations

import functools
import logging
import struct
import warnings
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError

from swifti2v.errors import UserError
from swifti2v.files import fsync_replace

DEFAULT_FPS = 16  # Wan's native frame rate
log = logging.getLogger(__name__)


MAX_SIDE = 8192  # larger inputs are downscaled on load (a 2K output needs 2560 x 1408)


def load_image(path: str | Path) -> Image.Image:
    """Any image PIL reads -> RGB, EXIF-rotated, alpha composited on white, at most MAX_SIDE per side."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"--image {path} not found; pass an existing image file (PNG, JPEG, WebP, ...)")
    try:
        with warnings.catch_warnings(), Image.open(path) as im:
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # large is handled below
            w, h = im.size
            if max(w, h) > MAX_SIDE:
                log.warning("--image %s is %dx%d; downscaling to at most %d per side", path, w, h, MAX_SIDE)
                im.draft("RGB", (MAX_SIDE, MAX_SIDE))  # JPEG decodes at a reduced scale directly
            im.load()
            im = ImageOps.exif_transpose(im)
            if max(im.size) > MAX_SIDE:
                im.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
    except Image.DecompressionBombError:
        raise UserError(f"--image {path} has over {2 * Image.MAX_IMAGE_PIXELS:,} pixels, too many to decode "
                        "safely; downscale it first") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, struct.error) as e:
        raise UserError(f"--image {path} is not a readable image ({type(e).__name__}: {str(e)[:120]}); "
                        "pass a PNG, JPEG or WebP file") from None
    return as_image(im)


ImageSource = str | Path | Image.Image | np.ndarray


def as_image(source: ImageSource) -> Image.Image:
    """A path (load_image's policy), a PIL image or an (H, W, 3|4) uint8 array -> RGB PIL image."""
    if isinstance(source, str | Path):
        return load_image(source)
    if isinstance(source, np.ndarray):
        if source.dtype != np.uint8 or source.ndim != 3 or source.shape[2] not in (3, 4):
            raise UserError(f"image array of shape {source.shape} and dtype {source.dtype}: pass (H, W, 3) uint8 RGB")
        source = Image.fromarray(source)
    if not isinstance(source, Image.Image):
        raise UserError(f"image of type {type(source).__name__}: pass a file path, a PIL image or an (H, W, 3) "
                        "uint8 array")
    if source.mode in ("RGBA", "LA", "PA") or (source.mode == "P" and "transparency" in source.info):
        rgba = source.convert("RGBA")
        source = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    return source.convert("RGB")


def fit(image: Image.Image, height: int, width: int) -> Image.Image:
    """Scale to cover (height, width), then centre-crop."""
    return ImageOps.fit(image, (width, height), method=Image.Resampling.LANCZOS, centering=(0.5, 0.5))


def to_tensor(image: Image.Image) -> torch.Tensor:
    """PIL RGB -> (1, 3, H, W) float32 in [-1, 1]."""
    a = torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1).float()
    return (a / 127.5 - 1.0).unsqueeze(0)


def to_uint8(frames: torch.Tensor) -> np.ndarray:
    """(B=1, 3, T, H, W) in [-1, 1] -> (T, H, W, 3) uint8."""
    x = ((frames[0].float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(1, 2, 3, 0).cpu().numpy()


def upsample(frames: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(B, 3, T, h, w) -> (B, 3, T, height, width), bicubic, clamped to [-1, 1]."""
    b, c, t, h, w = frames.shape
    if (h, w) == (height, width):
        return frames
    x = frames.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
    x = F.interpolate(x.float(), size=(height, width), mode="bicubic", align_corners=False).clamp(-1, 1)
    return x.reshape(b, t, c, height, width).permute(0, 2, 1, 3, 4)


def downsample(clip: torch.Tensor, factor: int) -> torch.Tensor:
    """(B, 3, F, H, W) -> (B, 3, F, H/factor, W/factor), antialiased bicubic, clamped to [-1, 1]."""
    b, c, f, h, w = clip.shape
    x = clip.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w).float()
    x = F.interpolate(x, size=(h // factor, w // factor), mode="bicubic", antialias=True, align_corners=False)
    return x.clamp(-1, 1).reshape(b, f, c, h // factor, w // factor).permute(0, 2, 1, 3, 4)


def read_video(path: str | Path, flag: str = "--motion") -> tuple[list[Image.Image], float]:
    """All frames of a video file as RGB images, and its frame rate. `flag` names the file in errors."""
    frames, fps, _ = _decode(path, flag, lambda f: f.to_image())
    return frames, fps


def _decode(path: str | Path, flag: str, convert) -> tuple[list, float, tuple[int, int]]:
    """Every frame through `convert`, the frame rate and the stream's (width, height); UserErrors name `flag`."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{flag} {path} not found; pass an existing video file (mp4, mov, webm)")
    try:
        with av.open(local_file(path)) as container:
            stream = container.streams.video[0]
            fps = float(stream.average_rate or DEFAULT_FPS)
            frames = [convert(f) for f in container.decode(stream)]
            size = (stream.width, stream.height)
    except (av.error.FFmpegError, IndexError, OSError) as e:
        raise UserError(f"{flag} {path} is not a readable video ({e}); pass an mp4/mov/webm file") from None
    if not frames:
        raise UserError(f"{flag} {path} has no frames")
    return frames, fps, size


# x264's output depends on its thread count, which by default follows the CPUs this process may use: the
# same frames gave different mp4 bytes on 1 and 2 cores. A fixed count makes the bytes a function of the
# frames and settings alone (any load, a resumed run). 8 threads encode as fast as the auto count on 2
# cores and still spread over a GPU machine's many.
ENCODER_THREADS = 8

# x264's AVX-512 code was not deterministic on an AVX-512 machine: the same frames, one encoder thread,
# gave other bytes in 0-17% of encodes under CPU load (its macroblock-tree rate control: off, or with the
# AVX-512 code left out, 0 of 1,200). Its AVX2 code gives the same size and quality at the same speed, so
# on such machines the writer names x264's CPU features itself, AVX-512 left out.
X264_WITHOUT_AVX512 = "MMX2,SSE2Fast,SSSE3,SSE4.2,AVX,FMA3,LZCNT,BMI2,AVX2"
_NEEDS = {"avx512f", "avx2", "fma", "bmi2", "abm"}  # /proc/cpuinfo's names; abm includes LZCNT


@functools.cache
def x264_params(cpuinfo: Path = Path("/proc/cpuinfo")) -> dict[str, str]:
    """{"x264-params": ...} that keeps x264 off its AVX-512 code where the CPU has it, else {}."""
    try:
        flags = next(line for line in cpuinfo.read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        return {}
    return {"x264-params": f"asm={X264_WITHOUT_AVX512}"} if set(flags.split()) >= _NEEDS else {}


def local_file(path: str | Path) -> str:
    """A path as FFmpeg must get it: absolute, so a name like `a:b.mp4` is a file, not a protocol `a:`."""
    return str(Path(path).absolute())


class VideoWriter:
    """Stream frames into an H.264 mp4; the file appears under its final name only on success."""

    def __init__(self, path: str | Path, fps: int, crf: int = 18):
        self.path = Path(path)
        self.tmp = self.path.with_name(f".{self.path.stem}.partial{self.path.suffix or '.mp4'}")
        self.fps, self.crf = fps, crf
        self.frames_written = 0
        self._container = None
        self._stream = None

    def __enter__(self) -> VideoWriter:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._container = av.open(local_file(self.tmp), mode="w", format="mp4")
        return self

    def write(self, frames: torch.Tensor) -> None:
        """frames: (1, 3, T, H, W) in [-1, 1]."""
        self.write_uint8(to_uint8(frames))

    def write_uint8(self, frames: np.ndarray) -> None:
        """frames: (T, H, W, 3) uint8."""
        for rgb in frames:
            if self._stream is None:
                self._stream = self._container.add_stream("libx264", rate=self.fps)
                self._stream.height, self._stream.width = rgb.shape[:2]
                self._stream.pix_fmt = "yuv420p"
                self._stream.thread_count = ENCODER_THREADS  # fixed, not the CPU count: see ENCODER_THREADS
                self._stream.options = {"crf": str(self.crf), "preset": "medium", **x264_params()}
            for packet in self._stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                self._container.mux(packet)
            self.frames_written += 1

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if self._stream is not None:
                for packet in self._stream.encode():
                    self._container.mux(packet)
        finally:
            self._container.close()
        if exc_type is None:
            fsync_replace(self.tmp, self.path)
        else:
            self.tmp.unlink(missing_ok=True)


def probe_video(path: str | Path, flag: str = "video") -> dict:
    """Frame count, size and rate of a video file (decoded, not trusted from the header)."""
    frames, fps, (width, height) = _decode(path, flag, lambda f: None)
    return {"frames": len(frames), "width": width, "height": height, "fps": fps}


def iter_frames(images: list[Image.Image], height: int, width: int) -> Iterator[torch.Tensor]:
    for im in images:
        yield to_tensor(fit(im.convert("RGB"), height, width))
