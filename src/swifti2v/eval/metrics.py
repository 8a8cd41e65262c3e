"""Video metrics, one implementation each (`swifti2v eval` and `bench fidelity` both use them).

Videos are (3, F, H, W) tensors in [-1, 1]. Against ground truth: PSNR, SSIM, temporal error, seam score.
Without it: detail retention (energy above the low-res clip's Nyquist frequency, relative to frame 0),
periodic pulses (brightness or detail repeating at the latent-block or segment period), flicker, optical
flow (warping error, dynamic degree, camera motion) and global shifts by phase correlation.
"""

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


def reach(shift: tuple[float, float], truth: tuple[float, float]) -> float:
    """How far a measured shift goes along the true one, over the true one's length: 1 = as far as the truth,
    0 = static (or sideways), negative = the other way."""
    return (shift[0] * truth[0] + shift[1] * truth[1]) / max(truth[0] ** 2 + truth[1] ** 2, 1e-6)


# --- detail -------------------------------------------------------------------------------------------------


def grid_ratio(video: Tensor, period: int) -> Tensor:
    """Per frame of (3, F, H, W): the mean step across `period`-pixel boundaries (between pixel period-1 and
    period, on both axes) over the mean step elsewhere: 1 = no grid; tiles of that size lift it (a tiny Stage I
    token is 32 output pixels, a tiny codec patch 8)."""
    steps = [(video[..., 1:] - video[..., :-1]).abs().mean(dim=(0, 2)),  # (F, W-1): column x to x+1
             (video[..., 1:, :] - video[..., :-1, :]).abs().mean(dim=(0, 3))]  # (F, H-1): row y to y+1
    edges = [(torch.arange(d.shape[1]) % period) == period - 1 for d in steps]
    across = torch.cat([d[:, e] for d, e in zip(steps, edges, strict=True)], dim=1).mean(dim=1)
    inside = torch.cat([d[:, ~e] for d, e in zip(steps, edges, strict=True)], dim=1).mean(dim=1)
    return across / inside


def luma(video: Tensor) -> Tensor:
    """(3, F, H, W) in [-1, 1] -> (F, H, W) BT.601 luma in [0, 1]."""
    w = torch.tensor([0.299, 0.587, 0.114], dtype=torch.float32)
    return torch.einsum("c,cfhw->fhw", w, (video.float() + 1) / 2)


def high_band_energy(video: Tensor, factor: float) -> Tensor:
    """Per-frame luma energy above the Nyquist frequency of a clip `factor` times smaller per side: (F,).

    The band Stage II must add. Hann-windowed spectrum (so the frame's edges add no false detail), every
    frequency outside the low-res grid's square |fx|, |fy| < 1 / (2 factor) cycles per pixel.
    """
    h, w = video.shape[-2:]
    win = torch.hann_window(h, periodic=False)[:, None] * torch.hann_window(w, periodic=False)[None, :]
    cut = 0.5 / factor
    high = (torch.fft.fftfreq(h).abs()[:, None] > cut) | (torch.fft.fftfreq(w).abs()[None, :] > cut)
    energies = []
    for chunk in video.split(8, dim=1):  # bounded memory at 2K
        y = luma(chunk)
        y = y - y.mean(dim=(1, 2), keepdim=True)
        energies.append((torch.fft.fft2(y * win).abs().pow(2) * high).sum(dim=(1, 2)) / (h * w))
    return torch.cat(energies)


def detail_retention(video: Tensor, factor: float) -> Tensor:
    """High-band energy of every frame over frame 0's: (F,). A bicubic upsample of the low-res clip scores
    about 0 after frame 0; a clip that keeps real detail stays near 1."""
    e = high_band_energy(video, factor)
    return e / e[0].clamp_min(1e-12)


def overlap(shift: tuple[float, float], h: int, w: int) -> tuple[slice, slice, slice, slice] | None:
    """Rows and columns of frame 0 and of a frame whose content moved by `shift` that show the same content
    (y0, x0, yt, xt), or None when they share less than a quarter of either side."""
    dx, dy = round(shift[0]), round(shift[1])
    if w - abs(dx) < w / 4 or h - abs(dy) < h / 4:
        return None
    y0, x0 = slice(max(0, -dy), h - max(0, dy)), slice(max(0, -dx), w - max(0, dx))
    return y0, x0, slice(y0.start + dy, y0.stop + dy), slice(x0.start + dx, x0.stop + dx)


