"""The work directory of a run: everything finished so far, on disk, so a crashed, killed or out-of-memory
run resumes where it stopped instead of starting over.

    manifest.json           the fingerprint of the resolved config and the inputs (file bytes, prompt)
    text.safetensors        the prompt's embedding
    stage1.safetensors      Stage I's latents
    z_ref.safetensors       the hybrid reference
    stage1.json             what the Stage I part reported (seconds, LoRAs), when another process ran it
    segment-0003.safetensors  the latent blocks of each finished Stage II segment

Every file is written under a temporary name, fsynced and renamed, so a file under its final name is
always complete. Re-running the same command resumes after the last finished segment; because the noise
is drawn once for the whole clip and sliced, the resumed video equals an uninterrupted run's. A work
directory made by another config or input is refused unless the run is told to restart.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from swifti2v.config import RunConfig
from swifti2v.errors import UserError
from swifti2v.files import atomic_write_json, fsync_replace

log = logging.getLogger(__name__)
MANIFEST = "manifest.json"
FORMAT = 1


@dataclass(frozen=True)
class WorkOptions:
    path: Path | None = None  # default: beside the output, `.NAME.work`
    restart: bool = False  # discard a work directory made by another config or input
    keep: bool = False  # keep it after success (else it is removed)


def default_path(out: Path) -> Path:
    return out.with_name(f".{out.name}.work")


# How the work is placed and run, not what it computes: changing them on a re-run (e.g. a lighter memory mode
# after running out of memory) resumes the work; only bitwise equality with an uninterrupted run is lost.
PLACEMENT_FIELDS = ("memory_mode", "attention", "compile", "parallel", "device")


def fingerprint(cfg: RunConfig, inputs: dict[str, str | Path | bytes]) -> str:
    """sha256 over the resolved config (less PLACEMENT_FIELDS) and the inputs: files by content, bytes as
    they are, the rest by value."""
    config = {k: v for k, v in cfg.to_dict().items() if k not in PLACEMENT_FIELDS}
    h = hashlib.sha256(json.dumps(config, sort_keys=True).encode())
    for name in sorted(inputs):
        value = inputs[name]
        h.update(name.encode())
        if isinstance(value, bytes):  # an image handed over in memory: its pixels
            h.update(value)
        elif isinstance(value, Path):
            with open(value, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
        else:
            h.update(str(value).encode())
    return h.hexdigest()


class WorkDir:
    """`writer=False`: a process of a --parallel run other than rank 0 reads the same folder, never writes."""

    def __init__(self, path: Path, key: str, restart: bool = False, writer: bool = True):
        self.path, self.key, self.writer = Path(path), key, writer
        manifest = self.path / MANIFEST
        if manifest.is_file():
            found = self._read_manifest(manifest)
            if found != key:
                if not restart:
                    raise UserError(f"work directory {self.path} belongs to a run with another config or input; "
                                    "re-run with --restart to discard it, or pass another --work-dir")
                log.info("discarding work directory %s (--restart)", self.path)
                self._discard()
            elif restart:
                self._discard()
        elif self.path.exists() and any(not p.name.endswith(".partial") for p in self.path.iterdir()):
            if not restart:
                raise UserError(f"work directory {self.path} exists but has no {MANIFEST}; remove it, pass "
                                "--restart, or choose another --work-dir")
            self._discard()

    def _discard(self) -> None:
        if self.writer:
            shutil.rmtree(self.path)

    def _ensure(self) -> None:
        """Created with its manifest on the first save: a run that fails before finishing anything leaves
        nothing behind (and so cannot block a corrected command)."""
        manifest = self.path / MANIFEST
        if not manifest.is_file():
            self.path.mkdir(parents=True, exist_ok=True)
            atomic_write_json(manifest, {"format": FORMAT, "fingerprint": self.key})

    @staticmethod
    def _read_manifest(path: Path) -> str | None:
        try:
            return json.loads(path.read_text()).get("fingerprint")
        except (OSError, ValueError, AttributeError):
            return None

    def save(self, name: str, tensor: torch.Tensor) -> None:
        if not self.writer:
            return
        self._ensure()
        final = self.path / f"{name}.safetensors"
        tmp = final.with_name(f".{final.name}.partial")
        save_file({"x": tensor.detach().float().cpu().contiguous()}, str(tmp))
        fsync_replace(tmp, final)

    def load(self, name: str) -> torch.Tensor | None:
        """The saved tensor, or None when absent or unreadable (then it is made again)."""
        path = self.path / f"{name}.safetensors"
        if not path.is_file():
            return None
        try:
            return load_file(str(path))["x"]
        except (SafetensorError, OSError, KeyError) as e:
            log.warning("ignoring unreadable %s (%s); it will be computed again", path, e)
            return None

    def save_json(self, name: str, obj: dict) -> None:
        if self.writer:
            self._ensure()
            atomic_write_json(self.path / f"{name}.json", obj)

    def load_json(self, name: str) -> dict | None:
        try:
            return json.loads((self.path / f"{name}.json").read_text())
        except (OSError, ValueError):
            return None

    def segments(self) -> dict[int, torch.Tensor]:
        """Finished Stage II segments by index."""
        found = {}
        for path in sorted(self.path.glob("segment-*.safetensors")):
            index = int(path.stem.removeprefix("segment-"))
            tensor = self.load(path.stem)
            if tensor is not None:
                found[index] = tensor
        return found

    def save_segment(self, index: int, blocks: torch.Tensor) -> None:
        self.save(f"segment-{index:04d}", blocks)

    def remove(self) -> None:
        if self.writer:
            shutil.rmtree(self.path, ignore_errors=True)
