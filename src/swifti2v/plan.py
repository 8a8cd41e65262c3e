"""The plan of a run from its config alone (no weights): Stage I's windows, Stage II's segments, token counts."""

from __future__ import annotations

from dataclasses import replace

from swifti2v.config import RunConfig, Stage2Config, stage1_size
from swifti2v.sampling.csg import Segment, plan_segments, whole_clip_plan
from swifti2v.sampling.tiles import spans


def window_frames(frames: int, window: int) -> list[int]:
    """Stage I's windows for a clip of `frames` (both 4k+1): the first makes up to `window` frames; each next
    one starts from the previous one's last frame (its I2V image) and adds up to window - 1 new ones."""
    sizes = [min(frames, window)]
    while (made := sum(sizes) - len(sizes) + 1) < frames:
        sizes.append(min(frames - made, window - 1) + 1)
    return sizes


def blocks_of(frames: int) -> int:
    """Latent blocks of a 4k+1 clip: the first frame alone, then 4 frames per block."""
    return (frames - 1) // 4 + 1


def context_windows(blocks: int, window: int) -> list[int]:
    """First blocks of Stage I's overlapping context windows (`--extend context`), each `window` blocks long:
    as few as keep at least a third of a window overlapping the next, spread evenly, the last ending at the clip's
    end."""
    if blocks <= window:
        return [0]
    stride = window - max(1, window // 3)
    n = -(-(blocks - window) // stride) + 1
    return [round(k * (blocks - window) / (n - 1)) for k in range(n)]


def stage1_windows(frames: int, window: int, extend: str) -> list[int]:
    """The frames each Stage I model call makes, window by window (both methods)."""
    if extend == "context":
        return [min(frames, window)] * len(context_windows(blocks_of(frames), blocks_of(window)))
    return window_frames(frames, window)


def stage1_joins(frames: int, window: int, extend: str) -> list[int]:
    """The first frame after each join of Stage I's windows: where the next last-frame window's new frames begin,
    or the middle of each context overlap (where the blend hands over)."""
    if extend == "context":
        w = blocks_of(window)
        starts = context_windows(blocks_of(frames), w)
        return [4 * ((start + prev + w) // 2) - 3 for prev, start in zip(starts, starts[1:], strict=False)]
    sizes = window_frames(frames, window)
    return [sum(sizes[: k + 1]) - k for k in range(len(sizes) - 1)]


def stage2_plan(cfg: Stage2Config, num_blocks: int) -> tuple[Segment, ...]:
    """CSG windows, or one window over the whole clip for the end-to-end baseline (`--no-csg`)."""
    plan = (plan_segments(num_blocks, cfg.segment_blocks, cfg.neighbor_blocks) if cfg.csg
            else whole_clip_plan(num_blocks))
    return plan if cfg.anchor else tuple(replace(seg, anchor=False) for seg in plan)


def tile_latent(cfg: Stage2Config) -> tuple[int, int]:
    """Stage II's tile side and overlap in latent pixels (0, 0: whole frames)."""
    side = cfg.tile // cfg.geometry.vae_spatial
    return side, side // 4


def stage2_tiles(cfg: Stage2Config, height: int, width: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """The latent rows and columns of Stage II's spatial tiles at this frame size (one each: whole frames)."""
    g, (side, overlap) = cfg.geometry, tile_latent(cfg)
    return (spans(height // g.vae_spatial, side, overlap, g.patch[1]),
            spans(width // g.vae_spatial, side, overlap, g.patch[2]))


def describe_plan(cfg: RunConfig) -> dict:
    v, s1, s2 = cfg.video, cfg.stage1, cfg.stage2
    plan = stage2_plan(s2, v.num_blocks)
    per_block = s2.geometry.tokens_per_block(v.height, v.width)
    rows, cols = stage2_tiles(s2, v.height, v.width)
    per_tile = (rows[0][1] - rows[0][0]) // s2.geometry.patch[1] * ((cols[0][1] - cols[0][0]) // s2.geometry.patch[2])
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
        "stage2_tiles": len(rows) * len(cols),
        "largest_call_tokens": max(len(seg.positions) for seg in plan) * per_tile,  # one DiT call: a window's tile
        "whole_clip_tokens": v.num_blocks * per_block,
        "stage1": {"height": low_h, "width": low_w, "extend": s1.extend,
                   "windows": stage1_windows(v.frames, s1.window, s1.extend),
                   "joins": stage1_joins(v.frames, s1.window, s1.extend),
                   "tokens": blocks_of(min(v.frames, s1.window))  # its largest window's
                   * s1.geometry.tokens_per_block(low_h, low_w)},
    }
