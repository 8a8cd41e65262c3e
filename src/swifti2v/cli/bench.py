"""`swifti2v bench fidelity | scaling | cost | gpu | serve`: benchmarks, side by side in one run."""

from __future__ import annotations

import argparse
import json

from swifti2v.cli.common import Parser, int_list, progress, quiet_libraries, write_result
from swifti2v.config import MEMORY_MODES, PARALLEL_KINDS

COMMANDS = ("bench",)


def add_parser(sub: argparse._SubParsersAction) -> None:
    b = sub.add_parser("bench", help="benchmarks: fidelity, scaling (CSG vs end-to-end), cost model, GPU, HTTP service")
    bsub = b.add_subparsers(dest="bench", required=True, parser_class=Parser)
    for add in (_fidelity_parser, _scaling_parser, _cost_parser, _gpu_parser, _serve_parser):
        add(bsub)


def _fidelity_parser(bsub: argparse._SubParsersAction) -> None:
    f = bsub.add_parser("fidelity", help="PSNR/SSIM/seams of Stage II vs ground truth, with ablations, side by side",
                        description="Held-out procedural camera clips with ground truth (seeds and photographs "
                        "training never sees): bicubic, oracle warp, Stage II with CSG at several step counts, "
                        "without the anchor, end-to-end, N=0, on Stage I output, and the model trained without "
                        "stage-transition conditions; plus Stage I's motion-direction accuracy. Writes a markdown "
                        "table and JSON.")
    f.add_argument("--preset", default="tiny", help="models to measure (default tiny)")
    f.add_argument("--clips", type=int, default=4, help="held-out procedural camera clips (default 4)")
    f.add_argument("--photo-clips", type=int, default=4,
                   help="held-out camera clips over held-out photographs (default 4)")
    f.add_argument("--direction-clips", type=int, default=24, help="held-out pan clips for Stage I (default 24)")
    f.add_argument("--height", type=int, default=288, help="clip height (default 288)")
    f.add_argument("--width", type=int, default=512, help="clip width (default 512)")
    f.add_argument("--frames", type=int, default=33, help="clip length, 4k+1 (default 33)")
    f.add_argument("--steps", default="1,2", help="Stage II step counts to compare, comma-separated (default 1,2)")
    f.add_argument("--ablation-model", default=None, help="Stage II trained without stage-transition conditions, "
                   "e.g. outputs/tiny/stage2-no-transition/final from recipes/tiny/train.sh (default: row left out)")
    f.add_argument("--save-videos", metavar="DIR", help="also write the first photo clip's rows as mp4 into DIR, "
                   "with its truth, input image and caption (for `swifti2v eval`)")
    f.add_argument("--out", default="outputs/bench/fidelity", help="writes OUT.json and OUT.md")
    f.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def _scaling_parser(bsub: argparse._SubParsersAction) -> None:
    s = bsub.add_parser("scaling", help="wall time and peak memory of CSG vs --no-csg as the clip grows",
                        description="Runs `swifti2v generate` in a fresh process per measurement, CSG (M=3, N=1) "
                        "and end-to-end interleaved at each length, and writes JSON, a markdown table and a PNG plot.")
    s.add_argument("--preset", help="models and size (default bench-cpu: random weights, attention and MLPs "
                   "dominate as at full size; with --long or --tiles: tiny, the trained default)")
    s.add_argument("--long", action="store_true", help="clips past Stage I's window instead: --extend last-frame "
                   "vs context at each length, wall per frame and Stage I's and Stage II's peaks against the "
                   "shortest run's")
    s.add_argument("--tiles", type=int, default=0, metavar="PX", help="Stage II in spatial tiles of PX pixels "
                   "(--stage2-tile) vs whole frames at each length, instead of CSG vs end-to-end")
    s.add_argument("--frames", default="33,65,129,257", help="clip lengths, 4k+1, comma-separated "
                   "(default 33,65,129,257)")
    s.add_argument("--repeats", type=int, default=1, help="runs per length and mode; medians are reported (default 1)")
    s.add_argument("--device", default="auto", help="auto (default), cpu or cuda[:N]")
    s.add_argument("--out", default="outputs/bench/scaling", help="writes OUT.json, OUT.md and OUT.png")
    s.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def _cost_parser(bsub: argparse._SubParsersAction) -> None:
    c = bsub.add_parser("cost", help="FLOPs, memory and predicted seconds per stage, from the model configs alone",
                        description="Counts every DiT call of a run (closed-form FLOPs from the config; activations "
                        "traced on the meta device), the VAEs, weights per memory mode, for CSG, end-to-end Stage II "
                        "and an end-to-end baseline (the Stage I model at the target size, 50 steps, CFG). Needs "
                        "no weights and no GPU; seconds are a prediction.")
    c.add_argument("--preset", default="wan-2k-refine", help="the run to cost (default wan-2k-refine)")
    c.add_argument("--frames", default=None, help="clip lengths, 4k+1, comma-separated (default: the preset's)")
    c.add_argument("--peak-tflops", type=float, default=790.0,
                   help="accelerator dense bf16 TFLOP/s (default 790, an H200 as measured)")
    c.add_argument("--efficiency", type=float, default=0.45,
                   help="share of the peak assumed sustained, for the predicted seconds (default 0.45)")
    c.add_argument("--gpus", default=None, help="also predict one clip on K GPUs with context parallelism, "
                   "comma-separated K (e.g. 1,2,4,8): time per stage, communication per window, per-GPU memory")
    c.add_argument("--parallel", default="ulysses", choices=PARALLEL_KINDS,
                   help="context-parallel kind for --gpus (default ulysses)")
    c.add_argument("--link-gbps", type=float, default=450.0,
                   help="GB/s each GPU sends over its links, for --gpus (default 450: NVLink 4; ~50 for "
                   "400 Gb/s InfiniBand between nodes)")
    c.add_argument("--quant", default=None, metavar="Q[,Q...]",
                   help="also compare the DiTs stored as each of these, e.g. none,int8,fp8,Q8_0,Q6_K,Q5_K,Q4_K: "
                   "weights, the peak per memory mode and predicted seconds")
    c.add_argument("--json", action="store_true", help="print JSON instead of markdown")
    c.add_argument("--out", default=None, help="also write OUT.json and OUT.md")
    c.add_argument("-q", "--quiet", action="store_true", help="no info logs")


