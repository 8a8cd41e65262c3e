"""The tiny codec's round trip on held-out clips: what it costs the bicubic reference, and how well it keeps
the truth (docs/results.md). Frames 1..F-1 (frame 0 is reported on its own).
    python -m recipes.tiny.probes.codec_check [--model src/swifti2v/weights/tiny/stage2] [--clips 4]
"""

from __future__ import annotations

import argparse
import json

from swifti2v.bench.fidelity import pixel_bicubic
from swifti2v.data.bank import heldout_photo_clip
from swifti2v.data.synthetic import heldout_clip
from swifti2v.eval.metrics import frame_psnr
from swifti2v.models.components import _load_vae
from swifti2v.models.vae import WanVAE
from swifti2v.presets import WEIGHTS_DIR

SETS = {"photo": lambda i: heldout_photo_clip(i, 288, 512, 33),
        "procedural": lambda i: heldout_clip(i, "camera", 288, 512, 33)}


def psnr(x, y) -> float:
    return frame_psnr(x, y)[1:].mean().item()


def clip_row(vae: WanVAE, clip) -> dict[str, float]:
    through = lambda x: vae.decode(vae.encode(x[None]))[0]  # noqa: E731
    truth, bicubic = clip.frames, pixel_bicubic(clip)
    rt = through(truth)
    return {"bicubic": psnr(bicubic, truth), "bicubic_after_codec": psnr(through(bicubic), truth),
            "truth_after_codec": psnr(rt, truth), "frame0_after_codec": frame_psnr(rt[:, :1], truth[:, :1]).item()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m recipes.tiny.probes.codec_check", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=str(WEIGHTS_DIR / "tiny" / "stage2"), help="a model folder with a vae/ codec")
    p.add_argument("--clips", type=int, default=4, help="held-out clips per set (default 4)")
    a = p.parse_args(argv)
    vae = WanVAE(_load_vae(a.model, "codec"))
    result = {}
    for name, make in SETS.items():
        rows = [clip_row(vae, make(i)) for i in range(a.clips)]
        mean = {k: round(sum(r[k] for r in rows) / len(rows), 3) for k in rows[0]}
        mean["cost_db"] = round(mean["bicubic"] - mean["bicubic_after_codec"], 3)
        result[name] = mean
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
