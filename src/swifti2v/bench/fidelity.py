"""`swifti2v bench fidelity`: how much input-image detail Stage II recovers, with ablations, on held-out
clips with ground truth — procedural camera clips (collages) and camera moves over held-out photographs —
whose seeds and photographs training never sees.

Every row starts from the same ground-truth clip. Low-res inputs: "oracle" = the antialiased 1/4
downsample of the truth; "stage1" = the tiny Stage I re-generating that downsample from noise level
`stage1_sigma` (its artefacts, the truth's motion, so PSNR against the truth stays meaningful). Rows:

- bicubic (pixels): bicubic x4 of the low-res clip, frame 0 = the input image. Every gain is against it.
- bicubic through the codec: the hybrid reference z_ref decoded — what the codec's round trip costs.
- oracle warp: frame 0 moved along the true motion where its content is visible, bicubic elsewhere.
- stage2 rows: the shipped concat refiner with CSG (M=3, N=1) at the compared step counts; without the
  anchor; end-to-end (--no-csg); N=0; fed Stage I output; and, given `ablation_model`, the refiner trained
  without stage-transition conditions, fed Stage I output.

Each row reports means over a set's clips and its gain over bicubic (pixels): mean and worst clip; the
metrics are `swifti2v eval`'s (swifti2v.eval.metrics). `save_videos` keeps the first photo clip's rows as mp4
so `swifti2v eval` can be run on them.
`bars` checks the numbers the tiny models must meet (docs/results.md). Stage I alone: the share of
held-out pan clips whose generated motion (global phase correlation between the first and last frames)
points the captioned way and whose frames are shifted copies of the first (not a mosaic of moved tokens).
"""

from __future__ import annotations

import dataclasses
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from swifti2v.config import RunConfig, VideoConfig
from swifti2v.data.bank import heldout_photo_clip
from swifti2v.data.synthetic import SyntheticClip, heldout_clip, heldout_motions, heldout_pans, sample_at
from swifti2v.errors import UserError
from swifti2v.eval.metrics import (
    aligned_to_first,
    camera_motion,
    detail_retention,
    flicker,
    optical_flow,
    phase_correlation,
    reach,
    same_direction,
    summarise,
)
from swifti2v.media import VideoWriter, to_uint8, upsample
from swifti2v.models.components import Components, Stage2Components, load_stage2
from swifti2v.pipeline import load_components, setup
from swifti2v.plan import stage2_plan
from swifti2v.presets import get_preset
from swifti2v.reference import decode_clip
from swifti2v.stage1 import generate_motion
from swifti2v.stage2 import add_detail
from swifti2v.training.conditions import ConditionModels, condition_reference, to_image
from swifti2v.training.config import ConditionConfig

Tensor = torch.Tensor
Progress = Callable[[str, int, int], None]
SETS = ("photo", "procedural")
SHIFTED_COPY_DB = 22.0  # the held-out pans' truth: 26-32 dB at 128x72; the pans-alone mosaic: 12-18
MIN_ZOOM, MIN_TURN_DEG = 1.03, 1.0  # a zoom / rotation counts from here (the held-out truth: 1.15-1.5x, 6-20 degrees)


@dataclass(frozen=True)
class FidelityConfig:
    preset: str = "tiny"
    clips: int = 4  # held-out procedural camera clips (pan / zoom / rotate over collages)
    photo_clips: int = 4  # held-out camera clips over held-out photographs
    direction_clips: int = 24  # held-out pan clips for Stage I's direction accuracy
    height: int = 288
    width: int = 512
    frames: int = 33
    steps: tuple[int, ...] = (1, 2)  # Stage II sampler settings compared (CSG, oracle input)
    stage1_sigma: float = 0.5
    ablation_model: str | None = None  # Stage II trained without stage-transition conditions (recipe output)
    seed: int = 0
    save_videos: str | None = None  # folder: every row of the first clip as mp4, its truth and input image

    def __post_init__(self):
        if min(self.clips, self.photo_clips, self.direction_clips) < 0 or self.clips + self.photo_clips < 1:
            raise UserError("--clips, --photo-clips and --direction-clips must be >= 0, with at least one clip")


@dataclass(frozen=True)
class Row:
    name: str
    input: str  # "oracle" or "stage1"
    note: str
    method: str = "stage2"  # "pixels", "bicubic", "warp", "stage2" or "ablation"
    changes: tuple[tuple[str, object], ...] = ()  # Stage II config changes (Stage2Config fields, or "steps")