def _gpu_parser(bsub: argparse._SubParsersAction) -> None:
    g = bsub.add_parser("gpu", help="the 2K run on a CUDA GPU with full-size random-weight models, per memory mode",
                        description="Stage I 14B at 640x352x81 (4 steps), hybrid reference, Stage II 5B CSG at "
                        "2560x1408x81, 2K decode and mp4, through `generate`, for each memory mode; then end-to-end "
                        "Stage II as far as memory allows and the installed attention backends against SDPA. "
                        "Weights are random: time and memory do not depend on them.")
    g.add_argument("--modes", default=",".join(MEMORY_MODES), help="memory modes to run (default all)")
    g.add_argument("--scale", choices=("full", "debug"), default="full",
                   help="full: Wan 14B + 5B at 2K (needs CUDA); debug: debug-random sizes, any device")
    g.add_argument("--quant", default="none", metavar="Q[,Q...]",
                   help="run each memory mode with the DiTs stored each way: none,int8,fp8 (torchao, in-process; "
                   "fp8 needs an fp8 GPU); default none")
    g.add_argument("--no-end-to-end", action="store_true", help="skip the end-to-end Stage II run")
    g.add_argument("--compile", action="store_true", help="torch.compile the DiT blocks")
    g.add_argument("--device", default="auto", help="auto (default), cpu or cuda[:N]")
    g.add_argument("--out", default="outputs/bench/gpu", help="writes OUT.json and OUT.md")
    g.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def _serve_parser(bsub: argparse._SubParsersAction) -> None:
    s = bsub.add_parser("serve", help="the HTTP service answering status requests while it runs a job",
                        description="Starts `swifti2v serve` (one worker), runs the same job with no load and while "
                        "this process sends --rate GET /v1/jobs/ID per second (open loop) for at least --seconds and "
                        "until the job ends: failures, latency percentiles, the job's wall time loaded over unloaded. "
                        "Needs the `serve` extra.")
    s.add_argument("--image", default="examples/input.jpg", help="the job's image (default examples/input.jpg)")
    s.add_argument("--prompt", default="the camera pans left over the hills", help="the job's prompt")
    s.add_argument("--preset", default="tiny", help="the server's preset (default tiny: the README's default job)")
    s.add_argument("--frames", type=int, help="the job's frame count (default: the preset's)")
    s.add_argument("--height", type=int, help="the job's height (default: the preset's)")
    s.add_argument("--width", type=int, help="the job's width (default: the preset's)")
    s.add_argument("--rate", type=float, default=200.0, help="status requests per second (default 200)")
    s.add_argument("--seconds", type=float, default=30.0, help="load at least this long (default 30)")
    s.add_argument("--out", default="outputs/bench/serve", help="writes OUT.json and OUT.md")
    s.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    quiet_libraries()
    return {"fidelity": _fidelity, "scaling": _scaling, "cost": _cost, "gpu": _gpu, "serve": _serve}[args.bench](args)


