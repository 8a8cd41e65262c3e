"""Fidelity metrics: PSNR/SSIM, seams, temporal error, phase correlation."""

import math

import torch

from swifti2v.eval.metrics import (
    PSNR_CAP,
    frame_psnr,
    frame_ssim,
    phase_correlation,
    reach,
    same_direction,
    seam_score,
    summarise,
)


def _clip(seed=0, frames=9):
    return torch.rand(3, frames, 24, 32, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_psnr_and_ssim():
    gt = _clip()
    assert torch.all(frame_psnr(gt, gt) == PSNR_CAP)
    assert torch.allclose(frame_ssim(gt, gt), torch.ones(9))
    noisy = (gt + 0.1).clamp(-1, 1)
    mse = ((noisy - gt) / 2).pow(2).mean(dim=(0, 2, 3))
    assert torch.allclose(frame_psnr(noisy, gt), -10 * torch.log10(mse))
    assert frame_ssim(noisy, gt).max() < 1


def test_seam_score_sees_a_jump_at_a_boundary():
    gt = _clip()
    out = gt + 0.02 * torch.randn(gt.shape, generator=torch.Generator().manual_seed(1))
    smooth = seam_score(out, gt, [1, 5])
    jumped = out.clone()
    jumped[:, 5:] += 0.2
    assert 0.5 < smooth < 2 and seam_score(jumped, gt, [1, 5]) > 3
    assert math.isnan(seam_score(out, gt, [1]))  # no boundary after the anchor's


def test_summary_keys_and_last_third():
    gt = _clip()
    out = gt.clone()
    out[:, 6:] = 0
    s = summarise(out, gt, [1, 5])
    assert s["psnr_first_frame"] == PSNR_CAP and s["psnr_last_third"] < s["psnr"]


def test_phase_correlation_recovers_a_shift_and_direction():
    a = torch.rand(3, 72, 128, generator=torch.Generator().manual_seed(2))
    b = torch.roll(a, shifts=(-3, 5), dims=(1, 2))  # content moves right 5, up 3
    dx, dy = phase_correlation(a, b)
    assert abs(dx - 5) < 0.1 and abs(dy + 3) < 0.1
    assert same_direction((dx, dy), (5, -3)) and not same_direction((dx, dy), (-1, 0))
    assert not same_direction((0.1, 0.0), (1, 0))
    assert abs(reach((dx, dy), (10, -6)) - 0.5) < 0.02  # half as far, the same way
    assert reach((0.0, 0.0), (5, -3)) == 0 and reach((-5, 3), (5, -3)) == -1
