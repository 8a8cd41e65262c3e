"""Bank clips: camera clips over a bank of collages and photographs, the tiny models' training data."""

import json
import sys

import numpy as np
import torch

from conftest import run_process
from swifti2v.data import synthetic as S
from swifti2v.data.bank import BankClips, StillBank, batch_pixels, heldout_photo_clip
from swifti2v.data.cache import collate
from swifti2v.data.synthetic import PHOTOS
from swifti2v.training.config import TrainConfig


def test_bank_clips_are_deterministic_shots_rendered_where_the_model_runs():
    bank = StillBank.build(2, seed=5)
    assert len(bank.collages) == 2 and len(bank.photos) == 3 * len(PHOTOS["train"])
    data = BankClips(bank, 10, 64, 96, 9, seed0=7)
    a, b = data[3], data[3]
    assert torch.equal(a["still"], b["still"]) and a["caption"] == b["caption"] and a["still"].dtype == torch.uint8
    assert a["caption"].startswith("the camera")
    batch = collate([data[i] for i in range(4)])
    pixels = batch_pixels(batch, "cpu")
    assert pixels.shape == (4, 3, 9, 64, 96) and pixels.abs().max() <= 1
    # the same clip as rendering on the spot (up to the still's 8-bit storage)
    make = lambda rng: (lambda h, w: bank.pick(rng, h, w))
    rng = np.random.default_rng(10)
    direct, caption = S.render_camera_pixels(rng, 64, 96, 9, 1, make(rng), (0.25, 4.5))
    assert caption == batch["caption"][3] and (pixels[3] - direct).abs().max() < 0.05
    low = batch_pixels(collate([BankClips(bank, 10, 64, 96, 9, seed0=7, low=True)[3]]), "cpu")
    assert low.shape == (1, 3, 9, 16, 24)


def test_motions_restrict_the_camera_paths_and_the_full_set_draws_as_before():
    kinds = lambda motions: [S.camera_path(rng, 9, 64, 96, (0.5, 3.5), motions)[0] for rng in
                             (np.random.default_rng(i) for i in range(60))]
    assert set(kinds(("pan",))) == {"pan"} and set(kinds(("zoom", "rotate"))) == {"zoom", "rotate"}
    everything = kinds(tuple(S.MOTIONS))
    assert set(everything) == set(S.MOTIONS)
    old_rule = [("pan", "zoom", "rotate")[np.random.default_rng(i).choice(3, p=[0.6, 0.2, 0.2])] for i in range(60)]
    assert everything == old_rule  # runs and caches made before data.motions draw the same clips
    assert TrainConfig().data.motions == tuple(S.MOTIONS)
    data = BankClips(StillBank.build(1, seed=5), 6, 64, 96, 9, seed0=7, low=True, motions=("pan",))
    assert all(data[i]["caption"].startswith("the camera pans") for i in range(6))


def test_pan_speed_per_axis_moves_a_diagonal_that_fast_on_each_axis_and_stays_inside_the_still():
    def pans(pan_speed):  # (caption, per-frame shift) of the first pans of the same seeds
        out = []
        for i in range(40):
            _, caption, a = S.camera_path(np.random.default_rng(i), 9, 64, 96, (4.0, 4.0), ("pan",), pan_speed)
            out.append((caption, a[1, :, 2] - a[0, :, 2]))
        return out

    for (caption, path), (same, axis) in zip(pans("path"), pans("axis"), strict=True):
        assert caption == same  # the same draws, only the speed's meaning differs
        step = 4.0 * 33 / 9
        diagonal = " and " in caption
        assert np.allclose(np.abs(axis), [step if axis[0] else 0, step if axis[1] else 0])
        assert np.isclose(np.hypot(*path), step) and np.isclose(np.hypot(*axis), step * (2**0.5 if diagonal else 1))
    assert TrainConfig().data.pan_speed == "path"
    data = BankClips(StillBank.build(1, seed=5), 8, 64, 96, 33, seed0=7, low=True, speed=(4.5, 4.5), motions=("pan",),
                     pan_speed="axis")
    assert all(data[i]["still"].shape[-2:] == data.bound for i in range(8))  # still_bound holds (asserted inside)


