"""The plan of a run from its config alone (no weights): Stage I's windows, Stage II's segments, token counts."""

from __future__ import annotations

from dataclasses import replace

from swifti2v.config import RunConfig, Stage2Config, stage1_size
from swifti2v.sampling.csg import Segment, plan_segments, whole_clip_plan


def window_frames(frames: int, window: int) -> list[int]:
    """Stage I's windows for a clip of `frames` (both 4k+1): the first makes up to `window` frames; each next
    one starts from the previous one's last frame (its I2V image) and adds up to window - 1 new ones."""
    sizes = [min(frames, window)]
    while (made := sum(sizes) - len(sizes) + 1) < frames:
        sizes.append(min(frames - made, window - 1) + 1)
    return sizes


def stage2_plan(cfg: Stage2Config, num_blocks: int) -> tuple[Segment, ...]:
    """CSG windows, or one window over the whole clip for the end-to-end baseline (`--no-csg`)."""
    plan = (plan_segments(num_blocks, cfg.segment_blocks, cfg.neighbor_blocks) if cfg.csg
            else whole_clip_plan(num_blocks))
    return plan if cfg.anchor else tuple(replace(seg, anchor=False) for seg in plan)


def describe_plan(cfg: RunConfig) -> dict:
    v, s2 = cfg.video, cfg.stage2
    plan = stage2_plan(s2, v.num_blocks)
    per_block = s2.geometry.tokens_per_block(v.height, v.width)
    low_h, low_w = stage1_size(v, cfg.stage1)
    return {
        "preset": cfg.preset,
        "video": {"height": v.height, "width": v.width, "frames": v.frames, "fps": v.fps},
        "blocks": v.num_blocks,
        "csg": s2.csg,
        "segment_blocks": s2.segment_blocks,
        "neighbor_blocks": s2.neighbor_blocks,
        "num_segments": len(plan),
        "segments": [{**seg.to_dict(), "tokens": len(seg.positions) * per_block} for seg in plan],
        "tokens_per_block": per_block,
        "largest_window_tokens": max(len(seg.positions) for seg in plan) * per_block,
        "whole_clip_tokens": v.num_blocks * per_block,
        "stage1": {"height": low_h, "width": low_w, "windows": window_frames(v.frames, cfg.stage1.window),
                   "tokens": ((min(v.frames, cfg.stage1.window) - 1) // 4 + 1)  # its largest window's
                   * cfg.stage1.geometry.tokens_per_block(low_h, low_w)},
    }
