"""`swifti2v prepare-data`: encode a video folder once into the latent cache (z, z_ref, text per clip).

Runs on one process or many (`accelerate launch ... swifti2v prepare-data`): clip i goes to rank
i mod world. Clips already cached are skipped, so an interrupted run continues where it stopped.
A clip that fails to decode is skipped with a warning and counted; it never stops the run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import av
import torch
from accelerate import PartialState

from swifti2v.data.cache import CacheWriter
from swifti2v.data.videos import load_clip, read_metadata, scan
from swifti2v.errors import UserError
from swifti2v.training.config import TrainConfig
from swifti2v.training.tasks import cache_key, load_clip_encoder

log = logging.getLogger(__name__)


def prepare_data(cfg: TrainConfig, progress: Callable[[str, int, int], None] | None = None) -> dict:
    d = cfg.data
    if not d.folder or not d.cache:
        raise UserError("prepare-data needs both --data FOLDER and --cache DIR")
    state = PartialState(cpu=not torch.cuda.is_available())
    records, report = scan(read_metadata(d.folder), d.frames, d.stride)
    writer = CacheWriter(d.cache, cache_key(cfg), d.cache_dtype)
    mine = [r for i, r in enumerate(records) if i % state.num_processes == state.process_index]
    todo = [r for r in mine if not writer.has(r.name)]
    log.info("prepare-data: %s; %d to encode on this process (%d already cached)", report.summary(), len(todo),
             len(mine) - len(todo))
    encoder = load_clip_encoder(cfg, state.device) if todo else None
    t0, failed = time.perf_counter(), []
    for k, r in enumerate(todo):
        try:
            pixels = load_clip(r.path, d.frames, d.stride, d.height, d.width)[None]
        except (av.error.FFmpegError, ValueError, OSError) as e:
            log.warning("skipping %s: %s", r.name, e)
            failed.append(r.name)
            continue
        writer.write(r.name, *encoder(pixels, [r.caption], [r.name]))
        if progress:
            progress("clips", k + 1, len(todo))
    state.wait_for_everyone()
    if state.is_main_process:
        writer.finish([(r.name, r.caption) for r in records])
    return {"clips": len(records), "encoded": len(todo) - len(failed), "skipped": report.skipped,
            "failed_at_load": failed, "seconds": round(time.perf_counter() - t0, 2)}
