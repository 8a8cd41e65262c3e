"""Video fidelity metrics against ground truth. Frames are (3, F, H, W) in [-1, 1]."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

Tensor = torch.Tensor
PSNR_CAP = 100.0  # an exact frame (MSE 0) scores this, so averages stay finite


def frame_psnr(out: Tensor, gt: Tensor) -> Tensor:
    """Per-frame PSNR in dB on the [0, 1] scale, capped at PSNR_CAP: (F,)."""
    mse = ((out.float() - gt.float()) / 2).pow(2).mean(dim=(0, 2, 3))
    return (-10 * torch.log10(mse.clamp_min(10 ** (-PSNR_CAP / 10)))).clamp(max=PSNR_CAP)


def _gaussian(size: int = 11, sigma: float = 1.5) -> Tensor:
    x = torch.arange(size, dtype=torch.float32) - size // 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return (g / g.sum())[:, None] * (g / g.sum())[None, :]


def frame_ssim(out: Tensor, gt: Tensor) -> Tensor:
    """Per-frame SSIM (Gaussian window 11, sigma 1.5, on [0, 1], mean over the colour channels): (F,)."""
    x = ((out.float() + 1) / 2).permute(1, 0, 2, 3)  # (F, 3, H, W)
    y = ((gt.float() + 1) / 2).permute(1, 0, 2, 3)
    w = _gaussian().to(x)[None, None].expand(3, 1, -1, -1)
    blur = lambda t: F.conv2d(t, w, groups=3)
    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return s.mean(dim=(1, 2, 3))


def temporal_errors(out: Tensor, gt: Tensor) -> Tensor:
    """RMSE between the output's and the truth's frame-to-frame differences, in 8-bit levels: (F-1,)."""
    d_out, d_gt = out[:, 1:] - out[:, :-1], gt[:, 1:] - gt[:, :-1]
    return ((d_out - d_gt) * 127.5).pow(2).mean(dim=(0, 2, 3)).sqrt()


def seam_score(out: Tensor, gt: Tensor, boundaries: Sequence[int]) -> float:
    """Temporal-difference error across segment boundaries over that inside segments (1.0 = no seam).

    boundaries: frame indices f where a new segment starts (the pair f-1 -> f crosses it); the anchor's
    own boundary (frame 1) is left out, as every method has it.
    """
    err = temporal_errors(out, gt)
    cross = [f - 1 for f in boundaries if f > 1]
    inside = [i for i in range(1, len(err)) if i not in cross]
    if not cross or not inside:
        return float("nan")
    return float(err[cross].mean() / err[inside].mean().clamp_min(1e-6))


def summarise(out: Tensor, gt: Tensor, boundaries: Sequence[int]) -> dict[str, float]:
    """PSNR/SSIM over the generated frames (1..F-1; frame 0 is the input image, reported on its own) and
    over the last third, first-frame PSNR, seam score, temporal error."""
    n = out.shape[1]
    last = slice(n - n // 3, n)
    psnr, ssim = frame_psnr(out, gt), frame_ssim(out, gt)
    return {
        "psnr": float(psnr[1:].mean()), "ssim": float(ssim[1:].mean()),
        "psnr_last_third": float(psnr[last].mean()), "ssim_last_third": float(ssim[last].mean()),
        "psnr_first_frame": float(psnr[0]),
        "seam": seam_score(out, gt, boundaries),
        "temporal_rmse": float(temporal_errors(out, gt).mean()),
    }


def phase_correlation(a: Tensor, b: Tensor) -> tuple[float, float]:
    """Global shift (dx, dy) that moves image a (3, H, W) onto b, from the peak of the phase correlation."""
    h, w = a.shape[-2:]
    win = torch.hann_window(h)[:, None] * torch.hann_window(w)[None, :]
    fa, fb = torch.fft.fft2(a.float().mean(0) * win), torch.fft.fft2(b.float().mean(0) * win)
    cross = fb * fa.conj()
    r = torch.fft.ifft2(cross / cross.abs().clamp_min(1e-8)).real
    dy, dx = divmod(int(torch.argmax(r)), w)

    def refine(c: int, axis_values: Tensor, n: int) -> float:  # parabola through the peak and its neighbours
        a, b, d = (float(axis_values[(c + k) % n]) for k in (-1, 0, 1))
        den = a - 2 * b + d
        off = 0.5 * (a - d) / den if abs(den) > 1e-12 else 0.0
        x = c + max(-0.5, min(0.5, off))
        return x - n if x > n / 2 else x

    return refine(dx, r[dy], w), refine(dy, r[:, dx], h)


def same_direction(shift: tuple[float, float], expected: tuple[float, float], max_degrees: float = 22.5) -> bool:
    """Whether a measured shift points within `max_degrees` of the expected direction (and is not zero)."""
    if math.hypot(*shift) < 0.5:
        return False
    angle = math.atan2(shift[1], shift[0]) - math.atan2(expected[1], expected[0])
    return abs((angle + math.pi) % (2 * math.pi) - math.pi) <= math.radians(max_degrees)
