"""`swifti2v` — generate, refine, plan, presets. User errors: one line on stderr, exit code 2."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from swifti2v.config import ATTENTION_BACKENDS, MEMORY_MODES, PARALLEL_KINDS, SAMPLERS, STAGE2_MODES, RunConfig
from swifti2v.errors import UserError
from swifti2v.media import DEFAULT_FPS
from swifti2v.outputs import DEFAULT_CRF, Output, check_paths, check_report
from swifti2v.presets import DEFAULT_PRESET, OVERRIDES, PRESETS, check_weights, get_preset, with_overrides

EXIT_USER_ERROR = 2


def one_line(message: str) -> str:
    """The message with its line breaks escaped, whatever a path or an argument holds."""
    return message.replace("\n", "\\n").replace("\r", "\\r")


class Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, no usage dump
        self.exit(EXIT_USER_ERROR, f"swifti2v: error: {one_line(message)} (see `{self.prog} --help`)\n")


def _video_options(p: argparse.ArgumentParser, frames_help: str) -> None:
    g = p.add_argument_group("video")
    g.add_argument("--preset", default=DEFAULT_PRESET,
                   help=f"named settings (default {DEFAULT_PRESET}); list them with `swifti2v presets`")
    g.add_argument("--height", type=int, help="output height in pixels, a multiple of 32 (default: preset's)")
    g.add_argument("--width", type=int, help="output width in pixels, a multiple of 32 (default: preset's)")
    g.add_argument("--frames", type=int, help=frames_help)
    g.add_argument("--segment-blocks", type=int, metavar="M",
                   help="CSG: noisy latent blocks denoised per segment (default 3); larger than the clip = one window")
    g.add_argument("--neighbor-blocks", type=int, metavar="N",
                   help="CSG: previously generated blocks kept as clean context (default 1)")
    g.add_argument("--no-csg", action="store_true",
                   help="run Stage II over the whole clip in one window (the end-to-end baseline)")


def _run_options(p: argparse.ArgumentParser, batch: bool = False) -> None:
    g = p.add_argument_group("Stage II")
    g.add_argument("--mode", choices=STAGE2_MODES,
                   help="concat: trained refiner (2x input channels); refine: stock TI2V-5B, zero-shot")
    g.add_argument("--stage2", metavar="PATH",
                   help="trained concat checkpoint (a diffusers transformer folder with config.json + safetensors)")
    g.add_argument("--stage2-steps", type=int, help="Stage II denoising steps (default: preset's)")
    g.add_argument("--stage2-sampler", choices=SAMPLERS, help="Stage II solver step (default: preset's)")
    g.add_argument("--start-sigma", type=float,
                   help="noise level Stage II starts from, in (0, 1]; below 1 re-noises z_ref (refine mode)")
    o = p.add_argument_group("output and run")
    if not batch:
        o.add_argument("--out", required=True,
                       help="output .mp4 path; a .json with settings and timings is written beside it (checked "
                       "before anything loads)")
    o.add_argument("--crf", type=int, default=DEFAULT_CRF, help=f"H.264 quality, 0 (lossless) to 51 (default "
                   f"{DEFAULT_CRF}, visually lossless; +6 about halves the file)")
    if not batch:
        o.add_argument("--png-dir", metavar="DIR", help="also write every frame as a lossless PNG into DIR "
                       "(frame_00000.png, ...; replaced as a whole when complete)")
    o.add_argument("--fps", type=int, help=f"frame rate of the mp4 (default: preset's, {DEFAULT_FPS} for Wan presets)")
    o.add_argument("--seed", type=int, help="random seed (default 0); the same seed gives the same video")
    o.add_argument("--device", help="auto (default), cpu or cuda[:N]")
    o.add_argument("--dtype", choices=("auto", "bf16", "fp16", "fp32"),
                   help="DiT compute dtype (auto: bf16 on GPU, fp32 on CPU)")
    o.add_argument("--memory-mode", choices=("auto", *MEMORY_MODES),
                   help="auto (default): the fastest mode whose predicted peak fits the free GPU memory (balanced on "
                   "CPU); fast: everything on the GPU; balanced: text encoder on CPU, one stage on the GPU "
                   "at a time, tiled decode; low: + fp8 weights, Stage I streamed block by block, tile-by-tile "
                   "decode at the end (2K on 24 GB cards); see docs/benchmarks.md")
    o.add_argument("--attention", choices=ATTENTION_BACKENDS,
                   help="attention kernel: sdpa (default, PyTorch), flash, flash3, sage, flex (when installed)")
    o.add_argument("--compile", action="store_true", default=None,
                   help="torch.compile the DiT blocks (one graph for every CSG window; pays off on long runs)")
    o.add_argument("-q", "--quiet", action="store_true", help="no progress bars or info logs")
    if batch:
        return
    o.add_argument("--parallel", choices=PARALLEL_KINDS, help="split every DiT call of this one clip over the "
                   "processes of `torchrun --nproc_per_node K -m swifti2v generate ...` by sequence: ulysses "
                   "(all-to-all over attention heads; K must divide the head count) or ring (K/V passed around; "
                   "needs --attention flash or sage). Rank 0 writes the video and JSON")
    w = p.add_argument_group("resuming")
    w.add_argument("--work-dir", metavar="DIR", help="where finished stages and segments are kept while the run goes "
                   "(default: .OUT.work beside the output); re-running the same command resumes from it")
    w.add_argument("--restart", action="store_true",
                   help="discard a work directory left by a different config or input instead of refusing")
    w.add_argument("--keep-work", action="store_true", help="keep the work directory after success")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="swifti2v", description="Efficient high-resolution image-to-video (SwiftI2V): low-res "
                    "motion with a large Wan I2V model, then 2K detail segment by segment.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    g = sub.add_parser("generate", help="image + prompt -> video", description="Image + prompt -> video. "
                       "The image is EXIF-rotated, scaled to cover the target size and centre-cropped.")
    g.add_argument("--image", required=True, help="input image (any size or aspect; resized and centre-cropped)")
    g.add_argument("--prompt", required=True, help="what happens in the clip")
    _video_options(g, "frame count, 4k+1 (default: preset's, 81 for the Wan presets)")
    g1 = g.add_argument_group("Stage I")
    g1.add_argument("--stage1-steps", type=int, help="Stage I steps (default 4, LightX2V few-step)")
    g1.add_argument("--lora", action="append", metavar="[high=|low=]PATH[@STRENGTH]",
                    help="add a Stage I LoRA, fused after the preset's (repeatable, applied in order): a .safetensors "
                    "file or 'hub_repo:file.safetensors', @STRENGTH to scale it (default 1), high= / low= for one "
                    "expert of a Wan2.2 A14B pair (default: every expert); 'none' drops the LoRAs before it, the "
                    "preset's included. The paper's Stage I: the preset's few-step LoRA + --lora lowres.safetensors")
    g1.add_argument("--lora-strength", type=float, help=argparse.SUPPRESS)  # replaced by PATH@STRENGTH
    _run_options(g)

    r = sub.add_parser("refine", help="Stage II alone: your low-res video + the high-res image -> video",
                       description="Bring your own motion: a low-res video (any source) is upsampled, its first "
                       "frame replaced by the high-res image, and Stage II adds the detail.")
    r.add_argument("--image", required=True, help="high-resolution first frame")
    r.add_argument("--motion", required=True, help="low-resolution video giving the motion (mp4/mov/webm)")
    r.add_argument("--prompt", default="", help="optional description of the clip (default: empty)")
    _video_options(r, "frame count, 4k+1 (default: the longest 4k+1 prefix of --motion)")
    _run_options(r)

    pl = sub.add_parser("plan", help="segment plan and token counts for a preset (no weights needed)")
    _video_options(pl, "frame count, 4k+1 (default: preset's)")
    pl.add_argument("--json", action="store_true", help="print JSON (default: a short table)")

    sub.add_parser("presets", help="list presets, one line each")
    b = sub.add_parser("batch", help="many generations from a JSONL file: resumable, retried, across processes",
                       description="One job per line: {\"image\": ..., \"prompt\": ..., \"name\": \"out.mp4\", "
                       "and any generate option by name, e.g. \"frames\": 81, \"seed\": 3}. Finished jobs are "
                       "skipped on a re-run, failed ones retried; a bad job never stops the others. Across processes "
                       "or GPUs: `torchrun --nproc_per_node K -m swifti2v batch ...` (each rank takes every K-th job; "
                       "rank 0 writes OUT_DIR/summary.json).")
    b.add_argument("jobs", help="the jobs file (.jsonl); image paths are relative to it")
    b.add_argument("--out-dir", required=True, help="outputs, status/ and summary.json go here (and only here)")
    b.add_argument("--retries", type=int, default=2, help="extra attempts for a failing job, over all runs (default 2)")
    b.add_argument("--pipeline", action="store_true",
                   help="under torchrun with an even number of processes: pair them, one runs Stage I (+ hybrid "
                   "reference) of job k+1 while its partner runs Stage II of job k (at most one finished Stage I "
                   "waiting); summary.json gives each stage's utilisation")
    _video_options(b, "frame count, 4k+1 (default: preset's)")
    _run_options(b, batch=True)
    u = sub.add_parser("ui", help="web UI in the browser (Gradio; needs the `ui` extra)",
                       description="A web UI over the same pipeline: upload, prompt, settings, progress per stage "
                       "and segment, cancel, a queue (one generation at a time), results with a bicubic-vs-final "
                       "detail crop, downloads and a gallery. Every file goes under --out-dir.")
    u.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only; "
                   "anything else is reachable by others, so use --auth)")
    u.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    u.add_argument("--preset", default=DEFAULT_PRESET, help=f"preset selected at start (default {DEFAULT_PRESET})")
    u.add_argument("--out-dir", default="outputs/ui", help="where the UI writes videos, JSON and thumbnails "
                   "(default outputs/ui)")
    u.add_argument("--auth", metavar="USER:PASS", help="require this login")
    u.add_argument("--max-upload-mb", type=int, default=50, help="largest upload accepted, in MB (default 50)")
    u.add_argument("-q", "--quiet", action="store_true", help="no info logs")
    _eval_parser(sub)
    _bench_parsers(sub)
    _train_parsers(sub)
    return parser


def _eval_parser(sub) -> None:
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
    e.add_argument("--low-res", default="4", help="the low-res clip Stage II started from: a factor per side "
                   "(default 4) or its size, e.g. 640x352; sets the band detail retention measures")
    e.add_argument("--weights", metavar="DIR", help="local weights of the learned metrics (nothing is downloaded; "
                   "a metric whose files are missing is skipped with one line naming them, see docs/results.md)")
    e.add_argument("--device", default="auto", help="where learned metrics run: auto (default), cpu or cuda[:N]")
    e.add_argument("--out", default="outputs/eval/report", help="writes OUT.json, OUT.md and OUT.png "
                   "(default outputs/eval/report)")
    e.add_argument("-q", "--quiet", action="store_true", help="no progress bars or info logs")


def _train_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE", help="training config (.toml or .json); every field has a default, "
                   "see docs/training.md")
    p.add_argument("--data", metavar="DIR", help="folder of videos with metadata.jsonl or metadata.csv "
                   "(file, caption) [data.folder]")
    p.add_argument("--cache", metavar="DIR", help="latent cache folder (written by prepare-data) [data.cache]")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config field, e.g. --set optim.lr=5e-5 --set condition.kind=degrade "
                   "(value parsed as JSON, else a string); repeatable")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars or info logs")


def _train_parsers(sub) -> None:
    t = sub.add_parser("train", help="train the Stage II concat refiner or a Stage I low-res LoRA",
                       description="Training on accelerate. Single process: `swifti2v train ...`; several "
                       "processes/GPUs: `accelerate launch [--num_processes K] -m swifti2v train ...`.")
    tsub = t.add_subparsers(dest="task", required=True, parser_class=Parser)
    helps = {"stage2": "the concat Stage II refiner on CSG windows with stage-transition conditions; exports a "
                       "folder for `generate --stage2`",
             "stage1": "every weight of the Stage I I2V model at the Stage I size (the tiny models); exports a "
                       "transformer folder",
             "stage1-lora": "a LoRA on the Stage I I2V model at the Stage I size; exports a file for "
                            "`generate --lora`"}
    for task, text in helps.items():
        p = tsub.add_parser(task, help=text, description=text)
        _train_options(p)
        p.add_argument("--output-dir", metavar="DIR", help="run folder: checkpoints/, final/, metrics.jsonl, "
                       "logs/ [output_dir]")
        p.add_argument("--max-steps", type=int, metavar="N", help="optimizer steps to train for [max_steps]")
        p.add_argument("--resume", action="store_true",
                       help="continue from the newest checkpoint in --output-dir at the same step and data order")
    pd = sub.add_parser("prepare-data", help="encode a video folder into the latent cache for stage2 training",
                        description="Encode every clip once: Stage II latents, stage-transition z_ref and the "
                        "text embedding, to per-clip safetensors. Resumable; `accelerate launch -m swifti2v "
                        "prepare-data ...` splits the clips over processes.")
    _train_options(pd)


def _train_config(args: argparse.Namespace):
    from swifti2v.training.config import load_train_config

    flags = {"data.folder": args.data, "data.cache": args.cache, "task": getattr(args, "task", None),
             "output_dir": getattr(args, "output_dir", None), "max_steps": getattr(args, "max_steps", None)}
    return load_train_config(args.config, args.set, flags)


def _bench_parsers(sub) -> None:
    b = sub.add_parser("bench", help="benchmarks: fidelity, scaling (CSG vs end-to-end), cost model, GPU")
    bsub = b.add_subparsers(dest="bench", required=True, parser_class=Parser)
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

    s = bsub.add_parser("scaling", help="wall time and peak memory of CSG vs --no-csg as the clip grows",
                        description="Runs `swifti2v generate` in a fresh process per measurement, CSG (M=3, N=1) "
                        "and end-to-end interleaved at each length, and writes JSON, a markdown table and a PNG plot.")
    s.add_argument("--preset", default="bench-cpu", help="models and size (default bench-cpu: random weights, "
                   "attention and MLPs dominate as at full size)")
    s.add_argument("--frames", default="33,65,129,257", help="clip lengths, 4k+1, comma-separated "
                   "(default 33,65,129,257)")
    s.add_argument("--repeats", type=int, default=1, help="runs per length and mode; medians are reported (default 1)")
    s.add_argument("--device", default="auto", help="auto (default), cpu or cuda[:N]")
    s.add_argument("--out", default="outputs/bench/scaling", help="writes OUT.json, OUT.md and OUT.png")
    s.add_argument("-q", "--quiet", action="store_true", help="no progress bars")

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
    c.add_argument("--json", action="store_true", help="print JSON instead of markdown")
    c.add_argument("--out", default=None, help="also write OUT.json and OUT.md")
    c.add_argument("-q", "--quiet", action="store_true", help="no info logs")

    g = bsub.add_parser("gpu", help="the 2K run on a CUDA GPU with full-size random-weight models, per memory mode",
                        description="Stage I 14B at 640x352x81 (4 steps), hybrid reference, Stage II 5B CSG at "
                        "2560x1408x81, 2K decode and mp4, through `generate`, for each memory mode; then end-to-end "
                        "Stage II as far as memory allows and the installed attention backends against SDPA. "
                        "Weights are random: time and memory do not depend on them.")
    g.add_argument("--modes", default=",".join(MEMORY_MODES), help="memory modes to run (default all)")
    g.add_argument("--scale", choices=("full", "debug"), default="full",
                   help="full: Wan 14B + 5B at 2K (needs CUDA); debug: debug-random sizes, any device")
    g.add_argument("--no-end-to-end", action="store_true", help="skip the end-to-end Stage II run")
    g.add_argument("--compile", action="store_true", help="torch.compile the DiT blocks")
    g.add_argument("--device", default="auto", help="auto (default), cpu or cuda[:N]")
    g.add_argument("--out", default="outputs/bench/gpu", help="writes OUT.json and OUT.md")
    g.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def _int_list(flag: str, text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(x) for x in text.split(","))
    except ValueError:
        raise UserError(f"{flag} {text!r} must be comma-separated integers, e.g. 1,2,4") from None
    if not values or min(values) < 1:
        raise UserError(f"{flag} {text!r}: every value must be at least 1")
    return values


def _write_result(out_arg: str, result, table: str, show: bool = True) -> Path:
    """OUT.json and OUT.md (atomic), and the table on stdout."""
    from swifti2v.files import atomic_write_json, atomic_write_text

    out = Path(out_arg)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out.with_suffix(".json"), result)
    atomic_write_text(out.with_suffix(".md"), table)
    if show:
        print(table, end="")
    return out


def _run_bench(args: argparse.Namespace, progress) -> int:
    if args.bench == "scaling":
        return _run_scaling(args, progress)
    if args.bench == "cost":
        return _run_cost(args)
    if args.bench == "gpu":
        return _run_gpu(args, progress)
    from swifti2v.bench.fidelity import FidelityConfig, run_fidelity, to_markdown

    steps = _int_list("--steps", args.steps)
    if min(args.clips, args.photo_clips, args.direction_clips) < 0 or args.clips + args.photo_clips < 1:
        raise UserError("--clips, --photo-clips and --direction-clips must be >= 0, with at least one clip")
    cfg = FidelityConfig(preset=args.preset, clips=args.clips, photo_clips=args.photo_clips,
                         direction_clips=args.direction_clips, height=args.height, width=args.width,
                         frames=args.frames, steps=steps, ablation_model=args.ablation_model,
                         save_videos=args.save_videos)
    result = run_fidelity(cfg, progress)
    out = _write_result(args.out, result, to_markdown(result))
    print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.md')} ({result['seconds']}s)")
    return 0


def _run_eval(args: argparse.Namespace, progress) -> int:
    from swifti2v.media import load_image

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
                     device=args.device)
    out = Path(args.out)
    result = run_eval(cfg, out, progress)
    out.parent.mkdir(parents=True, exist_ok=True)
    plot(result, out.with_suffix(".png"))
    _write_result(args.out, result, to_markdown(result, out.with_suffix(".png").name))
    print(f"wrote {out.with_suffix('.json')}, {out.with_suffix('.md')} and {out.with_suffix('.png')}")
    return 0


def _run_gpu(args: argparse.Namespace, progress) -> int:
    from swifti2v.bench.gpu import GpuBenchConfig, run_gpu_bench, to_markdown

    modes = tuple(args.modes.split(","))
    unknown = [m for m in modes if m not in MEMORY_MODES]
    if unknown:
        raise UserError(f"--modes {','.join(unknown)} unknown; use some of {','.join(MEMORY_MODES)}")
    result = run_gpu_bench(GpuBenchConfig(scale=args.scale, modes=modes, end_to_end=not args.no_end_to_end,
                                          device=args.device, compile=args.compile), progress)
    out = _write_result(args.out, result, to_markdown(result))
    print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.md')}")
    return 0


def _run_cost(args: argparse.Namespace) -> int:
    from swifti2v.bench.cost import CostConfig, run_cost, to_markdown

    frames = (None,) if args.frames is None else _int_list("--frames", args.frames)
    if args.peak_tflops <= 0 or not 0 < args.efficiency <= 1:
        raise UserError("--peak-tflops must be positive and --efficiency in (0, 1]")
    if args.link_gbps <= 0:
        raise UserError(f"--link-gbps {args.link_gbps} must be positive (GB/s per GPU)")
    gpus = () if args.gpus is None else _int_list("--gpus", args.gpus)
    results = [run_cost(CostConfig(preset=args.preset, frames=f, peak_tflops=args.peak_tflops,
                                   efficiency=args.efficiency, gpus=gpus, parallel=args.parallel,
                                   link_gbps=args.link_gbps)) for f in frames]
    table = "\n".join(to_markdown(r) for r in results)
    if args.out:
        _write_result(args.out, results, table, show=False)
    print(json.dumps(results, indent=2) if args.json else table, end="\n" if args.json else "")
    return 0


def _run_scaling(args: argparse.Namespace, progress) -> int:
    from swifti2v.bench.scaling import ScalingConfig, plot, run_scaling, to_markdown
    from swifti2v.config import _nearest_4k1

    frames = _int_list("--frames", args.frames)
    for f in frames:
        if f < 5 or (f - 1) % 4:
            raise UserError(f"--frames value {f} is not 4k+1; use {_nearest_4k1(max(f, 5))}")
    if args.repeats < 1:
        raise UserError(f"--repeats {args.repeats} must be at least 1")
    get_preset(args.preset)  # an unknown preset fails here, not in the first child process
    result = run_scaling(ScalingConfig(preset=args.preset, frames=frames, repeats=args.repeats,
                                       device=args.device), progress)
    out = _write_result(args.out, result, to_markdown(result))
    plot(result, out.with_suffix(".png"))
    print(f"wrote {out.with_suffix('.json')}, {out.with_suffix('.md')} and {out.with_suffix('.png')}")
    return 0


def _run_training(args: argparse.Namespace, progress) -> int:
    cfg = _train_config(args)
    quiet_libraries()
    if args.command == "prepare-data":
        from swifti2v.training.prepare import prepare_data

        info = prepare_data(cfg, progress)
        print(f"cached {info['encoded']} clips in {cfg.data.cache} ({info['seconds']}s)")
        return 0
    from swifti2v.training.engine import train

    info = train(cfg, resume=args.resume, progress=progress)
    if os.environ.get("RANK", "0") == "0":
        print(f"trained {info['steps']} steps, final loss {info['final_loss']:.4f}; wrote {info['export']}")
    return 0


def resolve_config(args: argparse.Namespace) -> RunConfig:
    """The preset with the command line's overrides applied."""
    if getattr(args, "lora_strength", None) is not None:
        raise UserError(f"--lora-strength is gone: give each LoRA its strength, --lora PATH@{args.lora_strength:g}")
    cfg = with_overrides(get_preset(args.preset), **{name: getattr(args, name, None) for name in OVERRIDES})
    if args.command in ("generate", "refine", "batch"):
        check_weights(cfg)
    return cfg


