"""`swifti2v eval VIDEO... --image IMG`: measure generated videos against their input image."""

from __future__ import annotations

import argparse
from pathlib import Path

from swifti2v.cli.common import int_list, progress, quiet_libraries, write_result
from swifti2v.errors import UserError

COMMANDS = ("eval",)


def add_parser(sub: argparse._SubParsersAction) -> None:
    e = sub.add_parser("eval", help="measure videos against their input image: detail kept, seams, flicker, motion",
                       description="Measure one or more generated videos (side by side in one table) against the "
                       "input image: frame-0 fidelity, detail above the low-res clip's band over time, brightness/"
                       "detail pulses at the 4-frame block and segment periods, flicker, flow-warping error, "
                       "dynamic degree, camera motion vs the prompt; with --truth PSNR/SSIM per frame and the seam "
                       "score; learned metrics (LPIPS, DISTS, DINO subject consistency, CLIP-IQA, VBench) from "
                       "--weights. Writes REPORT.json, REPORT.md and REPORT.png (per-frame curves).")
    e.add_argument("videos", nargs="+", metavar="VIDEO", help="videos to measure (mp4/mov/webm)")
    e.add_argument("--image", required=True, help="the input image the videos were made from")
    e.add_argument("--truth", help="ground-truth video of the same size and length (adds PSNR/SSIM/seam score)")
    e.add_argument("--prompt", default="", help="the prompt (default: each video's own, from the JSON `generate` "
                   "wrote beside it); a named camera motion (pans left, zooms in, rotates clockwise) is checked "
                   "against the measured one")
    e.add_argument("--segment-frames", type=int, metavar="K", help="frames per Stage II segment (default: from the "
                   "video's sidecar JSON, else 12 = CSG's M=3 blocks of 4)")
    e.add_argument("--joins", metavar="F[,F...]", help="first frame after each Stage I window join (default: from "
                   "the video's sidecar JSON; none for other videos): adds the join score, colour drift and motion "
                   "continuity (docs/eval.md)")
    e.add_argument("--low-res", default="4", help="the low-res clip Stage II started from: a factor per side "
                   "(default 4) or its size, e.g. 640x352; sets the band detail retention measures")
    e.add_argument("--weights", metavar="DIR", help="local weights of the learned metrics (nothing is downloaded; "
                   "a metric whose files are missing is skipped with one line naming them, see docs/results.md)")
    e.add_argument("--device", default="auto", help="where learned metrics run: auto (default), cpu or cuda[:N]")
    e.add_argument("--out", default="outputs/eval/report", help="writes OUT.json, OUT.md and OUT.png "
                   "(default outputs/eval/report)")
    e.add_argument("-q", "--quiet", action="store_true", help="no progress bars or info logs")


def run(args: argparse.Namespace) -> int:
    from swifti2v.media import load_image
    from swifti2v.outputs import check_report

    check_report(Path(args.out), (".json", ".md", ".png"))
    load_image(args.image)  # a user error before the heavy imports
    for name in ("cv2", "matplotlib"):
        try:
            __import__(name)
        except ImportError:
            raise UserError(f"`swifti2v eval` needs {name}: pip install -e '.[eval]'") from None
    quiet_libraries()
    from swifti2v.eval.report import EvalConfig, plot, run_eval, to_markdown

    cfg = EvalConfig(videos=tuple(args.videos), image=args.image, truth=args.truth, prompt=args.prompt,
                     segment_frames=args.segment_frames, low_res=args.low_res, weights=args.weights,
                     joins=None if args.joins is None else int_list("--joins", args.joins),
                     device=args.device)
    out = Path(args.out)
    result = run_eval(cfg, out, progress(args))
    out.parent.mkdir(parents=True, exist_ok=True)
    plot(result, out.with_suffix(".png"))
    write_result(args.out, result, to_markdown(result, out.with_suffix(".png").name))
    print(f"wrote {out.with_suffix('.json')}, {out.with_suffix('.md')} and {out.with_suffix('.png')}")
    return 0
