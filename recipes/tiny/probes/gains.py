"""One JSON of where a pair of tiny checkpoints stands against the bars (docs/results.md): Stage I's direction count
on held-out pans (`stage1_direction`'s numbers) and Stage II's gain over bicubic with oracle references on held-out
photographs, what the anchor adds on the last third, and the worst clip (`checkpoint_gain`'s), each beside the
bundled model's. recipes/tiny/gpu.sh ends with it.

    python -m recipes.tiny.probes.gains --stage1 RUN/stage1/final --stage2 RUN/stage2/final --out RUN/gains.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from recipes.tiny.probes import checkpoint_gain, stage1_direction
from swifti2v.bench.fidelity import FidelityConfig
from swifti2v.files import atomic_write_json
from swifti2v.models.components import load_stage2
from swifti2v.pipeline import load_components, setup
from swifti2v.presets import get_preset
from swifti2v.training.engine import read_weights


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m recipes.tiny.probes.gains", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stage1", help="a Stage I transformer folder or training checkpoint (default: the bundled one)")
    p.add_argument("--stage2", help="a Stage II transformer folder (default: the bundled one)")
    p.add_argument("--out", required=True, help="the JSON to write")
    p.add_argument("--direction-clips", type=int, default=24, help="held-out pans for the direction count (24)")
    p.add_argument("--photo-clips", type=int, default=4, help="held-out photograph clips for the gains (4)")
    p.add_argument("--size", type=int, nargs=2, default=(288, 512), metavar=("H", "W"),
                   help="the gain clips' frame size (default the benchmark's)")
    return p


def stage1_numbers(folder: str | None, clips: int) -> dict[str, dict[str, float]]:
    run = get_preset("tiny")
    s = setup(run)
    probe = stage1_direction.Probe(run, s, load_components(s, with_stage1=True), clips)
    out = {"bundled": stage1_direction.measure(probe)}
    if folder:
        probe.comps.stage1.transformer.load_state_dict(read_weights(folder), strict=True)
        out["new"] = stage1_direction.measure(probe)
    return out


def stage2_numbers(folder: str | None, photo_clips: int, size: tuple[int, int]) -> dict[str, dict[str, float]]:
    model = get_preset("tiny").stage2.model
    models = {"bundled": load_stage2(model, None, True, checkpoint_gain.CPU, torch.float32)}
    if folder:
        models["new"] = load_stage2(model, folder, True, checkpoint_gain.CPU, torch.float32)
    cfg = FidelityConfig(clips=0, photo_clips=photo_clips, height=size[0], width=size[1])
    result = checkpoint_gain.measure(models, cfg)
    return {name: checkpoint_gain.summary(result, name) for name in models}


@torch.no_grad()
def main(argv: list[str] | None = None) -> int:
    a = parser().parse_args(argv)
    t0 = time.perf_counter()
    gains = {"stage1": stage1_numbers(a.stage1, a.direction_clips),
             "stage2": stage2_numbers(a.stage2, a.photo_clips, tuple(a.size)),
             "checkpoints": {"stage1": a.stage1, "stage2": a.stage2},
             "clips": {"direction": a.direction_clips, "photo": a.photo_clips, "size": list(a.size)}}
    gains["seconds"] = round(time.perf_counter() - t0, 1)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(Path(a.out), gains)
    print(json.dumps(gains, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