def test_full_render_equals_the_ground_truth_renderer_and_low_res_matches_its_downsample():
    bank = StillBank.build(1)
    make = lambda rng: (lambda h, w: bank.pick(rng, h, w))
    clip = S.render_camera(np.random.default_rng(5), 64, 96, 9, 4, make(np.random.default_rng(7)))
    frames, caption = S.render_camera_pixels(np.random.default_rng(5), 64, 96, 9, 1, make(np.random.default_rng(7)))
    assert torch.equal(frames, clip.frames) and caption == clip.caption

    def smooth(rng, k):  # a still whose content depends on absolute position, so both renders see the same
        a = torch.from_numpy(S.camera_path(rng, 9, 64, 96, (0.5, 3.5))[2]).float()
        pts = S.apply_affine(a, S.pixel_grid(64 // k, 96 // k) * k + (k - 1) / 2)
        lo = pts.reshape(-1, 2).amin(0).floor() - 4 * k

        def make_still(h, w):
            y, x = torch.meshgrid(torch.arange(h) + lo[1], torch.arange(w) + lo[0], indexing="ij")
            return (0.5 * torch.cos(x / 17 * 6.28) * torch.cos(y / 13 * 6.28))[None].expand(3, -1, -1).clone()
        return make_still

    for seed in range(3):
        rng = np.random.default_rng
        full, _ = S.render_camera_pixels(rng(seed), 64, 96, 9, 1, smooth(rng(seed), 1))
        low, _ = S.render_camera_pixels(rng(seed), 64, 96, 9, 4, smooth(rng(seed), 4))
        ref = S.downsample_frames(full, 4)
        assert (low - ref).abs().mean() < 0.2 * ref.abs().mean()


def test_heldout_photo_clips_use_heldout_photographs_only():
    clip = heldout_photo_clip(0, 64, 96, 9)
    assert clip.frames.shape == (3, 9, 64, 96) and clip.valid.any()
    assert not set(PHOTOS["heldout"]) & set(PHOTOS["train"])


def test_parallel_bank_build_after_torch_ran_does_not_hang():
    # forked workers of a process whose OpenMP pool has run hang in their first parallel region
    code = ("import torch; x = torch.randn(800, 800); (x @ x).sum(); torch.rand(3, 512, 512).contiguous(); "
            "from swifti2v.data.bank import StillBank; print(len(StillBank.build(2, workers=2).collages))")
    r = run_process([sys.executable, "-c", code], timeout=240)
    assert r.returncode == 0 and r.stdout.strip() == "2", r.stderr[-2000:]


def test_a_folder_of_photographs_joins_the_training_bank_and_bad_ones_are_named(tmp_path):
    import pytest
    from PIL import Image

    from swifti2v.errors import UserError
    from swifti2v.training.config import load_train_config

    pixels = np.random.default_rng(0).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "a.png")
    Image.fromarray(pixels[::-1]).save(tmp_path / "b.PNG")
    (tmp_path / "notes.txt").write_text("not a photograph: skipped by its suffix")
    bank = StillBank.build(0, more_photos=str(tmp_path))
    assert len(bank.photos) == 3 * (len(PHOTOS["train"]) + 2)
    assert np.array_equal(bank.photos[-6], pixels) and bank.photos[-5].shape == (30, 45, 3)  # at 1.0, then 0.75
    (tmp_path / "c.jpg").write_text("broken")
    with pytest.raises(UserError, match="c.jpg is not a readable image"):
        StillBank.build(0, more_photos=str(tmp_path))
    with pytest.raises(UserError, match="not a folder of images"):
        StillBank.build(0, more_photos=str(tmp_path / "none"))
    with pytest.raises(UserError, match="set data.synthetic and data.bank"):
        load_train_config(None, [f"data.photos={json.dumps(str(tmp_path))}"], {"data.folder": "x"})
