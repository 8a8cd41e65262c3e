"""`swifti2v eval`: any generated video measured against its input image (and, given, the truth).

For each video: input fidelity (frame 0 against the input image, fitted as `generate` fits it), detail
retention over time (energy above the low-res clip's Nyquist frequency, relative to frame 0's; also on
motion-compensated crops), seams (brightness and detail pulsing at the 4-frame latent-block period and at
the segment period), temporal behaviour (flicker, flow-warping error, dynamic degree, the camera motion and
whether it is the one the prompt names), with --truth PSNR/SSIM per frame and the seam score, and learned
metrics from local weights. Writes REPORT.json (the contract below), REPORT.md and REPORT.png.

REPORT.json: {"videos": [{"path", "frames", "height", "width", "fps", "segment_starts", "prompt", "camera_motion",
"flags", "metrics": {...}, "per_frame": {...}}, ...], "skipped": [...], "settings": {...}}. Metrics absent
from a video's `metrics` were not measured (never null-filled).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from swifti2v.errors import UserError
from swifti2v.eval import learned
from swifti2v.eval import metrics as m
from swifti2v.media import fit, load_image, probe_video, read_video, to_tensor

Tensor = torch.Tensor
Progress = Callable[[str, int, int], None]
log = logging.getLogger(__name__)
BLOCK_FRAMES = 4  # Wan's VAEs: one latent block per 4 frames after frame 0
DEFAULT_SEGMENT_FRAMES = 12  # CSG's default M=3 noisy blocks per segment
PULSE_FLAG = 0.01  # a brightness pulse of 1% of the mean, repeating (autocorrelation >= 0.5), is flagged
# Fine-detail energy pulses by itself in H.264: x264's default GOP (3 B-frames, a P frame every 4) gave a
# 10% period-4 detail pulse on a clean pan at crf 18. Flagged from 25%.
DETAIL_PULSE_FLAG = 0.25
PULSE_REPEAT = 0.5
JOIN_FLAG = 1.5  # a Stage I window join stepping more than 1.5x the typical frame-to-frame change is flagged


@dataclass(frozen=True)
class EvalConfig:
    videos: tuple[str, ...]
    image: str
    truth: str | None = None
    prompt: str = ""
    segment_frames: int | None = None  # None: from the video's sidecar JSON, else DEFAULT_SEGMENT_FRAMES
    joins: tuple[int, ...] | None = None  # Stage I window joins; None: from the sidecar JSON, else none
    low_res: str = "4"  # the low-res clip: a factor per side ("4") or its size ("640x352")
    weights: str | None = None
    device: str = "auto"


def load_frames(path: str | Path, flag: str) -> tuple[Tensor, float]:
    """A video file -> (3, F, H, W) float32 in [-1, 1] and its frame rate."""
    import numpy as np

    images, fps = read_video(path, flag)
    sizes = {im.size for im in images}
    if len(sizes) > 1:
        raise UserError(f"{flag} {path} changes frame size mid-clip ({sorted(sizes)}); pass a clip of one size")
    array = torch.from_numpy(np.stack([np.asarray(im, dtype=np.uint8) for im in images]))  # (F, H, W, 3)
    return array.permute(3, 0, 1, 2).float() / 127.5 - 1.0, fps


def low_res_factor(low_res: str, height: int, width: int) -> float:
    """--low-res "4" (per side) or "640x352" (the low-res clip's size) -> the factor per side."""
    text = low_res.lower().strip()
    try:
        if "x" in text:
            w, h = (int(v) for v in text.split("x"))
            factor = min(width / w, height / h)
        else:
            factor = float(text)
    except (ValueError, ZeroDivisionError):
        raise UserError(f"--low-res {low_res!r}: pass a factor per side (4) or the low-res size (640x352)") from None
    if not 1 < factor <= min(height, width) / 2 or not math.isfinite(factor):
        raise UserError(f"--low-res {low_res!r} gives a factor of {factor:g} for a {width}x{height} video; it must "
                        "be above 1 (the low-res clip is smaller) and leave at least 2 pixels per side")
    return factor


def sidecar(path: Path) -> dict:
    """The settings `generate` wrote beside a video (OUT.json), or {} for any other video."""
    try:
        info = json.loads(path.with_suffix(".json").read_text())
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def segment_starts(info: dict, frames: int, segment_frames: int | None) -> list[int]:
    """First frame of every segment after the first: from --segment-frames, else the sidecar's CSG plan,
    else DEFAULT_SEGMENT_FRAMES."""
    if segment_frames is None:
        try:
            return [BLOCK_FRAMES * (s["blocks"][0] - 1) + 1 for s in info["plan"]["segments"][1:]]
        except (KeyError, TypeError, IndexError):
            segment_frames = DEFAULT_SEGMENT_FRAMES
    return list(range(1 + segment_frames, frames, segment_frames))


def stage1_joins(info: dict, frames: int, joins: tuple[int, ...] | None) -> list[int]:
    """The first frame after each Stage I window join: --joins, else the sidecar's plan, else none."""
    if joins is None:
        try:
            joins = tuple(int(j) for j in info["plan"]["stage1"]["joins"])
        except (KeyError, TypeError, ValueError):
            joins = ()
    return [j for j in joins if 0 < j < frames]


def prompt_of(info: dict, prompt: str) -> str:
    """--prompt, else the prompt the sidecar records (so videos of different prompts compare in one run)."""
    recorded = info.get("inputs", {}).get("prompt") if isinstance(info.get("inputs"), dict) else None
    return prompt or (recorded if isinstance(recorded, str) else "")


def _mean(x: Tensor) -> float:
    x = x[~torch.isnan(x)]
    return float(x.mean()) if len(x) else float("nan")


def classical(video: Tensor, image: Tensor, factor: float, starts: list[int], prompt: str,
              joins: list[int]) -> tuple[dict, dict, str]:
    """Metrics that need no weights -> (metrics, per-frame curves, camera motion word)."""
    n = video.shape[1]
    period = (starts[1] - starts[0]) if len(starts) > 1 else (starts[0] - 1 if starts else None)
    retention = m.detail_retention(video, factor)
    aligned_retention, aligned_psnr = m.aligned_to_first(video, factor, image)
    energy, brightness = m.high_band_energy(video, factor), m.luma(video).mean(dim=(1, 2))
    flows, scale = m.optical_flow(video)
    warp, dynamic, flick = m.warp_errors(video, flows), m.motion_magnitude(flows, scale, min(video.shape[-2:])), \
        m.flicker(video)
    camera = m.camera_motion(flows, scale, video.shape[-2:])
    last = slice(n - n // 3, n)
    metrics = {
        "psnr_frame0": float(m.frame_psnr(video[:, :1], image[:, None])[0]),
        "ssim_frame0": float(m.frame_ssim(video[:, :1], image[:, None])[0]),
        "detail_retention": _mean(retention[1:]),
        "detail_retention_last_third": _mean(retention[last]),
        "detail_retention_aligned": _mean(aligned_retention[1:]),
        "psnr_to_input_aligned": _mean(aligned_psnr[1:]),
        **_pulses("", brightness, energy, BLOCK_FRAMES, None),
        "flicker": _mean(flick),
        "flow_warp_error": _mean(warp),
        "dynamic_degree": _mean(dynamic),
        **{k: v for k, v in camera.items() if k != "word"},
        **m.join_scores(video, joins, flows, scale),
    }
    if period:
        metrics |= _pulses("_segment", brightness, energy, period, BLOCK_FRAMES)
    named = m.prompt_motion(prompt)
    if named:
        metrics["camera_motion_match"] = float(m.motion_matches(camera["word"], named))
    pad = lambda x: [float("nan"), *x.tolist()]  # pair curves start at frame 1
    per_frame = {"detail_retention": retention.tolist(), "detail_retention_aligned": aligned_retention.tolist(),
                 "psnr_to_input_aligned": aligned_psnr.tolist(), "high_band_energy": energy.tolist(),
                 "luma": brightness.tolist(), "flicker": pad(flick), "flow_warp_error": pad(warp),
                 "dynamic_degree": pad(dynamic)}
    return metrics, per_frame, camera["word"]


def _pulses(suffix: str, brightness: Tensor, energy: Tensor, period: int, inner: int | None) -> dict:
    (luma, luma_repeat), (detail, detail_repeat) = m.pulse(brightness, period, inner), m.pulse(energy, period, inner)
    return {f"luma_pulse{suffix}": luma, f"luma_pulse{suffix}_repeat": luma_repeat,
            f"detail_pulse{suffix}": detail, f"detail_pulse{suffix}_repeat": detail_repeat}


def against_truth(video: Tensor, truth: Tensor, starts: list[int]) -> tuple[dict, dict]:
    s = m.summarise(video, truth, starts)
    metrics = {k: s[k] for k in ("psnr", "ssim", "psnr_last_third", "ssim_last_third", "seam", "temporal_rmse")}
    return metrics, {"psnr": m.frame_psnr(video, truth).tolist(), "ssim": m.frame_ssim(video, truth).tolist()}


def flags(metrics: dict, period: int | None) -> list[str]:
    """Plain-language warnings a reader should not miss."""
    out = []
    for key, what, p, limit in (("luma_pulse", "brightness", BLOCK_FRAMES, PULSE_FLAG),
                                ("luma_pulse_segment", "brightness", period, PULSE_FLAG),
                                ("detail_pulse", "fine detail", BLOCK_FRAMES, DETAIL_PULSE_FLAG),
                                ("detail_pulse_segment", "fine detail", period, DETAIL_PULSE_FLAG)):
        value, repeat = metrics.get(key, float("nan")), metrics.get(f"{key}_repeat", float("nan"))
        if value >= limit and repeat >= PULSE_REPEAT:
            out.append(f"{what} pulses every {p} frames ({value:.1%} peak to peak)")
    if metrics.get("detail_retention", 1.0) < 0.2:
        out.append("little detail above the low-res clip's band after frame 0 (upsampled-looking)")
    if metrics.get("join_score", 0.0) > JOIN_FLAG:
        out.append(f"a Stage I window join steps {metrics['join_score']:.1f}x the typical frame-to-frame change")
    if metrics.get("camera_motion_match") == 0.0:
        out.append("the camera motion is not the one the prompt names")
    return out


class Learned:
    """The learned metrics this run can compute, built once and shared by every video."""

    def __init__(self, weights: Path | None, device: torch.device, truth: bool):
        self.weights, self.device, self.truth = weights, device, truth
        self.nets, self.skipped = {}, []
        for metric in learned.METRICS.values():
            why = learned.missing(metric, weights)
            if why is None and metric.name in learned.BUILDERS:
                self.nets[metric.name] = learned.BUILDERS[metric.name](weights)
            elif why is None:
                self.nets[metric.name] = None  # run per video file (vbench)
            else:
                self.skipped.append(why)
                log.info(why)

    def measure(self, path: Path, video: Tensor, image: Tensor, truth: Tensor | None, work: Path) -> tuple[dict, dict]:
        metrics, per_frame = {}, {}
        frames = video.permute(1, 0, 2, 3)  # (F, 3, H, W)
        for name in ("lpips", "dists"):
            if name in self.nets:
                metrics[f"{name}_frame0"] = float(learned.pair_scores(self.nets[name], frames[:1], image[None],
                                                                       self.device)[0])
                if truth is not None:
                    scores = learned.pair_scores(self.nets[name], frames, truth.permute(1, 0, 2, 3), self.device)
                    metrics[name], per_frame[name] = float(scores[1:].mean()), scores.tolist()
        if "subject_consistency" in self.nets:
            s = learned.subject_consistency(self.nets["subject_consistency"], frames, self.device)
            metrics["subject_consistency"], per_frame["subject_consistency"] = float(s.mean()), [float("nan"),
                                                                                                *s.tolist()]
        if "clip_iqa" in self.nets:
            q = learned.clip_iqa(self.nets["clip_iqa"], frames, self.device)
            metrics["clip_iqa"], per_frame["clip_iqa"] = float(q.mean()), q.tolist()
        if "vbench" in self.nets:
            metrics |= learned.vbench_scores(path, self.weights, work / path.stem, self.device)
        return metrics, per_frame


def evaluate_video(path: Path, cfg: EvalConfig, image, truth: Tensor | None, nets: Learned, work: Path) -> dict:
    video, fps = load_frames(path, "VIDEO")
    _, n, h, w = video.shape
    reference = to_tensor(fit(image, h, w))[0]  # the input image as `generate` fits it
    info = sidecar(path)
    starts, prompt = segment_starts(info, n, cfg.segment_frames), prompt_of(info, cfg.prompt)
    joins = stage1_joins(info, n, cfg.joins)
    metrics, per_frame, word = classical(video, reference, low_res_factor(cfg.low_res, h, w), starts, prompt, joins)
    if truth is not None:
        more, curves = against_truth(video, truth, starts)
        metrics, per_frame = metrics | more, per_frame | curves
    more, curves = nets.measure(path, video, reference, truth, work)
    metrics, per_frame = metrics | more, per_frame | curves
    period = (starts[1] - starts[0]) if len(starts) > 1 else None
    return {"path": str(path), "frames": n, "height": h, "width": w, "fps": fps, "segment_starts": starts,
            "joins": joins,
            "prompt": prompt, "camera_motion": word, "flags": flags(metrics, period),
            "metrics": {k: _finite(v) for k, v in metrics.items()},
            "per_frame": {k: [_finite(x) for x in v] for k, v in per_frame.items()}}


def _finite(x: float) -> float | None:
    """JSON has no NaN: a value that could not be measured (too short, no overlap) is written as null."""
    return None if x is None or not math.isfinite(x) else round(float(x), 6)


def run_eval(cfg: EvalConfig, out: Path, progress: Progress = lambda name, done, total: None) -> dict:
    from swifti2v.runtime import resolve_device

    if cfg.segment_frames is not None and cfg.segment_frames < 1:
        raise UserError(f"--segment-frames {cfg.segment_frames} must be at least 1 (12 for CSG's M=3)")
    if cfg.weights is not None and not Path(cfg.weights).is_dir():
        raise UserError(f"--weights {cfg.weights} is not a folder; pass the folder holding the metric weights")
    image = load_image(cfg.image)
    truth = None if cfg.truth is None else load_frames(cfg.truth, "--truth")[0]
    for path in cfg.videos:  # every input checked before any metric loads
        v = probe_video(path, "VIDEO")
        low_res_factor(cfg.low_res, v["height"], v["width"])
        if truth is not None and tuple(truth.shape[1:]) != (v["frames"], v["height"], v["width"]):
            raise UserError(f"--truth {cfg.truth} is {truth.shape[3]}x{truth.shape[2]}x{truth.shape[1]} frames but "
                            f"{path} is {v['width']}x{v['height']}x{v['frames']}; pass the ground truth of this "
                            "video (same size and length)")
    device = resolve_device(cfg.device)
    nets = Learned(None if cfg.weights is None else Path(cfg.weights), device, truth is not None)
    videos = []
    for i, path in enumerate(cfg.videos):
        videos.append(evaluate_video(Path(path), cfg, image, truth, nets, out.parent / f".{out.name}.vbench"))
        progress("eval videos", i + 1, len(cfg.videos))
    return {"videos": videos, "skipped": nets.skipped, "settings": asdict(cfg)}


COLUMNS = (  # (metric, header, format): the markdown table; the JSON holds every metric
    ("psnr_frame0", "frame-0 PSNR", "{:.2f}"), ("ssim_frame0", "frame-0 SSIM", "{:.4f}"),
    ("lpips_frame0", "frame-0 LPIPS", "{:.4f}"), ("detail_retention", "detail kept", "{:.3f}"),
    ("detail_retention_aligned", "detail kept (aligned)", "{:.3f}"),
    ("detail_retention_last_third", "detail kept, last third", "{:.3f}"),
    ("luma_pulse", "luma pulse /4", "{:.4f}"), ("luma_pulse_segment", "luma pulse /segment", "{:.4f}"),
    ("detail_pulse", "detail pulse /4", "{:.3f}"), ("flicker", "flicker", "{:.2f}"),
    ("flow_warp_error", "warp error", "{:.2f}"), ("dynamic_degree", "dynamic degree", "{:.2f}"),
    ("psnr", "PSNR", "{:.2f}"), ("ssim", "SSIM", "{:.4f}"), ("psnr_last_third", "PSNR last third", "{:.2f}"),
    ("join_score", "join", "{:.2f}"), ("colour_drift", "colour drift", "{:.1f}"),
    ("join_motion", "join motion", "{:.2f}"),
    ("seam", "seam", "{:.3f}"), ("lpips", "LPIPS", "{:.4f}"), ("dists", "DISTS", "{:.4f}"),
    ("subject_consistency", "subject consistency", "{:.4f}"), ("clip_iqa", "CLIP-IQA", "{:.3f}"),
)


def to_markdown(result: dict, plot_name: str | None = None) -> str:
    videos = result["videos"]
    names = [Path(v["path"]).name for v in videos]
    cols = [c for c in COLUMNS if any(v["metrics"].get(c[0]) is not None for v in videos)]
    cell = lambda v, key, f: "–" if v["metrics"].get(key) is None else f.format(v["metrics"][key])
    lines = ["| video | " + " | ".join(h for _, h, _ in cols) + " | camera |",
             "|---" * (len(cols) + 2) + "|"]
    for name, v in zip(names, videos, strict=True):
        match = {1.0: " (as prompted)", 0.0: " (not as prompted)"}.get(v["metrics"].get("camera_motion_match"), "")
        cells = " | ".join(cell(v, k, f) for k, _, f in cols)
        lines.append(f"| {name} | {cells} | {v['camera_motion']}{match} |")
    lines.append("")
    for name, v in zip(names, videos, strict=True):
        lines += [f"- {name}: {flag}" for flag in v["flags"]]
    lines += [f"- {line}" for line in result["skipped"]]
    s = result["settings"]
    lines += ["", f"Input {s['image']}; low-res clip {s['low_res']} (factor per side, or its size); segment starts "
              f"{videos[0]['segment_starts']}; flicker and warp error in 8-bit levels, dynamic degree in pixels per "
              "frame at a 256-pixel short side; detail kept = energy above the low-res Nyquist frequency over "
              "frame 0's (1 = all kept, ~0 = upsampled)."]
    if plot_name:
        lines += ["", f"![per-frame curves]({plot_name})"]
    return "\n".join(lines) + "\n"


PANELS = (("psnr", "PSNR vs truth (dB)"), ("psnr_to_input_aligned", "PSNR vs input, aligned crop (dB)"),
          ("detail_retention", "detail kept (vs frame 0)"), ("luma", "mean luma"), ("flicker", "flicker (8-bit)"))


def plot(result: dict, path: Path) -> None:
    """Per-frame curves, one panel per measure, every video a line, segment starts dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    videos = result["videos"]
    panels = [(k, t) for k, t in PANELS if any(k in v["per_frame"] for v in videos)]
    if any("psnr" in v["per_frame"] for v in videos):
        panels = [p for p in panels if p[0] != "psnr_to_input_aligned"]
    fig, axes = plt.subplots(len(panels), 1, figsize=(9, 2.1 * len(panels)), sharex=True, squeeze=False)
    for ax, (key, title) in zip(axes[:, 0], panels, strict=True):
        for v in videos:
            if key in v["per_frame"]:  # an exact match with the truth (PSNR at its cap) would flatten the rest
                y = [float("nan") if x is None or (key == "psnr" and x >= m.PSNR_CAP) else x
                     for x in v["per_frame"][key]]
                ax.plot(range(len(y)), y, label=Path(v["path"]).name, lw=1.2)
        for start in videos[0]["segment_starts"]:
            ax.axvline(start - 0.5, color="grey", ls="--", lw=0.7)
        for join in videos[0].get("joins", []):
            ax.axvline(join - 0.5, color="tab:red", ls=":", lw=1.0)
        ax.set_ylabel(title, fontsize=8)
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("frame (dashed: segment starts; dotted red: Stage I window joins)")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 3), fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.03 * ((len(labels) + 2) // 3), 1, 1))
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
