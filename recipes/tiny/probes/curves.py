"""Training curves of the tiny recipe: a markdown table and a PNG (docs/results.md), from metrics.jsonl.

    python -m recipes.tiny.probes.curves outputs/tiny --png docs/figures/tiny_training.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from PIL import Image, ImageDraw

RUNS = ("stage1", "stage2-oracle", "stage2", "stage2-no-transition")
COLOURS = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40))


def read(run_dir: Path) -> list[tuple[int, float]]:
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [(r["step"], r["loss"]) for r in rows if "loss" in r]


def plot(curves: dict[str, list[tuple[int, float]]], out: Path, size=(720, 360), pad=50) -> None:
    img = Image.new("RGB", size, "white")
    d = ImageDraw.Draw(img)
    points = [p for c in curves.values() for p in c]
    x_max, y_max = max(p[0] for p in points), max(p[1] for p in points)
    sx = lambda s: pad + (size[0] - 2 * pad) * s / x_max
    sy = lambda v: size[1] - pad - (size[1] - 2 * pad) * v / y_max
    d.line([(pad, pad), (pad, size[1] - pad), (size[0] - pad, size[1] - pad)], fill="black")
    for i in range(5):
        v = y_max * i / 4
        d.text((4, sy(v) - 6), f"{v:.2f}", fill="black")
    d.text((size[0] - pad - 40, size[1] - pad + 8), f"step {x_max}", fill="black")
    for k, (name, c) in enumerate(curves.items()):
        if len(c) > 1:
            d.line([(sx(s), sy(v)) for s, v in c], fill=COLOURS[k % 4], width=2)
        d.text((pad + 10 + 170 * k, 10), name, fill=COLOURS[k % 4])
    out.parent.mkdir(parents=True, exist_ok=True)
    img.save(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m recipes.tiny.probes.curves", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", help="the recipe's run folder (default layout of recipes/tiny/train.sh)")
    p.add_argument("--png", help="write the plot here")
    a = p.parse_args(argv)
    curves = {name: read(Path(a.run) / name) for name in RUNS}
    curves = {k: v for k, v in curves.items() if v}
    steps = sorted({s for c in curves.values() for s, _ in c if s % 100 == 0 or s == max(x for x, _ in c)})
    print("| step | " + " | ".join(curves) + " |")
    print("|---" * (len(curves) + 1) + "|")
    for s in steps:
        cells = [next((f"{v:.3f}" for x, v in c if x == s), "") for c in curves.values()]
        print(f"| {s} | " + " | ".join(cells) + " |")
    if a.png:
        plot(curves, Path(a.png))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
