"""The latent cache: per-clip safetensors (z, z_ref, text embedding) so multi-epoch training skips the
VAEs, the text encoder and the Stage I re-denoising.

Layout: `cache.json` (the settings the latents depend on; a cache made with other settings is refused),
one `<hash>.safetensors` per clip written atomically, and `index.json` (clips in metadata order, with
captions) written when preparation finishes. A re-run skips clips already cached.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch.utils.data import Dataset

from swifti2v.errors import UserError
from swifti2v.files import atomic_write_json

DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}
TEXT_TOKENS = 512


def item_file(name: str) -> str:
    return hashlib.sha1(name.encode()).hexdigest()[:16] + ".safetensors"


def trim_text(text: torch.Tensor) -> torch.Tensor:
    """(1, 512, D) zero-padded embedding -> (L, D), L = prompt tokens (at least 1)."""
    nonzero = (text[0].abs().sum(-1) > 0).nonzero()
    return text[0, : max(1, int(nonzero[-1]) + 1 if len(nonzero) else 1)]


def pad_text(rows: list[torch.Tensor]) -> torch.Tensor:
    """[(L_i, D)] -> (B, 512, D) zero-padded, like the encoder's own output."""
    out = rows[0].new_zeros(len(rows), TEXT_TOKENS, rows[0].shape[-1])
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out


class CacheWriter:
    def __init__(self, folder: str | Path, key: dict, dtype: str):
        self.folder, self.dtype = Path(folder), DTYPES[dtype]
        self.folder.mkdir(parents=True, exist_ok=True)
        meta = self.folder / "cache.json"
        if meta.is_file():
            old = json.loads(meta.read_text())
            if old != key:
                raise UserError(f"cache {self.folder} was made with other settings; pass a new --cache folder "
                                "or delete this one")
        else:
            atomic_write_json(meta, key)

    def has(self, name: str) -> bool:
        return (self.folder / item_file(name)).is_file()

    def write(self, name: str, z: torch.Tensor, z_ref: torch.Tensor, text: torch.Tensor) -> None:
        """z, z_ref: (1, C, F, h, w); text: (1, 512, D). Written under a temporary name, then renamed."""
        path = self.folder / item_file(name)
        tmp = path.with_name(f".{path.name}.partial")
        tensors = {"z": z[0], "z_ref": z_ref[0], "text": trim_text(text)}
        save_file({k: v.to(self.dtype).contiguous().cpu() for k, v in tensors.items()}, str(tmp),
                  metadata={"name": name})
        os.replace(tmp, path)

    def finish(self, items: list[tuple[str, str]]) -> None:
        """items: (name, caption) in dataset order; only the ones cached are listed."""
        listed = [{"name": n, "caption": c, "file": item_file(n)} for n, c in items if self.has(n)]
        atomic_write_json(self.folder / "index.json", {"items": listed})


class CachedLatents(Dataset):
    """Items {"z", "z_ref", "text", "caption", "name"} read from a finished cache, as fp32."""

    def __init__(self, folder: str | Path, key: dict):
        self.folder = Path(folder)
        index, meta = self.folder / "index.json", self.folder / "cache.json"
        if not index.is_file():
            raise UserError(f"--cache {self.folder} has no index.json; run `swifti2v prepare-data` to the end first")
        if json.loads(meta.read_text()) != key:
            raise UserError(f"--cache {self.folder} was made with other data/condition/model settings than this "
                            "run; re-run prepare-data with this config")
        self.items = json.loads(index.read_text())["items"]
        if not self.items:
            raise UserError(f"--cache {self.folder} holds no clips")

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        item = self.items[i]
        t = load_file(str(self.folder / item["file"]))
        return {"z": t["z"].float(), "z_ref": t["z_ref"].float(), "text": t["text"].float(),
                "caption": item["caption"], "name": item["name"]}


def collate(items: list[dict]) -> dict:
    """Stack tensors (text padded back to 512 tokens); strings become lists."""
    out: dict = {}
    for k in items[0]:
        vals = [it[k] for it in items]
        if k == "text":
            out[k] = pad_text(vals)
        elif isinstance(vals[0], torch.Tensor):
            out[k] = torch.stack(vals)
        else:
            out[k] = vals
    return out
