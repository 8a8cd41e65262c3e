"""`swifti2v bench fidelity`: how much input-image detail Stage II recovers, with ablations, on held-out
procedural clips with ground truth (seeds and photographs training never sees).

Every row starts from the same ground-truth clip. Low-res inputs: "oracle" = the antialiased 1/4
downsample of the truth; "stage1" = the tiny Stage I re-generating that downsample from noise level
`stage1_sigma` (its artefacts, the truth's motion, so PSNR against the truth stays meaningful). Rows:

- bicubic: the hybrid reference itself (bicubic upsample; frame 0 = the input image).
- oracle warp: frame 0 moved along the true motion where its content is visible, bicubic elsewhere.
- stage2 rows: the shipped concat refiner with CSG (M=3, N=1) at 1, 2 and 4 steps; without the anchor;
  end-to-end (--no-csg); N=0; fed Stage I output; and the refiner trained without stage-transition
  conditions, fed Stage I output.

Stage I alone: the share of held-out pan clips whose generated motion (global phase correlation
between the first and last frames) points the captioned way.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch

from swifti2v.bench.metrics import phase_correlation, same_direction, summarise
from swifti2v.config import RunConfig, VideoConfig
from swifti2v.data.synthetic import SyntheticClip, heldout_clip, sample_at
from swifti2v.models.components import Components, Stage2Components, load_stage2
from swifti2v.pipeline import load_components, setup
from swifti2v.plan import stage2_plan
from swifti2v.presets import BUNDLED, get_preset
from swifti2v.reference import decoded_windows
from swifti2v.stage1 import generate_motion
from swifti2v.stage2 import add_detail
from swifti2v.training.conditions import ConditionModels, condition_reference, to_image
from swifti2v.training.config import ConditionConfig

Tensor = torch.Tensor
Progress = Callable[[str, int, int], None]
ABLATION_MODEL = BUNDLED + "tiny/stage2-no-transition"


@dataclass(frozen=True)
class FidelityConfig:
    preset: str = "tiny"
    clips: int = 6  # held-out camera clips (pan / zoom / rotate)
    direction_clips: int = 24  # held-out pan clips for Stage I's direction accuracy
    height: int = 288
    width: int = 512
    frames: int = 33
    steps: tuple[int, ...] = (1, 2, 4)  # Stage II sampler settings compared (CSG, oracle input)
    stage1_sigma: float = 0.5
    ablation_model: str = ABLATION_MODEL
    seed: int = 0


@dataclass(frozen=True)
class Row:
    name: str
    input: str  # "oracle" or "stage1"
    note: str
    method: str = "stage2"  # "bicubic", "warp", "stage2" or "ablation" (the no-stage-transition model)
    changes: tuple[tuple[str, object], ...] = ()  # Stage II config changes (Stage2Config fields, or "steps")


def _rows(cfg: FidelityConfig, shipped_steps: int) -> list[Row]:
    rows = [Row("bicubic", "oracle", "hybrid reference: bicubic x4, frame 0 = input image", "bicubic"),
            Row("oracle warp", "oracle", "frame 0 moved by the true motion where visible, bicubic elsewhere", "warp")]
    rows += [Row(f"stage2 CSG M3 N1, {n} step{'s' if n > 1 else ''}", "oracle",
                 "shipped setting" if n == shipped_steps else "", changes=(("steps", n),)) for n in cfg.steps]
    rows += [Row("stage2 no anchor", "oracle", "anchor tokens dropped from every window", changes=(("anchor", False),)),
             Row("stage2 end-to-end (--no-csg)", "oracle", "one window over the whole clip", changes=(("csg", False),)),
             Row("stage2 CSG N=0", "oracle", "no previously generated neighbour", changes=(("neighbor_blocks", 0),)),
             Row("bicubic", "stage1", "of the tiny Stage I's output", "bicubic"),
             Row("stage2 CSG M3 N1", "stage1", "shipped model"),
             Row("stage2 without stage-transition training", "stage1", "ablation model, same recipe length",
                 "ablation")]
    return rows


def segment_starts(run: RunConfig) -> list[int]:
    """First frame of every CSG (M, N) segment: the boundaries the seam score looks at."""
    plan = stage2_plan(replace(run.stage2, csg=True, anchor=True), run.video.num_blocks)
    return [4 * (seg.blocks[0] - 1) + 1 for seg in plan]


def oracle_warp(clip: SyntheticClip, bicubic: Tensor) -> Tensor:
    """(3, F, H, W): frame 0 sampled at each pixel's true source where visible, else the bicubic frame."""
    warped = sample_at(clip.frames[:, 0], clip.source)
    return torch.where(clip.valid[None], warped, bicubic).clamp(-1, 1)


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


