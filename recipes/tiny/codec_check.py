"""The tiny codec's round trip on held-out clips: what it costs the bicubic reference, and how well it keeps
the truth (docs/results.md). Frames 1..F-1 (frame 0 is reported on its own).
    python recipes/tiny/codec_check.py [--model src/swifti2v/weights/tiny/stage2] [--clips 4]
"""

import argparse
import json

from swifti2v.bench.fidelity import pixel_bicubic
from swifti2v.data.bank import heldout_photo_clip
from swifti2v.data.synthetic import heldout_clip
from swifti2v.eval.metrics import frame_psnr
from swifti2v.models.components import _load_vae
from swifti2v.models.tiny import WEIGHTS_DIR
from swifti2v.models.vae import WanVAE

p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
p.add_argument("--model", default=str(WEIGHTS_DIR / "tiny" / "stage2"), help="a model folder with a vae/ codec")
p.add_argument("--clips", type=int, default=4, help="held-out clips per set (default 4)")
a = p.parse_args()
vae = WanVAE(_load_vae(a.model, "codec"))
sets = {"photo": lambda i: heldout_photo_clip(i, 288, 512, 33),
        "procedural": lambda i: heldout_clip(i, "camera", 288, 512, 33)}
psnr = lambda x, y: frame_psnr(x, y)[1:].mean().item()
result = {}
for name, make in sets.items():
    rows = []
    for i in range(a.clips):
        clip = make(i)
        truth, bicubic = clip.frames, pixel_bicubic(clip)
        through = lambda x: vae.decode(vae.encode(x[None]))[0]
        rt = through(truth)
        rows.append({"bicubic": psnr(bicubic, truth), "bicubic_after_codec": psnr(through(bicubic), truth),
                     "truth_after_codec": psnr(rt, truth),
                     "frame0_after_codec": frame_psnr(rt[:, :1], truth[:, :1]).item()})
    mean = {k: round(sum(r[k] for r in rows) / len(rows), 3) for k in rows[0]}
    mean["cost_db"] = round(mean["bicubic"] - mean["bicubic_after_codec"], 3)
    result[name] = mean
print(json.dumps(result, indent=1))
