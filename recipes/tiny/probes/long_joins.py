"""Clips longer than Stage I's window, the two join methods side by side: `generate --frames F` with the tiny preset
under a pan prompt on the README image and on a held-out photograph, once with `--extend last-frame` and once with
`--extend context`, each measured by `swifti2v eval` (join score, brightness/colour/detail steps at the joins, colour
drift from the first window to the last, motion continuity; docs/eval.md). Writes the numbers as JSON, a markdown
table, and a contact sheet across the joins (a row per image and method: the frames either side of every join).

    python -m recipes.tiny.probes.long_joins --frames 97 --json out.json --sheet docs/figures/tiny_long_joins.png
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from PIL import Image, ImageDraw

from swifti2v.api import SwiftI2V
from swifti2v.config import EXTENDS
from swifti2v.data.bank import heldout_photo_clip
from swifti2v.eval.report import EvalConfig, run_eval
from swifti2v.files import atomic_write_json
from swifti2v.presets import get_preset, with_overrides
from swifti2v.training.conditions import to_image

PROMPT = "the camera pans left over the hills"
KEYS = ("join_score", "join_score_mean", "join_luma_step", "join_colour_step", "join_detail_step", "colour_drift",
        "luma_drift", "join_motion", "flicker", "camera_motion_match")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m recipes.tiny.probes.long_joins", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=97, help="clip length, 4k+1 past the window of 33 (default 97)")
    p.add_argument("--image", default="examples/input.jpg", help="the first image (default: the README's)")
    p.add_argument("--heldout", type=int, default=0, help="which held-out photograph clip gives the second image")
    p.add_argument("--prompt", default=PROMPT, help=f"the prompt (default {PROMPT!r})")
    p.add_argument("--json", help="write the numbers here")
    p.add_argument("--sheet", help="write the contact sheet here (PNG)")
    return p


def measure(frames: int, images: dict[str, Path], prompt: str, work: Path) -> list[dict]:
    pipe = SwiftI2V(with_overrides(get_preset("tiny"), frames=frames))
    rows = []
    for name, image in images.items():
        for extend in EXTENDS:
            out = work / f"{name.replace(' ', '-')}-{extend}.mp4"
            pipe.generate(image, prompt, out=out, extend=extend, keep_frames=False)
            video = run_eval(EvalConfig(videos=(str(out),), image=str(image)), work / "report")["videos"][0]
            rows.append({"image": name, "extend": extend, "path": str(out), "joins": video["joins"],
                         **{k: video["metrics"].get(k) for k in KEYS}})
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| image | --extend | joins at | join score (worst / mean) | brightness / colour / detail step | "
             "colour drift (levels) | brightness drift | join motion | flicker |", "|---" * 9 + "|"]
    for r in rows:
        lines.append(f"| {r['image']} | {r['extend']} | {', '.join(map(str, r['joins']))} | "
                     f"{r['join_score']:.2f} / {r['join_score_mean']:.2f} | {r['join_luma_step']:.2f} / "
                     f"{r['join_colour_step']:.2f} / {r['join_detail_step']:.2f} | {r['colour_drift']:.1f} | "
                     f"{r['luma_drift']:+.1f} | {r['join_motion']:.2f} | {r['flicker']:.2f} |")
    return "\n".join(lines) + "\n"


def sheet(rows: list[dict], path: Path, scale: float = 0.5) -> None:
    """A row per image and method: frame 0, then the two frames either side of every join, labelled."""
    from swifti2v.media import read_video

    strips = []
    for r in rows:
        frames, _ = read_video(r["path"], "VIDEO")
        picks = [0, *[i for j in r["joins"] for i in (j - 1, j)], len(frames) - 1]
        strips.append([(i, frames[i]) for i in picks])
    w, h = (round(x * scale) for x in strips[0][0][1].size)
    label = 14
    cols = max(len(s) for s in strips)
    out = Image.new("RGB", (cols * w, len(strips) * (h + label)), "white")
    draw = ImageDraw.Draw(out)
    for row, (r, strip) in enumerate(zip(rows, strips, strict=True)):
        y = row * (h + label)
        draw.text((2, y), f"{r['image']}, --extend {r['extend']}: frames", fill="black")
        for col, (i, frame) in enumerate(strip):
            draw.text((col * w + w - 30, y), str(i), fill="black")
            out.paste(frame.resize((w, h)), (col * w, y + label))
    path.parent.mkdir(parents=True, exist_ok=True)
    out.save(path)


def main(argv: list[str] | None = None) -> None:
    a = parser().parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="swifti2v-long-") as tmp:
        work = Path(tmp)
        held = work / f"heldout{a.heldout}.png"
        to_image(heldout_photo_clip(a.heldout, 288, 512, 33).frames[:, 0]).save(held)
        rows = measure(a.frames, {"README image": Path(a.image), f"held-out photo {a.heldout}": held}, a.prompt, work)
        print(table(rows), end="")
        if a.sheet:
            sheet(rows, Path(a.sheet))
        if a.json:
            atomic_write_json(Path(a.json), {"frames": a.frames, "prompt": a.prompt, "rows": rows})


if __name__ == "__main__":
    main()