def aligned_to_first(video: Tensor, factor: float, first: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Every frame against frame 0 on motion-compensated crops: each frame's global shift from frame 0
    (phase correlation) picks the region both show, so a pan that brings in flat sky or busy texture does
    not fake a loss or a gain. -> (detail retention on the crops, PSNR of the crop against frame 0's), (F,)
    each, NaN where the shared region is under a quarter of a side. `first` replaces frame 0 as the
    reference (the input image, (3, H, W))."""
    first = video[:, 0] if first is None else first
    h, w = video.shape[-2:]
    retention, psnr = torch.full((2, video.shape[1]), float("nan")).unbind(0)
    for t in range(video.shape[1]):
        box = overlap(phase_correlation(first, video[:, t]), h, w)
        if box is not None:
            y0, x0, yt, xt = box
            a, b = first[:, None, y0, x0], video[:, t:t + 1, yt, xt]
            retention[t] = high_band_energy(b, factor)[0] / high_band_energy(a, factor)[0].clamp_min(1e-12)
            psnr[t] = frame_psnr(b, a)[0]
    return retention, psnr


# --- seams: what repeats every block or segment -------------------------------------------------------------


def _detrended(series: Tensor, period: int) -> tuple[Tensor, Tensor] | None:
    """Frames 1.. of a per-frame series (frame 0 is the input image) minus a centred moving average over one
    period, which removes slower trends and keeps whatever repeats every `period` frames -> (values, frame
    indices), or None when the series covers fewer than two periods."""
    x = series[1:].double()
    if period < 2 or len(x) < 2 * period:
        return None
    kernel = torch.ones(period + 1 - period % 2, dtype=torch.float64)
    if period % 2 == 0:  # a centred average over an even period: half weights at both ends
        kernel[0] = kernel[-1] = 0.5
    kernel /= period
    trend = torch.nn.functional.conv1d(x[None, None], kernel[None, None])[0, 0]
    half = len(kernel) // 2
    return x[half:len(x) - half] - trend, torch.arange(half, len(x) - half)


def _fold(x: Tensor, index: Tensor, period: int) -> Tensor:
    """Mean of x at each phase index % period: (period,)."""
    return torch.stack([x[index % period == k].mean() for k in range(period)])


def pulse(series: Tensor, period: int, inner: int | None = None) -> tuple[float, float]:
    """A component of a per-frame series repeating every `period` frames -> (strength, repeat).

    strength: its peak-to-peak amplitude relative to the series' mean (0.05 = a 5% pulse; 0 = none).
    repeat: the autocorrelation of the detrended series at lag `period` (near 1 when the pattern recurs,
    around 0 for noise). `inner`: a shorter period dividing this one whose own pulse is removed first, so a
    4-frame block pulse does not count again at a 12-frame segment period. NaN for fewer than two periods.
    """
    d = _detrended(series, period)
    if d is None:
        return float("nan"), float("nan")
    x, index = d
    if inner and period % inner == 0 and inner < period:
        x = x - _fold(x, index, inner)[index % inner]
    phase = _fold(x, index, period)
    strength = float((phase.max() - phase.min()) / series[1:].double().mean().abs().clamp_min(1e-12))
    a, b = x[:-period], x[period:]
    den = (a.pow(2).sum() * b.pow(2).sum()).sqrt()
    return strength, float((a * b).sum() / den) if den > 1e-18 else 0.0


# --- temporal -----------------------------------------------------------------------------------------------


def flicker(video: Tensor) -> Tensor:
    """Mean absolute difference of consecutive frames in 8-bit levels (VBench's temporal flickering before
    its (255 - x) / 255 rescale): (F-1,). 0 for a still clip."""
    return (video[:, 1:].float() - video[:, :-1].float()).abs().mean(dim=(0, 2, 3)) * 127.5


FLOW_SIDE = 512  # optical flow runs on frames scaled to this longer side (displacements scaled back)


def _gray(frame: Tensor, size: tuple[int, int]):
    import cv2
    import numpy as np

    g = (luma(frame[:, None])[0].clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    return np.ascontiguousarray(cv2.resize(g, size[::-1], interpolation=cv2.INTER_AREA) if g.shape != size else g)


def optical_flow(video: Tensor) -> tuple[Tensor, float]:
    """OpenCV DIS optical flow (no weights) between consecutive frames, frames scaled to FLOW_SIDE on the
    longer side: (F-1, h, w, 2) displacements from frame t to t+1 in pixels of the scaled frame, and the
    scale (scaled / original)."""
    import cv2

    h, w = video.shape[-2:]
    scale = min(1.0, FLOW_SIDE / max(h, w))
    size = (max(8, round(h * scale)), max(8, round(w * scale)))
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    grays = [_gray(video[:, t], size) for t in range(video.shape[1])]
    flows = [torch.from_numpy(dis.calc(a, b, None)) for a, b in zip(grays[:-1], grays[1:], strict=True)]
    return torch.stack(flows), size[1] / w


def warp_errors(video: Tensor, flows: Tensor) -> Tensor:
    """Flow-warping error: frame t+1 sampled along the flow from frame t, against frame t, mean absolute
    difference in 8-bit levels over pixels whose flow stays inside the frame: (F-1,)."""
    import torch.nn.functional as F

    h, w = flows.shape[1:3]
    frames = F.interpolate(video.float().permute(1, 0, 2, 3), size=(h, w), mode="area")  # (F, 3, h, w)
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32),
                            indexing="ij")
    errors = []
    for t, flow in enumerate(flows):
        x, y = xs + flow[..., 0], ys + flow[..., 1]
        inside = (x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)
        grid = torch.stack([2 * x / max(w - 1, 1) - 1, 2 * y / max(h - 1, 1) - 1], dim=-1)[None]
        warped = F.grid_sample(frames[t + 1:t + 2], grid, mode="bilinear", align_corners=True)[0]
        diff = (warped - frames[t]).abs().mean(dim=0) * 127.5
        errors.append(diff[inside].mean() if inside.any() else torch.tensor(float("nan")))
    return torch.stack(errors)


def motion_magnitude(flows: Tensor, scale: float, short_side: int) -> Tensor:
    """Per pair: mean of the top 5% flow magnitudes (VBench's dynamic degree statistic), in pixels per
    frame at a 256-pixel short side, so clips of different sizes compare: (F-1,)."""
    mag = flows.norm(dim=-1).flatten(1) / scale
    k = max(1, int(0.05 * mag.shape[1]))
    return mag.topk(k, dim=1).values.mean(dim=1) * 256 / short_side


def similarity_motion(flow: Tensor) -> tuple[float, float, float, float]:
    """Least-squares fit of a similarity motion to one flow field (h, w, 2) around the frame centre:
    (dx, dy, zoom, rotation), zoom = relative scale change, rotation in radians (positive = content turns
    clockwise on screen, y pointing down)."""
    h, w = flow.shape[:2]
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64) - (h - 1) / 2,
                            torch.arange(w, dtype=torch.float64) - (w - 1) / 2, indexing="ij")
    u, v = flow[..., 0].double().flatten(), flow[..., 1].double().flatten()
    x, y = xs.flatten(), ys.flatten()
    ones, zeros = torch.ones_like(x), torch.zeros_like(x)
    # u = dx + a x - b y ; v = dy + b x + a y
    A = torch.cat([torch.stack([ones, zeros, x, -y], 1), torch.stack([zeros, ones, y, x], 1)])
    dx, dy, a, b = torch.linalg.lstsq(A, torch.cat([u, v])[:, None]).solution[:, 0].tolist()
    return dx, dy, a, b


PAN_WORDS = {"left": (1, 0), "right": (-1, 0), "up": (0, 1), "down": (0, -1)}  # content moves against the camera


def camera_motion(flows: Tensor, scale: float, size: tuple[int, int]) -> dict[str, float | str]:
    """Global camera motion over the clip from the per-pair similarity fits: content shift (pixels at the
    video's size), total zoom factor, rotation (degrees, + = content clockwise), and the dominant one as a
    word ("pan left", "zoom in", "rotate clockwise", "static"), comparing each by how far it moves a point
    half the short side from the centre."""
    dx = dy = log_zoom = angle = 0.0
    for flow in flows:
        fx, fy, a, b = similarity_motion(flow)
        dx, dy, log_zoom, angle = dx + fx / scale, dy + fy / scale, log_zoom + math.log1p(a), angle + b
    r = min(size) / 2
    moves = {"pan": math.hypot(dx, dy), "zoom": abs(math.expm1(log_zoom)) * r, "rotate": abs(angle) * r}
    kind = max(moves, key=moves.get)
    if moves[kind] < 0.02 * r:
        word = "static"
    elif kind == "pan":
        word = "pan " + _pan_word(dx, dy)
    elif kind == "zoom":
        word = "zoom in" if log_zoom > 0 else "zoom out"
    else:
        word = "rotate clockwise" if angle > 0 else "rotate counterclockwise"
    return {"camera_shift_x": dx, "camera_shift_y": dy, "camera_zoom": math.exp(log_zoom),
            "camera_rotation_deg": math.degrees(angle), "word": word}


def _pan_word(dx: float, dy: float) -> str:
    """The camera direction (8 ways) that moves content by (dx, dy): content moving right = camera pans left."""
    angle = math.degrees(math.atan2(-dy, -dx))  # the camera's direction, y down
    names = ["right", "down and to the right", "down", "down and to the left", "left", "up and to the left", "up",
             "up and to the right"]
    return names[round(angle / 45) % 8]


def prompt_motion(prompt: str) -> str | None:
    """The camera motion a prompt names, in camera_motion's words, or None: "pans left", "panning up and to
    the right", "zooms out", "rotates counterclockwise" (anticlockwise), or "rotate" alone."""
    import re

    p = prompt.lower().replace("anti-clockwise", "counterclockwise").replace("anticlockwise", "counterclockwise")
    p = p.replace("counter-clockwise", "counterclockwise")
    m = re.search(r"\bpan(?:s|ning|ned)?\s+((?:up|down)(?:\s+and)?\s+to\s+the\s+(?:left|right)|left|right|up|down)",
                  p)
    if m:
        return "pan " + re.sub(r"\s+", " ", m.group(1)).replace("up to", "up and to").replace("down to",
                                                                                             "down and to")
    m = re.search(r"\bzoom(?:s|ing|ed)?\s+(in|out)\b", p)
    if m:
        return f"zoom {m.group(1)}"
    m = re.search(r"\brotat\w*(?:\s+\w+){0,2}?\s+(clockwise|counterclockwise)\b", p)
    if m:
        return f"rotate {m.group(1)}"
    return "rotate" if re.search(r"\brotat", p) else None


def motion_matches(measured: str, named: str) -> bool:
    """Whether the measured motion word is the one the prompt names ("rotate" matches either way)."""
    return measured == named or (named == "rotate" and measured.startswith("rotate"))


JOIN_FLOW_FLOOR = 0.1  # pixels per frame: two flows both slower than this count as the same (still) motion


def _ratio(value: Tensor, typical: Tensor, floor: float) -> Tensor:
    return (value + floor) / (typical + floor)


def join_scores(video: Tensor, joins: Sequence[int], flows: Tensor, scale: float) -> dict[str, float]:
    """Stage I's window joins against the frame-to-frame changes inside the windows (1.0: a join is a step
    like any other). joins: the first frame after each join (the pair j-1 -> j crosses it).

    join_score: the largest step across a join (mean absolute difference, 8-bit levels) over the median step
    inside the windows (pairs from frame 1 on; frame 0 is the input image). join_luma_step / join_colour_step /
    join_detail_step: the same for mean brightness, mean colour (RGB distance) and high-band energy (log ratio),
    each over its median inside plus a small floor (0.5 levels, 0.5 levels, 2%). colour_drift: RGB distance of
    the first window's mean colour to the last window's (8-bit levels); luma_drift the signed brightness change.
    join_motion: flow magnitude over the two pairs before a join against the two after, larger over smaller
    (1.0: motion goes on at the same speed), the worst join.
    """
    n = video.shape[1]
    joins = [j for j in joins if 2 <= j < n - 1]
    if not joins:
        return {}
    pairs = lambda x: x[1:] - x[:-1]  # noqa: E731
    means = video.float().mean(dim=(2, 3)).T * 127.5  # (F, 3), levels around 0
    step, luma_step = flicker(video), pairs(luma(video).mean(dim=(1, 2))).abs() * 255
    colour_step = pairs(means).norm(dim=1)
    detail_step = pairs(high_band_energy(video, 2.0).clamp_min(1e-12).log()).abs()
    crossing = [j - 1 for j in joins]
    inside = torch.tensor([i for i in range(1, n - 1) if i not in crossing])
    typical = lambda x: x[inside].median()  # noqa: E731
    worst = lambda x, floor: float(max(_ratio(x[i], typical(x), floor) for i in crossing))  # noqa: E731
    speed = flows.norm(dim=-1).mean(dim=(1, 2)) / scale
    motion = [float(torch.maximum(a, b) / torch.minimum(a, b))
              for a, b in ((speed[max(0, j - 3):j - 1].mean().clamp_min(JOIN_FLOW_FLOOR),
                            speed[j:j + 2].mean().clamp_min(JOIN_FLOW_FLOOR)) for j in joins)]
    first, last = means[: joins[0]].mean(dim=0), means[joins[-1]:].mean(dim=0)
    lum = luma(video).mean(dim=(1, 2)) * 255
    return {"join_score": worst(step, 0.0), "join_score_mean": float(step[crossing].mean() / typical(step)),
            "join_luma_step": worst(luma_step, 0.5), "join_colour_step": worst(colour_step, 0.5),
            "join_detail_step": worst(detail_step, 0.02),
            "colour_drift": float((last - first).norm()),
            "luma_drift": float(lum[joins[-1]:].mean() - lum[: joins[0]].mean()),
            "join_motion": max(motion)}
