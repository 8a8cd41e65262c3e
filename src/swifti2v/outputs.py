"""Where a run's frames go: the H.264 mp4 (+ its JSON), an optional lossless PNG sequence, and the frames
kept in memory for the Python API. Every path is checked before any model loads, and every file or folder
appears under its final name only when complete.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from swifti2v.errors import UserError
from swifti2v.media import VideoWriter, to_uint8

DEFAULT_CRF = 18  # visually lossless for H.264


@dataclass(frozen=True)
class Output:
    video: Path | None  # the .mp4 (its .json beside it); None: frames in memory only (the Python API)
    crf: int = DEFAULT_CRF  # H.264 constant rate factor: 0 lossless ... 51 worst; +6 about halves the size
    png_dir: Path | None = None  # also every frame as a lossless PNG, frame_00000.png, ...
    stage1: Path | None = None  # also the low-res clip Stage II refined, as an mp4 (generate --stage1-out)

    def to_dict(self) -> dict:
        return {"video": None if self.video is None else self.video.name, "crf": self.crf,
                "png_dir": None if self.png_dir is None else str(self.png_dir),
                "stage1": None if self.stage1 is None else self.stage1.name}


def _writable_folder(flag: str, folder: Path) -> None:
    """Create `folder` (and its parents) and check a file can be made in it."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except (OSError, ValueError) as e:  # ValueError: a NUL byte in the name
        reason = getattr(e, "strerror", None) or type(e).__name__
        raise UserError(f"{flag}: cannot write in {folder!s} ({reason}); choose a folder you can write to") from None


def _no_nul(path: Path, flag: str) -> None:
    if "\x00" in str(path):
        raise UserError(f"{flag} {str(path)!r} contains a NUL byte; pass an ordinary path")


def check_video_path(path: Path, flag: str = "--out") -> None:
    _no_nul(path, flag)
    if path.is_dir() or not path.name:
        raise UserError(f"{flag} {path!s} is a folder; pass a file path such as {path / 'video.mp4'}")
    if path.suffix.lower() != ".mp4":
        raise UserError(f"{flag} {path}: the output is an H.264 mp4; name it {path.with_suffix('.mp4').name}")
    if path.with_suffix(".json").is_dir():
        raise UserError(f"{flag} {path}: its settings file {path.with_suffix('.json')} is a folder; move it or "
                        "name the output differently")
    _writable_folder(flag, path.parent)


def check_report(path: Path, suffixes: tuple[str, ...], flag: str = "--out") -> None:
    """A report written as path.json, path.md, ...: none of them a folder, the folder writable."""
    _no_nul(path, flag)
    if not path.name or path.is_dir():
        raise UserError(f"{flag} {path!s} is a folder; pass a file name inside it, e.g. {path / 'report'}")
    for suffix in suffixes:
        if path.with_suffix(suffix).is_dir():
            raise UserError(f"{flag} {path}: {path.with_suffix(suffix)} is a folder; name the report differently")
    _writable_folder(flag, path.parent)


def check_folder(path: Path, flag: str) -> None:
    """A folder we will create or fill (work directory, PNG sequence): not a file, parent writable."""
    _no_nul(path, flag)
    if path.exists() and not path.is_dir():
        raise UserError(f"{flag} {path} is a file; pass a folder path (it is created if missing)")
    _writable_folder(flag, path.parent)


def check_output(out: Output) -> None:
    """Raise UserError, before any work, for an output that could not be written."""
    if not 0 <= out.crf <= 51:
        raise UserError(f"--crf {out.crf} is outside 0..51; use 18 (default, visually lossless) or 23 (smaller)")
    for flag, path in (("--out", out.video), ("--stage1-out", out.stage1)):
        if path is not None:
            check_video_path(path, flag)
    if out.png_dir is not None:
        check_folder(out.png_dir, "--png-dir")
        if out.video is not None and out.png_dir.resolve() == out.video.parent.resolve():
            raise UserError(f"--png-dir {out.png_dir} is the folder of --out; use a folder of its own, e.g. "
                            f"{out.video.with_suffix('')}_frames")
        stray = [p.name for p in out.png_dir.glob("*") if not (p.name.startswith("frame_") and p.suffix == ".png")]
        if stray:
            raise UserError(f"--png-dir {out.png_dir} holds other files ({stray[0]}, ...); it is replaced by the "
                            "frames, so pass an empty or new folder")


class PngWriter:
    """Frames as frame_00000.png ... into a hidden folder beside `path`, renamed to `path` on success."""

    def __init__(self, path: Path):
        self.path = path
        self.tmp = path.with_name(f".{path.name}.partial")
        self.count = 0

    def __enter__(self) -> PngWriter:
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.tmp.mkdir(parents=True)
        return self

    def write(self, frames: np.ndarray) -> None:
        for rgb in frames:
            Image.fromarray(rgb).save(self.tmp / f"frame_{self.count:05d}.png", compress_level=1)
            self.count += 1

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return
        old = self.path.with_name(f".{self.path.name}.old")
        if self.path.exists():
            os.replace(self.path, old)
        os.replace(self.tmp, self.path)
        shutil.rmtree(old, ignore_errors=True)


class FrameSink:
    """Every destination of one run's frames, fed (1, 3, T, H, W) windows in [-1, 1] in order."""

    def __init__(self, out: Output, fps: int, keep: bool):
        self.video = None if out.video is None else VideoWriter(out.video, fps, out.crf)
        self.pngs = None if out.png_dir is None else PngWriter(out.png_dir)
        self.kept: list[np.ndarray] | None = [] if keep else None

    def __enter__(self) -> FrameSink:
        for w in (self.video, self.pngs):
            if w is not None:
                w.__enter__()
        return self

    def write(self, frames: torch.Tensor) -> None:
        rgb = to_uint8(frames)
        if self.video is not None:
            self.video.write_uint8(rgb)
        if self.pngs is not None:
            self.pngs.write(rgb)
        if self.kept is not None:
            self.kept.append(rgb)

    def frames(self) -> np.ndarray | None:
        return None if self.kept is None else np.concatenate(self.kept)

    def __exit__(self, exc_type, exc, tb) -> None:
        # PNGs first: the mp4 (what a resumed or batch run checks for) appears last
        for w in (self.pngs, self.video):
            if w is not None:
                w.__exit__(exc_type, exc, tb)


def write_video(path: Path, frames: np.ndarray, fps: int, crf: int) -> None:
    """(T, H, W, 3) uint8 frames as an mp4 (under its final name only when complete)."""
    with VideoWriter(path, fps, crf) as writer:
        writer.write_uint8(frames)


def check_paths(output: Output, work_dir: Path | None) -> None:
    """Every path a run will write, checked before any work (UserError naming the path and the fix)."""
    check_output(output)
    if work_dir is not None:
        check_folder(work_dir, "--work-dir")
    named = {"--out": output.video, "--stage1-out": output.stage1, "--png-dir": output.png_dir, "--work-dir": work_dir}
    places = [(flag, path.resolve()) for flag, path in named.items() if path is not None]
    for i, (flag_a, a) in enumerate(places):
        for flag_b, b in places[i + 1:]:
            if a == b or a in b.parents or b in a.parents:
                raise UserError(f"{flag_a} {a} and {flag_b} {b} overlap; give each its own place")
