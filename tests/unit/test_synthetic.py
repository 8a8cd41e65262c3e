"""Procedural clips: deterministic, held-out split apart, ground-truth motion that an oracle can follow."""

import math

import pytest
import torch

from swifti2v.bench.fidelity import (
    MIN_TURN_DEG,
    MIN_ZOOM,
    SHIFTED_COPY_DB,
    camera_motion_of,
    oracle_warp,
    shifted_copy_psnr,
)
from swifti2v.data.synthetic import (
    HELDOUT_SEED,
    PAN_DIRECTIONS,
    SyntheticClips,
    camera_clip,
    downsample_frames,
    heldout_clip,
    heldout_motions,
    heldout_pans,
    make_clip,
    sprite_clip,
)
from swifti2v.errors import UserError
from swifti2v.eval.metrics import frame_psnr


def test_same_seed_same_clip_and_splits_differ():
    a, b = camera_clip(3, 64, 96, 9), camera_clip(3, 64, 96, 9)
    assert torch.equal(a.frames, b.frames) and a.caption == b.caption
    assert not torch.equal(heldout_clip(3, "camera", 64, 96, 9).frames, a.frames)
    assert a.frames.shape == (3, 9, 64, 96) and a.low.shape == (3, 9, 16, 24)
    assert torch.equal(a.low, downsample_frames(a.frames, 4))
    assert a.frames.min() >= -1 and a.frames.max() <= 1


def test_detail_everywhere():
    """High-frequency content: a 4x downsample + bicubic upsample loses a lot in every clip."""
    import torch.nn.functional as F

    for seed in range(4):
        clip = make_clip(seed, ("camera", "sprite")[seed % 2], 96, 128, 5)
        up = F.interpolate(clip.low.permute(1, 0, 2, 3), scale_factor=4, mode="bicubic").permute(1, 0, 2, 3)
        assert frame_psnr(up.clamp(-1, 1), clip.frames).mean() < 30


@pytest.mark.parametrize("seed", range(6))
def test_captions_name_the_motion(seed):
    clip = camera_clip(seed, 64, 96, 9)
    assert clip.caption.startswith("the camera ")
    if clip.motion == "pan":
        name = clip.caption.removeprefix("the camera pans ")
        dx, dy = PAN_DIRECTIONS[name]
        sx, sy = clip.shift
        assert sx * dx <= 0 and sy * dy <= 0 and abs(sx) + abs(sy) > 0  # content moves against the camera
    sprite = sprite_clip(seed, 64, 96, 9)
    assert " moves " in sprite.caption


@pytest.mark.parametrize("kind", ["camera", "sprite"])
def test_oracle_warp_reproduces_visible_content(kind):
    for seed in range(3):
        clip = make_clip(seed, kind, 96, 128, 13)
        warped = oracle_warp(clip, torch.zeros_like(clip.frames))
        inside = clip.valid[None].expand_as(warped)
        err = (warped - clip.frames)[inside].abs().mean()
        assert clip.valid[0].float().mean() > 0.95 and err < 0.05, (seed, err)


def test_dataset_items_and_held_out_range():
    ds = SyntheticClips(4, 64, 96, 9)
    item = ds[1]
    assert item["pixels"].shape == (3, 9, 64, 96) and item["name"] == "synthetic-sprite-1"
    assert SyntheticClips(4, 64, 96, 9, low=True)[0]["pixels"].shape == (3, 9, 16, 24)
    with pytest.raises(UserError, match="held-out"):
        SyntheticClips(10, 64, 96, 9, seed0=HELDOUT_SEED - 5)
    with pytest.raises(UserError, match="unknown"):
        SyntheticClips(4, 64, 96, 9, kinds=("fireworks",))


def test_heldout_pans_are_the_first_held_out_camera_clips_that_pan():
    pans = list(heldout_pans(3, 64, 96, 9))
    expected = [c for i in range(20) if (c := heldout_clip(10_000 + i, "camera", 64, 96, 9)).motion == "pan"][:3]
    assert len(pans) == 3 and all(p.motion == "pan" and p.shift is not None for p in pans)
    assert [p.caption for p in pans] == [c.caption for c in expected]
    assert all(torch.equal(p.frames, c.frames) for p, c in zip(pans, expected, strict=True))


def test_held_out_zooms_and_rotations_read_the_captioned_way_at_stage1_size():
    """What Stage I's zoom and rotation counts compare against: the truth, measured the same way, has the caption's
    sign (zoom in > 1, clockwise > 0) and is well past the counting thresholds."""
    for motion, key in (("zoom", "camera_zoom"), ("rotate", "camera_rotation_deg")):
        for clip in heldout_motions(1, motion, 288, 512, 33):
            got = camera_motion_of(clip.low)[key]
            sign = 1 if clip.caption.endswith((" in", " clockwise")) else -1
            assert motion == clip.motion and sign * (math.log(got) if motion == "zoom" else got) > 0, clip.caption
            assert abs(math.log(got)) > 2 * math.log(MIN_ZOOM) if motion == "zoom" else abs(got) > 4 * MIN_TURN_DEG


def test_a_pan_is_a_shifted_copy_and_a_mosaic_of_moved_tokens_is_not():
    """Stage I's direction bar counts a clip only if its frames are frame 0 moved: a true pan and a still pass,
    the same pan with its 8-pixel tokens shuffled (what a half-trained Stage I draws) does not."""
    pan = next(heldout_pans(1, 288, 512, 33)).low  # (3, 33, 72, 128), Stage I's size
    still = pan[:, :1].expand_as(pan)
    g = torch.Generator().manual_seed(0)
    tiles = pan.unfold(2, 8, 8).unfold(3, 8, 8)  # (3, F, 9, 16, 8, 8)
    order = torch.randperm(9 * 16, generator=g)
    shuffled = tiles.flatten(2, 3)[:, :, order].unflatten(2, (9, 16)).permute(0, 1, 2, 4, 3, 5).reshape(pan.shape)
    mosaic = torch.cat([pan[:, :1], shuffled[:, 1:]], dim=1)
    assert shifted_copy_psnr(pan) > SHIFTED_COPY_DB + 3 and shifted_copy_psnr(still) > 90
    assert shifted_copy_psnr(mosaic) < SHIFTED_COPY_DB - 3