PIXELS = ("bicubic (pixels)", "oracle")
CODEC = ("bicubic through the codec", "oracle")
NO_ANCHOR = ("stage2 no anchor", "oracle")
END_TO_END = ("stage2 end-to-end (--no-csg)", "oracle")


def shipped_row(steps: int) -> tuple[str, str]:
    return f"stage2 CSG M3 N1, {steps} step{'s' if steps > 1 else ''}", "oracle"


def _rows(cfg: FidelityConfig, shipped_steps: int) -> list[Row]:
    rows = [Row(*PIXELS, "bicubic x4 of the low-res clip, frame 0 = input image", "pixels"),
            Row(*CODEC, "the hybrid reference z_ref, decoded", "bicubic"),
            Row("oracle warp", "oracle", "frame 0 moved by the true motion where visible, bicubic elsewhere", "warp")]
    rows += [Row(*shipped_row(n), "shipped setting" if n == shipped_steps else "", changes=(("steps", n),))
             for n in cfg.steps]
    rows += [Row(*NO_ANCHOR, "anchor tokens dropped from every window", changes=(("anchor", False),)),
             Row(*END_TO_END, "one window over the whole clip", changes=(("csg", False),)),
             Row("stage2 CSG N=0", "oracle", "no previously generated neighbour", changes=(("neighbor_blocks", 0),)),
             Row("bicubic through the codec", "stage1", "of the tiny Stage I's output", "bicubic"),
             Row("stage2 CSG M3 N1", "stage1", "shipped model")]
    if cfg.ablation_model:
        rows.append(Row("stage2 without stage-transition training", "stage1", "ablation model, same recipe length",
                        "ablation"))
    return rows


def segment_starts(run: RunConfig) -> list[int]:
    """First frame of every CSG (M, N) segment: the boundaries the seam score looks at."""
    plan = stage2_plan(replace(run.stage2, csg=True, anchor=True), run.video.num_blocks)
    return [4 * (seg.blocks[0] - 1) + 1 for seg in plan]


def oracle_warp(clip: SyntheticClip, bicubic: Tensor) -> Tensor:
    """(3, F, H, W): frame 0 sampled at each pixel's true source where visible, else the bicubic frame."""
    warped = sample_at(clip.frames[:, 0], clip.source)
    return torch.where(clip.valid[None], warped, bicubic).clamp(-1, 1)


def pixel_bicubic(clip: SyntheticClip) -> Tensor:
    """(3, F, H, W): the hybrid reference in pixels, before any codec."""
    video = upsample(clip.low[None], *clip.frames.shape[-2:])[0]
    video[:, 0] = clip.frames[:, 0]
    return video


def _decode(c: Stage2Components, z: Tensor) -> Tensor:
    return c.vae.decode(z)[0].cpu()


def _stage2(c: Stage2Components, z_ref: Tensor, text: Tensor, run: RunConfig, changes: dict) -> Tensor:
    steps = changes.pop("steps", run.stage2.schedule.steps)
    cfg = replace(run.stage2, schedule=replace(run.stage2.schedule, steps=steps), **changes)
    return _decode(c, add_detail(c, z_ref, text, cfg, run.seed))


def _inputs(clip: SyntheticClip, text: Tensor, comps: Components, cfg: FidelityConfig, device) -> dict[str, Tensor]:
    pixels = clip.frames[None].to(device)
    models = ConditionModels(comps.stage2.vae, comps.stage1)
    g = lambda: torch.Generator().manual_seed(cfg.seed)
    stage1 = ConditionConfig(kind="stage1", sigma_min=cfg.stage1_sigma, sigma_max=cfg.stage1_sigma, steps=2,
                             shift=3.0, sampler="euler")
    return {"oracle": condition_reference(pixels, text, ConditionConfig(kind="downsample"), models, g()),
            "stage1": condition_reference(pixels, text, stage1, models, g())}