def _serve(args: argparse.Namespace) -> int:
    from pathlib import Path

    from swifti2v.bench.serve import ServeLoadConfig, run_serve_load, to_markdown

    options = tuple((k, getattr(args, k)) for k in ("frames", "height", "width") if getattr(args, k) is not None)
    cfg = ServeLoadConfig(image=Path(args.image), prompt=args.prompt, preset=args.preset, options=options,
                          rate=args.rate, seconds=args.seconds)
    result = run_serve_load(cfg, progress(args))
    out = write_result(args.out, result, to_markdown(result))
    print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.md')}")
    return 0


def _fidelity(args: argparse.Namespace) -> int:
    from swifti2v.bench.fidelity import FidelityConfig, run_fidelity, to_markdown

    cfg = FidelityConfig(preset=args.preset, clips=args.clips, photo_clips=args.photo_clips,
                         direction_clips=args.direction_clips, height=args.height, width=args.width,
                         frames=args.frames, steps=int_list("--steps", args.steps),
                         ablation_model=args.ablation_model, save_videos=args.save_videos)
    result = run_fidelity(cfg, progress(args))
    out = write_result(args.out, result, to_markdown(result))
    print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.md')} ({result['seconds']}s)")
    return 0


def _gpu(args: argparse.Namespace) -> int:
    from swifti2v.bench.gpu import GpuBenchConfig, run_gpu_bench, to_markdown

    cfg = GpuBenchConfig(scale=args.scale, modes=tuple(args.modes.split(",")), end_to_end=not args.no_end_to_end,
                         device=args.device, compile=args.compile, quants=tuple(args.quant.split(",")))
    result = run_gpu_bench(cfg, progress(args))
    out = write_result(args.out, result, to_markdown(result))
    print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.md')}")
    return 0


def _cost(args: argparse.Namespace) -> int:
    from swifti2v.bench.cost import CostConfig, run_cost, to_markdown

    frames = (None,) if args.frames is None else int_list("--frames", args.frames)
    gpus = () if args.gpus is None else int_list("--gpus", args.gpus)
    quants = () if args.quant is None else tuple(q.strip() for q in args.quant.split(",") if q.strip())
    results = [run_cost(CostConfig(preset=args.preset, frames=f, peak_tflops=args.peak_tflops,
                                   efficiency=args.efficiency, gpus=gpus, parallel=args.parallel,
                                   link_gbps=args.link_gbps, quants=quants)) for f in frames]
    table = "\n".join(to_markdown(r) for r in results)
    if args.out:
        write_result(args.out, results, table, show=False)
    print(json.dumps(results, indent=2) if args.json else table, end="\n" if args.json else "")
    return 0


def _scaling(args: argparse.Namespace) -> int:
    from swifti2v.bench.scaling import ScalingConfig, plot, run_scaling, to_markdown

    cfg = ScalingConfig(preset=args.preset or ("tiny" if args.long or args.tiles else "bench-cpu"), long=args.long,
                        tiles=args.tiles, frames=int_list("--frames", args.frames), repeats=args.repeats,
                        device=args.device)
    result = run_scaling(cfg, progress(args))
    out = write_result(args.out, result, to_markdown(result))
    plot(result, out.with_suffix(".png"))
    print(f"wrote {out.with_suffix('.json')}, {out.with_suffix('.md')} and {out.with_suffix('.png')}")
    return 0


