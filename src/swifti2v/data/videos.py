"""A folder of videos plus captions -> fixed-size training clips.

Layout: the folder holds the videos (mp4, mov, webm, mkv) and `metadata.jsonl` (one
`{"file": "a.mp4", "caption": "..."}` per line) or `metadata.csv` (header `file,caption`). `file` is
relative to the folder. A video without a caption is an error naming the file; a caption whose file is
missing, unreadable or too short is skipped with a warning and counted.

Clip policy (fixed, so training matches inference): a clip is the first `frames` frames of the video,
taking every `stride`-th frame, starting at frame 0 (the first frame plays the input image). Every frame
is scaled to cover height x width (Lanczos) and centre-cropped, exactly like `generate`'s input image.
"""

from __future__ import annotations

import csv
import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import av
import torch
from torch.utils.data import Dataset

from swifti2v import media
from swifti2v.errors import UserError

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".mov", ".webm", ".mkv")


@dataclass(frozen=True)
class VideoRecord:
    name: str  # path relative to the folder
    path: Path
    caption: str


@dataclass
class ScanReport:
    """What a scan kept and what it skipped (reason -> file names)."""

    kept: int = 0
    skipped: dict[str, list[str]] = field(default_factory=dict)

    def skip(self, reason: str, name: str) -> None:
        log.warning("skipping %s: %s", name, reason)
        self.skipped.setdefault(reason, []).append(name)

    @property
    def num_skipped(self) -> int:
        return sum(len(v) for v in self.skipped.values())

    def summary(self) -> str:
        parts = ", ".join(f"{len(v)} {k}" for k, v in self.skipped.items())
        return f"{self.kept} clips kept, {self.num_skipped} skipped" + (f" ({parts})" if parts else "")


def _rows(folder: Path) -> list[tuple[int, dict]]:
    jsonl, csv_path = folder / "metadata.jsonl", folder / "metadata.csv"
    if jsonl.is_file():
        rows = []
        for i, line in enumerate(jsonl.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                rows.append((i, json.loads(line)))
            except json.JSONDecodeError as e:
                raise UserError(f"{jsonl}:{i} is not valid JSON ({e.msg}); one object per line") from None
        return rows
    if csv_path.is_file():
        with csv_path.open(newline="") as f:
            return [(i, row) for i, row in enumerate(csv.DictReader(f), 2)]
    raise UserError(f"no metadata.jsonl or metadata.csv in {folder}; add one with `file` and `caption` per video")


def read_metadata(folder: str | Path) -> list[VideoRecord]:
    """Records in metadata order. Every video in the folder must have a non-empty caption."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"--data {folder} is not a folder; pass a folder of videos with metadata.jsonl")
    records, seen = [], set()
    for line, row in _rows(folder):
        name = str(row.get("file") or "").strip()
        if not name:
            raise UserError(f"metadata line {line} in {folder} has no `file`; every row needs file and caption")
        caption = str(row.get("caption") or "").strip()
        if not caption:
            raise UserError(f"{name} has no caption (metadata line {line}); add a `caption`")
        records.append(VideoRecord(name, folder / name, caption))
        seen.add(name)
    for path in sorted(folder.rglob("*")):
        name = path.relative_to(folder).as_posix()
        if path.suffix.lower() in VIDEO_SUFFIXES and name not in seen:
            raise UserError(f"{name} has no caption: it is not listed in the metadata; add a row for it or move it")
    return records


def count_frames(path: Path) -> int:
    """Decoded frame count (container headers are not trusted). Raises av/OS errors when unreadable."""
    with av.open(media.local_file(path)) as container:
        stream = container.streams.video[0]
        return sum(1 for _ in container.decode(stream))


def scan(records: list[VideoRecord], frames: int, stride: int) -> tuple[list[VideoRecord], ScanReport]:
    """Keep the records whose file decodes and holds at least 1 + (frames-1)*stride frames."""
    need, report, kept = 1 + (frames - 1) * stride, ScanReport(), []
    for r in records:
        if not r.path.is_file():
            report.skip("missing", r.name)
            continue
        try:
            n = count_frames(r.path)
        except (av.error.FFmpegError, IndexError, OSError):
            report.skip("unreadable", r.name)
            continue
        if n < need:
            report.skip(f"shorter than {need} frames", r.name)
            continue
        kept.append(r)
    report.kept = len(kept)
    return kept, report


def load_clip(path: Path, frames: int, stride: int, height: int, width: int) -> torch.Tensor:
    """The clip policy above: (3, frames, height, width) float32 in [-1, 1]."""
    out = []
    with av.open(media.local_file(path)) as container:
        for i, frame in enumerate(container.decode(container.streams.video[0])):
            if i % stride == 0:
                out.append(media.to_tensor(media.fit(frame.to_image(), height, width))[0])
                if len(out) == frames:
                    break
    if len(out) < frames:
        raise ValueError(f"{path.name} has {len(out)} usable frames, need {frames}")
    return torch.stack(out, dim=1)


class VideoClips(Dataset):
    """Pixel clips and captions. A file that fails to decode at load time is replaced by the next one
    (logged and counted in `failures`), so one bad file never stops a run."""

    def __init__(self, records: list[VideoRecord], frames: int, stride: int, height: int, width: int):
        if not records:
            raise UserError("no usable training clips (all were skipped); check the warnings above")
        self.records, self.frames, self.stride, self.size = records, frames, stride, (height, width)
        self.failures: Counter[str] = Counter()

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict:
        for k in range(len(self.records)):
            r = self.records[(index + k) % len(self.records)]
            try:
                pixels = load_clip(r.path, self.frames, self.stride, *self.size)
            except (av.error.FFmpegError, ValueError, OSError) as e:
                log.warning("skipping %s at load time: %s", r.name, e)
                self.failures[r.name] += 1
                continue
            return {"pixels": pixels, "caption": r.caption, "name": r.name}
        raise RuntimeError("every training clip failed to load")


def open_folder(folder: str | Path, frames: int, stride: int, height: int, width: int) -> tuple[VideoClips, ScanReport]:
    kept, report = scan(read_metadata(folder), frames, stride)
    log.info("data %s: %s", folder, report.summary())
    return VideoClips(kept, frames, stride, height, width), report
