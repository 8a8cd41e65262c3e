"""Small file helpers: nothing appears under its final name half-written."""

from __future__ import annotations

import json
import os
from pathlib import Path


def fsync_replace(tmp: Path, final: Path) -> None:
    """Flush `tmp` to disk, rename it over `final`, and flush the directory entry: after a crash the final
    name holds either the old file or the complete new one."""
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, final)
    try:
        fd = os.open(final.parent, os.O_RDONLY)
    except OSError:  # some platforms cannot open directories
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_text(path: Path, text: str) -> None:
    """Write to a hidden temporary file beside `path`, then fsync and rename it over `path`."""
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_text(text)
    fsync_replace(tmp, path)


def atomic_write_json(path: Path, data) -> None:
    atomic_write_text(path, json.dumps(data, indent=2))