class TqdmProgress:
    """One bar per stage / segment, created on first use and closed when done."""

    def __init__(self, enabled: bool):
        self.enabled, self.bars = enabled, {}

    def __call__(self, name: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        from tqdm.auto import tqdm

        bar = self.bars.get(name)
        if bar is None:
            bar = self.bars[name] = tqdm(total=total, desc=name, leave=name.startswith("stage"), unit="step"
                                         if "step" in name or "/" in name else "seg")
        bar.update(done - bar.n)
        if done >= total > 0:
            bar.close()
            self.bars.pop(name)


def _run_batch(args: argparse.Namespace, progress) -> int:
    from swifti2v.cli.batch import run_batch

    if args.retries < 0:
        raise UserError(f"--retries {args.retries} must be 0 or more")
    args.lora = getattr(args, "lora", None)
    summary = run_batch(args, progress)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"{summary['done']}/{summary['jobs']} jobs done, {summary['failed']} failed"
              + (f", {summary['pending']} pending (a process died; re-run the same command)"
                 if summary.get("lost_processes") else "")
              + "".join(f"\n  {job}: {error}" for job, error in summary["failures"].items()))
    if summary.get("lost_processes"):
        return 1
    return 0 if summary["failed"] == 0 else EXIT_USER_ERROR


