"""Stage II checkpoints against bicubic on held-out clips (oracle low-res input, the shipped CSG setting,
with and without the anchor): the quick curve to follow while the recipe trains (`bench fidelity` is the
full measurement). Each checkpoint is a transformer folder (RUN/final, a bundle's transformer/), a training
checkpoint (RUN/checkpoints/step-N with --like: its raw weights, or with --ema the average that a run with
ema_decay > 0 keeps), or "shipped", the bundled model.

    python -m recipes.tiny.probes.checkpoint_gain shipped outputs/tiny-cpu/s2/final [--photo-clips 2 --clips 1]
        [--crops docs/figures/tiny_photo_crops.png --names "previous Stage II" "new Stage II"]

--crops draws 1:1 crops of one frame of the first photograph clip: truth, bicubic, then each model with its
PSNR on that frame.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from dataclasses import replace
from pathlib import Path

import torch

from swifti2v.bench.fidelity import FidelityConfig, heldout_clips, pixel_bicubic
from swifti2v.eval.metrics import frame_psnr
from swifti2v.models.components import Stage2Components, load_stage2, load_text_encoder
from swifti2v.presets import get_preset
from swifti2v.stage2 import add_detail
from swifti2v.training.conditions import ConditionModels, condition_reference
from swifti2v.training.config import ConditionConfig
from swifti2v.training.engine import checkpoint_transformer

CPU = torch.device("cpu")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m recipes.tiny.probes.checkpoint_gain", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoints", nargs="+", help="'shipped', transformer folders of trained concat refiners, or "
                   "training checkpoints (RUN/checkpoints/step-N, with --like)")
    p.add_argument("--like", help="a transformer folder with the checkpoints' config.json (for RUN/checkpoints/step-N)")
    p.add_argument("--ema", action="store_true", help="training checkpoints: their EMA weights (ema_decay > 0), not "
                   "the raw ones")
    p.add_argument("--photo-clips", type=int, default=2)
    p.add_argument("--clips", type=int, default=1, help="held-out procedural clips")
    p.add_argument("--size", type=int, nargs=2, default=(288, 512), metavar=("H", "W"),
                   help="the held-out clips' frame size (default the benchmark's; e.g. a training crop size)")
    p.add_argument("--crops", help="PNG: 1:1 crops of --crop-frame of the first photograph clip")
    p.add_argument("--crop-frame", type=int, default=24)
    p.add_argument("--crop-size", type=int, nargs=2, default=(160, 240), metavar=("H", "W"))
    p.add_argument("--names", nargs="+", help="labels of the checkpoints in the crops (default: their paths)")
    return p


def transformer_folder(path: str, like: str | None, ema: bool) -> str | None:
    """A training checkpoint (accelerate's model.safetensors) as a transformer folder shaped like `like`."""
    if path == "shipped":
        return None
    step = Path(path)
    if not (step / "model.safetensors").is_file():
        return path
    return str(checkpoint_transformer(step, Path(like), Path(tempfile.mkdtemp()) / step.name, ema))


def clip_row(clip, text, models: dict[str, Stage2Components], crops: list | None) -> dict:
    """One held-out clip: bicubic's PSNR, and each model's gain over it with and without the anchor (all frames
    after the first, and the last third); with `crops`, the clip's videos are appended to it."""
    run = get_preset("tiny")
    first = next(iter(models.values()))
    z_ref = condition_reference(clip.frames[None], text, ConditionConfig(kind="downsample"),
                                ConditionModels(first.vae, None), torch.Generator().manual_seed(0))
    truth, bicubic = clip.frames, pixel_bicubic(clip)
    base = frame_psnr(bicubic[:, 1:], truth[:, 1:]).mean().item()
    third = slice(1 + 2 * (truth.shape[1] - 1) // 3, None)
    row = {"caption": clip.caption, "bicubic": round(base, 3)}
    if crops is not None:
        crops += [("truth", truth), ("bicubic", bicubic)]
    for c, model in models.items():
        for anchor in (True, False):
            video = model.vae.decode(add_detail(model, z_ref, text, replace(run.stage2, anchor=anchor), 0))[0]
            if crops is not None and anchor:
                crops.append((c, video))
            gain = frame_psnr(video[:, 1:], truth[:, 1:]).mean().item() - base
            last = (frame_psnr(video[:, third], truth[:, third]).mean()
                    - frame_psnr(bicubic[:, third], truth[:, third]).mean()).item()
            row[c if anchor else f"{c} no anchor"] = {"gain": round(gain, 3), "gain_last_third": round(last, 3)}
    return row


def summary(result: dict, c: str) -> dict[str, float]:
    """Model `c` over the clips: the mean gain over bicubic on the photographs, what the anchor adds on their last
    third, and the worst clip's gain (dB)."""
    photo = [r[c]["gain"] for k, r in result.items() if k.startswith("photo")]
    anchor = [r[c]["gain_last_third"] - r[f"{c} no anchor"]["gain_last_third"] for k, r in result.items()
              if k.startswith("photo")]
    return {"photo_gain_db": round(sum(photo) / len(photo), 3),
            "anchor_gain_last_third_db": round(sum(anchor) / len(anchor), 3),
            "worst_clip_gain_db": round(min(r[c]["gain"] for r in result.values()), 3)}


def measure(models: dict[str, Stage2Components], cfg: FidelityConfig, crops: list | None = None) -> dict:
    """Every held-out clip's row (printed as it comes); with `crops`, the first photograph's videos go there."""
    text_encoder = load_text_encoder(get_preset("tiny").stage1.model, CPU, torch.float32)
    result = {}
    for name in ("photo", "procedural"):
        for i, clip in enumerate(heldout_clips(name, cfg)):
            keep = crops is not None and name == "photo" and i == 0  # the clip --crops draws
            row = clip_row(clip, text_encoder.encode(clip.caption, CPU), models, crops if keep else None)
            result[f"{name} {i}"] = row
            print(json.dumps({f"{name} {i}": row}), flush=True)
    return result


@torch.no_grad()
def main(argv: list[str] | None = None) -> int:
    p = parser()
    a = p.parse_args(argv)
    if a.crops and a.names and len(a.names) != len(a.checkpoints):
        p.error(f"--names gives {len(a.names)} labels for {len(a.checkpoints)} checkpoints")
    run = get_preset("tiny")
    cfg = FidelityConfig(clips=a.clips, photo_clips=a.photo_clips, height=a.size[0], width=a.size[1])
    models = {c: load_stage2(run.stage2.model, transformer_folder(c, a.like, a.ema), True, CPU, torch.float32)
              for c in a.checkpoints}
    crops = [] if a.crops else None  # (label, (3, F, H, W) video) for --crops
    result = measure(models, cfg, crops)
    for c in models:
        g = summary(result, c)
        print(f"{c}: photo gain {g['photo_gain_db']:+.3f} dB, anchor (last third) "
              f"{g['anchor_gain_last_third_db']:+.3f} dB, worst clip {g['worst_clip_gain_db']:+.3f} dB")
    if a.crops:
        names = a.names or list(models)
        crop_sheet(crops, a.crop_frame, tuple(a.crop_size), ["truth", "bicubic", *names]).save(a.crops)
        print(f"wrote {a.crops}")
    return 0


def crop_sheet(videos: list[tuple[str, torch.Tensor]], frame: int, size: tuple[int, int], labels: list[str]):
    """One frame of each video, a centred 1:1 crop, side by side, labelled with its PSNR on that frame."""
    from PIL import Image, ImageDraw

    truth = videos[0][1][:, frame]
    h, w = size
    top, left = (truth.shape[-2] - h) // 2, (truth.shape[-1] - w) // 2
    sheet = Image.new("RGB", (w * len(videos), h))
    for k, ((_, video), label) in enumerate(zip(videos, labels, strict=True)):
        x = video[:, frame]
        tile = ((x[:, top:top + h, left:left + w].clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0)
        sheet.paste(Image.fromarray(tile.numpy()), (k * w, 0))
        if k:
            label += f" {frame_psnr(x[:, None], truth[:, None]).item():.2f} dB"
        draw = ImageDraw.Draw(sheet)
        draw.rectangle((k * w, 0, k * w + 6 * len(label) + 4, 12), fill=(0, 0, 0))
        draw.text((k * w + 2, 0), label, fill=(255, 255, 255))
    return sheet


if __name__ == "__main__":
    raise SystemExit(main())