def _clip_rows(clip: SyntheticClip, comps: Components, ablation: Stage2Components, run: RunConfig,
               cfg: FidelityConfig, rows: list[Row], device) -> dict[tuple[str, str], Tensor]:
    text = comps.text.encode(clip.caption, device)
    z_refs = _inputs(clip, text, comps, cfg, device)
    out: dict[tuple[str, str], Tensor] = {}
    bicubic = _decode(comps.stage2, z_refs["oracle"])
    for row in rows:
        z_ref = z_refs[row.input]
        if row.method == "bicubic":
            video = bicubic if row.input == "oracle" else _decode(comps.stage2, z_ref)
        elif row.method == "warp":
            video = oracle_warp(clip, bicubic)
        else:
            model = ablation if row.method == "ablation" else comps.stage2
            video = _stage2(model, z_ref, text, run, dict(row.changes))
        out[(row.name, row.input)] = video
    return out


def direction_accuracy(comps: Components, run: RunConfig, cfg: FidelityConfig, device,
                       progress: Progress) -> dict:
    """Share of held-out pan clips whose Stage I motion (and, as a check, whose truth) moves as captioned."""
    hits = truth_hits = n = index = 0
    while n < cfg.direction_clips:
        clip = heldout_clip(10_000 + index, "camera", run.video.height, run.video.width, run.video.frames)
        index += 1
        if clip.motion != "pan":
            continue
        image = to_image(clip.low[:, 0])
        text = comps.text.encode(clip.caption, device)
        z = generate_motion(comps.stage1, image, text, run.stage1, run.video, run.seed + n, device)
        frames = torch.cat(list(decoded_windows(comps.stage1.vae, z)), dim=2)[0].cpu()
        hits += same_direction(phase_correlation(frames[:, 0], frames[:, -1]), clip.shift)
        truth_hits += same_direction(phase_correlation(clip.low[:, 0], clip.low[:, -1]), clip.shift)
        n += 1
        progress("stage1 direction", n, cfg.direction_clips)
    return {"clips": n, "stage1": hits / max(n, 1), "ground_truth": truth_hits / max(n, 1)}


def run_fidelity(cfg: FidelityConfig, progress: Progress = lambda name, done, total: None) -> dict:
    run = get_preset(cfg.preset)
    run = replace(run, video=VideoConfig(cfg.height, cfg.width, cfg.frames, run.video.fps), seed=cfg.seed)
    s = setup(run)
    started = time.perf_counter()
    comps = load_components(s, with_stage1=True)
    ablation = load_stage2(cfg.ablation_model, None, True, s.device, s.dtype)
    rows = _rows(cfg, run.stage2.schedule.steps)
    starts = segment_starts(run)
    per_row: dict[tuple[str, str], list[dict]] = {(r.name, r.input): [] for r in rows}
    motions = []
    for i in range(cfg.clips):
        clip = heldout_clip(i, "camera", cfg.height, cfg.width, cfg.frames)
        motions.append(clip.motion)
        for key, video in _clip_rows(clip, comps, ablation, run, cfg, rows, s.device).items():
            per_row[key].append(summarise(video, clip.frames, starts))
        progress("clips", i + 1, cfg.clips)
    table = []
    for r in rows:
        scores = per_row[(r.name, r.input)]
        mean = {k: sum(x[k] for x in scores) / len(scores) for k in scores[0]}
        table.append({"row": r.name, "input": r.input, "note": r.note, **{k: round(v, 4) for k, v in mean.items()}})
    return {
        "config": dataclasses.asdict(cfg), "run": run.to_dict(), "segment_starts": starts, "motions": motions,
        "rows": table, "stage1_direction": direction_accuracy(comps, run, cfg, s.device, progress),
        "seconds": round(time.perf_counter() - started, 1), "device": str(s.device),
    }


def to_markdown(result: dict) -> str:
    c = result["config"]
    lines = [f"Held-out camera clips: {c['clips']} ({', '.join(result['motions'])}), "
             f"{c['width']}x{c['height']}, {c['frames']} frames; preset `{c['preset']}`.", "",
             "| row | low-res input | PSNR | SSIM | PSNR last third | SSIM last third | frame-0 PSNR | seam | "
             "temporal RMSE | note |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['row']} | {r['input']} | {r['psnr']:.2f} | {r['ssim']:.4f} | {r['psnr_last_third']:.2f} | "
                     f"{r['ssim_last_third']:.4f} | {r['psnr_first_frame']:.1f} | {r['seam']:.3f} | "
                     f"{r['temporal_rmse']:.2f} | {r['note']} |")
    d = result["stage1_direction"]
    lines += ["", f"Stage I direction accuracy on {d['clips']} held-out pan clips: {d['stage1']:.0%} "
              f"(ground truth through the same measurement: {d['ground_truth']:.0%}; chance: 12.5%)."]
    return "\n".join(lines) + "\n"