def torch_oom() -> type[Exception]:
    import torch

    return torch.OutOfMemoryError


def oom_advice(cfg: RunConfig) -> str:
    """Out of memory: what would fit, and that finished work is kept for the re-run."""
    lighter = {"fast": "--memory-mode balanced (or low)", "balanced": "--memory-mode low",
               "auto": "--memory-mode low"}.get(cfg.memory_mode)
    fix = (f"re-run with {lighter}" if lighter else
           "lower --segment-blocks, --height/--width or --frames, or use a GPU with more memory")
    return (f"out of GPU memory in --memory-mode {cfg.memory_mode}; {fix} (2K fits a 24 GB card in low). "
            "Finished stages and segments are kept: the same command resumes")


def _print_plan(info: dict) -> None:
    v = info["video"]
    print(f"{info['preset']}: {v['width']}x{v['height']}x{v['frames']}, {info['blocks']} latent blocks, "
          f"{info['num_segments']} segments, {info['tokens_per_block']} tokens/block")
    print(f"largest window {info['largest_window_tokens']} tokens; whole clip {info['whole_clip_tokens']} tokens")
    for seg in info["segments"]:
        print(f"  segment {seg['index']}: blocks {seg['blocks']} neighbors {seg['neighbors']} "
              f"positions {seg['positions']} ({seg['tokens']} tokens)")