def _clip_rows(clip: SyntheticClip, comps: Components, ablation: Stage2Components | None, run: RunConfig,
               cfg: FidelityConfig, rows: list[Row], device) -> dict[tuple[str, str], Tensor]:
    text = comps.text.encode(clip.caption, device)
    z_refs = _inputs(clip, text, comps, cfg, device)
    pixels = pixel_bicubic(clip)
    out: dict[tuple[str, str], Tensor] = {}
    for row in rows:
        z_ref = z_refs[row.input]
        if row.method == "pixels":
            video = pixels
        elif row.method == "bicubic":
            video = _decode(comps.stage2, z_ref)
        elif row.method == "warp":
            video = oracle_warp(clip, pixels)
        else:
            model = ablation if row.method == "ablation" else comps.stage2
            video = _stage2(model, z_ref, text, run, dict(row.changes))
        out[(row.name, row.input)] = video
    return out


def score(video: Tensor, truth: Tensor, starts: list[int]) -> dict[str, float]:
    """summarise()'s truth metrics, and the detail kept above the low-res band and flicker (`swifti2v eval`'s)."""
    return summarise(video, truth, starts) | {"detail_retention": float(detail_retention(video, 4)[1:].mean()),
                                              "flicker": float(flicker(video).mean())}


def save_videos(folder: Path, clip: SyntheticClip, videos: dict[tuple[str, str], Tensor], fps: int) -> None:
    """The first clip's rows as mp4 (for `swifti2v eval`), its truth, its input image and caption."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(to_uint8(clip.frames[None, :, :1])[0]).save(folder / "input.png")
    (folder / "caption.txt").write_text(clip.caption + "\n")
    named = {"truth": clip.frames} | {f"{name} [{low}]": v for (name, low), v in videos.items()}
    for name, video in named.items():
        slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
        with VideoWriter(folder / f"{slug}.mp4", fps=fps) as w:
            w.write(video[None])


def heldout_clips(name: str, cfg: FidelityConfig) -> list[SyntheticClip]:
    if name == "photo":
        return [heldout_photo_clip(i, cfg.height, cfg.width, cfg.frames) for i in range(cfg.photo_clips)]
    return [heldout_clip(i, "camera", cfg.height, cfg.width, cfg.frames) for i in range(cfg.clips)]


def _table(rows: list[Row], scores: dict[tuple[str, str], list[dict]]) -> list[dict]:
    base = [s["psnr"] for s in scores[PIXELS]]
    table = []
    for r in rows:
        per_clip = scores[(r.name, r.input)]
        mean = {k: sum(x[k] for x in per_clip) / len(per_clip) for k in per_clip[0]}
        gains = [s["psnr"] - b for s, b in zip(per_clip, base, strict=True)]
        table.append({"row": r.name, "input": r.input, "note": r.note, **{k: round(v, 4) for k, v in mean.items()},
                      "gain": round(sum(gains) / len(gains), 4), "gain_min": round(min(gains), 4)})
    return table


def shifted_copy_psnr(frames: Tensor) -> float:
    """How much every frame of a clip (3, F, H, W) is frame 0 moved: the mean PSNR of frames 1.. against frame 0
    on their motion-compensated crops (`aligned_to_first`). A pan or a still scores high (the held-out pans
    26-32 dB at 128x72); content rearranged token by token — a mosaic of tiles copied from elsewhere — low."""
    _, psnr = aligned_to_first(frames, 4.0)  # (the detail-retention half, at any factor, is not used)
    return float(psnr[1:].nanmean())


def camera_motion_of(frames: torch.Tensor) -> dict:
    """Zoom and rotation of a clip (3, F, h, w) from one flow field, frame 1 to the last (frame 0 of a Stage I clip is
    the sharp input: against the softer frame 1 it reads as a zoom)."""
    flows, scale = optical_flow(frames[:, 1::frames.shape[1] - 2])
    return camera_motion(flows, scale, tuple(frames.shape[-2:]))


def zoom_rotation_accuracy(comps: Components, run: RunConfig, clips: int, device) -> dict:
    """Stage I on `clips` held-out zooms and as many rotations: the share that zooms / turns the captioned way
    (the sign of the truth's, by at least MIN_ZOOM / MIN_TURN_DEG), and how far (log zoom and angle over the
    truth's, averaged)."""
    out = {}
    for motion, key, least in (("zoom", "camera_zoom", math.log(MIN_ZOOM)), ("rotate", "camera_rotation_deg",
                                                                               MIN_TURN_DEG)):
        hits = reached = n = 0
        for clip in heldout_motions(clips, motion, run.video.height, run.video.width, run.video.frames):
            z = generate_motion(comps.stage1, to_image(clip.low[:, 0]), comps.text.encode(clip.caption, device),
                                run.stage1, run.video, run.seed + n, device)
            got, truth = (camera_motion_of(c)[key] for c in (decode_clip(comps.stage1.vae, z)[0].cpu(), clip.low))
            if motion == "zoom":
                got, truth = math.log(got), math.log(truth)
            hits += got * truth > 0 and abs(got) >= least
            reached += got / truth
            n += 1
        out[f"{motion}_captioned_way"], out[f"{motion}_reach"] = hits / max(n, 1), reached / max(n, 1)
    return out


def direction_accuracy(comps: Components, run: RunConfig, cfg: FidelityConfig, device,
                       progress: Progress) -> dict:
    """Share of held-out pan clips whose Stage I motion (and, as a check, whose truth) moves as captioned, and
    how far Stage I moves: the mean of its first-to-last-frame shift projected on the truth's, over the truth's.

    A clip moves the captioned way when its first-to-last shift points the captioned way *and* it is a shifted
    copy of its first frame (`shifted_copy_psnr` >= SHIFTED_COPY_DB): a mosaic whose dominant tile shift happens
    to point the right way does not count. `direction_only` is the share without the second test."""
    hits = pointed = truth_hits = n = 0
    reached = copy_db = truth_db = 0.0
    for clip in heldout_pans(cfg.direction_clips, run.video.height, run.video.width, run.video.frames):
        image = to_image(clip.low[:, 0])
        text = comps.text.encode(clip.caption, device)
        z = generate_motion(comps.stage1, image, text, run.stage1, run.video, run.seed + n, device)
        frames = decode_clip(comps.stage1.vae, z)[0].cpu()
        shift = phase_correlation(frames[:, 0], frames[:, -1])
        truth = phase_correlation(clip.low[:, 0], clip.low[:, -1])
        copy, truth_copy = shifted_copy_psnr(frames), shifted_copy_psnr(clip.low)
        points = same_direction(shift, clip.shift)
        pointed += points
        hits += points and copy >= SHIFTED_COPY_DB
        truth_hits += same_direction(truth, clip.shift) and truth_copy >= SHIFTED_COPY_DB
        reached += reach(shift, truth)
        copy_db, truth_db = copy_db + copy, truth_db + truth_copy
        n += 1
        progress("stage1 direction", n, cfg.direction_clips)
    m = max(n, 1)
    return {"clips": n, "stage1": hits / m, "ground_truth": truth_hits / m, "direction_only": pointed / m,
            "reach": reached / m, "shifted_copy_db": copy_db / m, "ground_truth_shifted_copy_db": truth_db / m}


def bars(result: dict, shipped_steps: int) -> dict[str, dict]:
    """The tiny models' quality bars (issue: the bundled default must visibly work), measured."""
    get = lambda s, key: next(r for r in result["sets"][s]["rows"] if (r["row"], r["input"]) == key)
    present = [s for s in SETS if result["sets"].get(s, {}).get("rows")]  # --clips 0: no procedural rows
    ship = shipped_row(shipped_steps)
    checks = {}
    if "photo" in present:
        photo = get("photo", ship)
        checks["photo gain over bicubic >= +1.0 dB"] = (photo["gain"], photo["gain"] >= 1.0)
        anchor = photo["psnr_last_third"] - get("photo", NO_ANCHOR)["psnr_last_third"]
        checks["photo anchor gain, last third >= +0.3 dB"] = (anchor, anchor >= 0.3)
    worst = min(get(s, ship)["gain_min"] for s in present)
    checks["worst clip vs bicubic >= -0.2 dB"] = (worst, worst >= -0.2)
    cost = max(get(s, PIXELS)["psnr"] - get(s, CODEC)["psnr"] for s in present)
    checks["codec round trip of the reference <= 0.1 dB"] = (cost, cost <= 0.1)
    gap = max(abs(get(s, ship)["psnr"] - get(s, END_TO_END)["psnr"]) for s in present)
    checks["CSG within 0.3 dB of end-to-end"] = (gap, gap <= 0.3)
    seam = max(get(s, ship)["seam"] / get(s, END_TO_END)["seam"] for s in present)
    checks["seam score within 1.1x of end-to-end"] = (seam, seam <= 1.1)
    d = result["stage1_direction"]
    if d["clips"]:
        checks["Stage I direction accuracy >= 80%"] = (d["stage1"], d["stage1"] >= 0.8)
    return {k: {"value": round(v, 4), "met": bool(ok)} for k, (v, ok) in checks.items()}


def run_fidelity(cfg: FidelityConfig, progress: Progress = lambda name, done, total: None) -> dict:
    run = get_preset(cfg.preset)
    run = replace(run, video=VideoConfig(cfg.height, cfg.width, cfg.frames, run.video.fps), seed=cfg.seed)
    s = setup(run)
    started = time.perf_counter()
    comps = load_components(s, with_stage1=True)
    ablation = None
    if cfg.ablation_model:  # a transformer folder in the shipped model's folder (codec, text encoder)
        ablation = load_stage2(run.stage2.model, cfg.ablation_model, True, s.device, s.dtype)
    rows = _rows(cfg, run.stage2.schedule.steps)
    starts = segment_starts(run)
    sets = {}
    for name in SETS:
        clips = heldout_clips(name, cfg)
        scores: dict[tuple[str, str], list[dict]] = {(r.name, r.input): [] for r in rows}
        for i, clip in enumerate(clips):
            videos = _clip_rows(clip, comps, ablation, run, cfg, rows, s.device)
            for key, video in videos.items():
                scores[key].append(score(video, clip.frames, starts))
            if cfg.save_videos and i == 0 and name == SETS[0]:
                save_videos(Path(cfg.save_videos), clip, videos, run.video.fps)
            progress(f"{name} clips", i + 1, len(clips))
        sets[name] = {"motions": [c.caption for c in clips], "rows": _table(rows, scores) if clips else []}
    result = {"config": dataclasses.asdict(cfg), "run": run.to_dict(), "segment_starts": starts, "sets": sets,
              "stage1_direction": direction_accuracy(comps, run, cfg, s.device, progress)}
    result["bars"] = bars(result, run.stage2.schedule.steps)
    result.update(seconds=round(time.perf_counter() - started, 1), device=str(s.device))
    return result


def to_markdown(result: dict) -> str:
    c = result["config"]
    lines = [f"Held-out clips at {c['width']}x{c['height']}, {c['frames']} frames; preset `{c['preset']}`. Gains are "
             "PSNR over bicubic (pixels), mean and worst clip.", ""]
    for name, part in result["sets"].items():
        if not part["rows"]:
            continue
        lines += [f"**{name}** ({len(part['motions'])} clips: {', '.join(part['motions'])})", "",
                  "| row | low-res input | PSNR | gain | worst gain | SSIM | PSNR last third | frame-0 PSNR | seam | "
                  "temporal RMSE | detail kept | flicker | note |", "|---" * 13 + "|"]
        for r in part["rows"]:
            lines.append(f"| {r['row']} | {r['input']} | {r['psnr']:.2f} | {r['gain']:+.2f} | {r['gain_min']:+.2f} | "
                         f"{r['ssim']:.4f} | {r['psnr_last_third']:.2f} | {r['psnr_first_frame']:.1f} | "
                         f"{r['seam']:.3f} | {r['temporal_rmse']:.2f} | {r['detail_retention']:.3f} | "
                         f"{r['flicker']:.2f} | {r['note']} |")
        lines.append("")
    d = result["stage1_direction"]
    lines += [f"Stage I direction accuracy on {d['clips']} held-out pan clips: {d['stage1']:.0%} "
              f"(ground truth through the same measurement: {d['ground_truth']:.0%}; chance: 12.5%); it moves "
              f"{round(d['reach'], 3) + 0.0:.1%} as far as the truth along the truth's direction. "  # no -0%
              f"A clip counts when its frames are also shifted copies of its first (>= {SHIFTED_COPY_DB:.0f} dB on "
              f"motion-compensated crops; Stage I {d['shifted_copy_db']:.1f} dB, the truth "
              f"{d['ground_truth_shifted_copy_db']:.1f}); by direction alone: {d['direction_only']:.0%}.", "",
              "| bar | measured | met |", "|---|---|---|"]
    lines += [f"| {k} | {v['value']:.3f} | {'yes' if v['met'] else 'no'} |" for k, v in result["bars"].items()]
    return "\n".join(lines) + "\n"