def run(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "presets":
        for name, (text, _) in PRESETS.items():
            print(f"{name:15s} {text}")
        return 0
    from swifti2v.config import validate
    from swifti2v.plan import describe_plan

    if args.command == "plan":
        info = describe_plan(validate(resolve_config(args)))
        print(json.dumps(info, indent=2)) if args.json else _print_plan(info)
        return 0
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("swifti2v").setLevel(logging.WARNING if args.quiet else logging.INFO)
    progress = TqdmProgress(enabled=not args.quiet)
    if args.command == "ui":
        return _run_ui(args)
    if args.command in ("train", "prepare-data"):
        return _run_training(args, progress)
    if args.command == "bench":
        quiet_libraries()
        return _run_bench(args, progress)
    if args.command == "eval":
        return _run_eval(args, progress)
    if args.command == "batch":
        quiet_libraries()
        return _run_batch(args, progress)
    return _run_one(args, progress)


def quiet_libraries() -> None:
    """Imported only once the command line has been checked (they take seconds): a typo fails at once."""
    import transformers  # its import-time notices (e.g. about torchvision) are not the user's concern

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()  # its per-load "Loading weights" bars
    import diffusers

    diffusers.utils.logging.disable_progress_bar()  # its "Loading checkpoint shards" bars (we show our own)


def _run_ui(args: argparse.Namespace) -> int:
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # nothing leaves the machine
    try:
        from swifti2v.ui import UIConfig, parse_auth, serve
    except ImportError as e:
        raise UserError(f"the web UI needs Gradio ({e.name} missing); pip install -e '.[ui]'") from None
    get_preset(args.preset)
    quiet_libraries()
    if not 0 < args.port < 65536 or args.max_upload_mb < 1:
        raise UserError(f"--port {args.port} must be 1..65535 and --max-upload-mb at least 1")
    serve(UIConfig(host=args.host, port=args.port, preset=args.preset, out_dir=Path(args.out_dir),
                   auth=parse_auth(args.auth), max_upload_mb=args.max_upload_mb))
    return 0


def _run_one(args: argparse.Namespace, progress) -> int:
    """`generate` / `refine` through the Python API."""
    from swifti2v.config import check_prompt, validate
    from swifti2v.media import load_image
    from swifti2v.workdir import WorkOptions

    cfg = validate(resolve_config(args))
    work = WorkOptions(Path(args.work_dir) if args.work_dir else None, args.restart, args.keep_work)
    outputs = dict(out=args.out, crf=args.crf, png_dir=args.png_dir, progress=progress, work=work, keep_frames=False)
    png_dir = None if args.png_dir is None else Path(args.png_dir)
    check_paths(Output(Path(args.out), args.crf, png_dir), work.path)  # before anything loads
    load_image(args.image)
    if args.command == "generate":
        check_prompt(args.prompt)
    quiet_libraries()
    from swifti2v.api import SwiftI2V
    try:
        if args.command == "generate":
            result = SwiftI2V(cfg).generate(args.image, args.prompt, **outputs)
        else:
            result = SwiftI2V(cfg, with_stage1=False).refine(args.image, args.motion, args.prompt,
                                                             frames=args.frames, **outputs)
    except torch_oom() as e:
        raise UserError(oom_advice(cfg)) from e
    finally:
        _end_process_group()
    if not args.quiet and int(os.environ.get("RANK", "0")) == 0:
        secs = ", ".join(f"{k} {t:.1f}s" for k, t in {"load": result.info["models_load_seconds"],
                                                       **result.info["seconds"]}.items())
        print(f"wrote {args.out} ({result.info['config']['video']['frames']} frames); {secs}")
    return 0


def _end_process_group() -> None:
    """A --parallel run's process group, closed when the command ends (however it ends)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def main(argv: list[str] | None = None) -> None:
    try:
        code = run(argv)
    except UserError as e:
        print(f"swifti2v: error: {one_line(str(e))}", file=sys.stderr)
        code = EXIT_USER_ERROR
    except BrokenPipeError:  # e.g. `swifti2v plan | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 0
    except KeyboardInterrupt:
        print("swifti2v: interrupted; no output was written under the final name", file=sys.stderr)
        code = 130
    except Exception as e:  # out of memory is a user-fixable condition, not a crash
        import torch

        if not isinstance(e, torch.OutOfMemoryError):
            raise
        print("swifti2v: error: out of GPU memory; lower --segment-blocks, --height/--width or --frames, "
              "or use a GPU with more memory", file=sys.stderr)
        code = EXIT_USER_ERROR
    sys.exit(code)
