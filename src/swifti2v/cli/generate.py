"""`swifti2v generate | refine | plan | presets`: one clip, Stage II alone, a segment plan, the presets."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from swifti2v.cli.common import is_rank0, progress, quiet_libraries, resolve_config, run_options, video_options
from swifti2v.presets import PRESETS

COMMANDS = ("generate", "refine", "plan", "presets")


def add_parser(sub: argparse._SubParsersAction) -> None:
    g = sub.add_parser("generate", help="image + prompt -> video", description="Image + prompt -> video. "
                       "The image is EXIF-rotated, scaled to cover the target size and centre-cropped.")
    g.add_argument("--image", required=True, help="input image (any size or aspect; resized and centre-cropped)")
    g.add_argument("--prompt", required=True, help="what happens in the clip")
    video_options(g, "frame count, 4k+1, any length >= 5 (default: preset's, 81 for the Wan presets; longer "
                     "than Stage I's window runs it in several windows, see --extend)")
    g1 = g.add_argument_group("Stage I")
    g1.add_argument("--stage1-steps", type=int, help="Stage I steps (default 4, LightX2V few-step)")
    g1.add_argument("--lora", action="append", metavar="[high=|low=]PATH[@STRENGTH]",
                    help="add a Stage I LoRA, fused after the preset's (repeatable, applied in order): a .safetensors "
                    "file or 'hub_repo:file.safetensors', @STRENGTH to scale it (default 1), high= / low= for one "
                    "expert of a Wan2.2 A14B pair (default: every expert); 'none' drops the LoRAs before it, the "
                    "preset's included. The paper's Stage I: the preset's few-step LoRA + --lora lowres.safetensors")
    g1.add_argument("--stage1-weights", action="append", metavar="[high=|low=]PATH.gguf",
                    help="a GGUF file of the Stage I DiT (e.g. wan2.1-i2v-14b-480p-Q4_K_M.gguf) in place of the "
                    "model folder's weights; for a Wan2.2 A14B pair give one per expert, high=... and low=.... "
                    "Kept quantized; LoRAs apply as unfused adapters")
    g1.add_argument("--lora-strength", type=float, help=argparse.SUPPRESS)  # replaced by PATH@STRENGTH
    g1.add_argument("--stage1-out", metavar="PATH", help="also write the low-res clip Stage I made (the motion "
                    "Stage II refined) as an mp4")
    run_options(g)

    r = sub.add_parser("refine", help="Stage II alone: your low-res video + the high-res image -> video",
                       description="Bring your own motion: a low-res video (any source) is upsampled, its first "
                       "frame replaced by the high-res image, and Stage II adds the detail.")
    r.add_argument("--image", required=True, help="high-resolution first frame")
    r.add_argument("--motion", required=True, help="low-resolution video giving the motion (mp4/mov/webm)")
    r.add_argument("--prompt", default="", help="optional description of the clip (default: empty)")
    video_options(r, "frame count, 4k+1 (default: the longest 4k+1 prefix of --motion)", stage1=False)
    run_options(r)

    pl = sub.add_parser("plan", help="segment plan and token counts for a preset (no weights needed)")
    video_options(pl, "frame count, 4k+1, any length >= 5 (default: preset's)")
    pl.add_argument("--stage2-tile", type=int, metavar="PX", help="Stage II's spatial tiles, as generate's")
    pl.add_argument("--json", action="store_true", help="print JSON (default: a short table)")

    sub.add_parser("presets", help="list presets, one line each")


def run(args: argparse.Namespace) -> int:
    if args.command == "presets":
        for name, (text, _) in PRESETS.items():
            print(f"{name:15s} {text}")
        return 0
    if args.command == "plan":
        from swifti2v.config import validate
        from swifti2v.plan import describe_plan

        info = describe_plan(validate(resolve_config(args)))
        print(json.dumps(info, indent=2)) if args.json else _print_plan(info)
        return 0
    return _run_one(args)


def _print_plan(info: dict) -> None:
    v = info["video"]
    print(f"{info['preset']}: {v['width']}x{v['height']}x{v['frames']}, {info['blocks']} latent blocks, "
          f"{info['num_segments']} segments, {info['tokens_per_block']} tokens/block")
    s1 = info["stage1"]
    how = {"last-frame": "each next one from the last frame", "context": "overlapping, denoised together"}
    joins = f"; joins before frames {s1['joins']}" if s1["joins"] else ""
    print(f"Stage I at {s1['width']}x{s1['height']}: {len(s1['windows'])} window(s) of {s1['windows']} frames "
          f"({how[s1['extend']]}{joins})")
    print(f"largest window {info['largest_window_tokens']} tokens; whole clip {info['whole_clip_tokens']} tokens")
    if info["stage2_tiles"] > 1:
        print(f"Stage II sees each window in {info['stage2_tiles']} spatial tiles (--stage2-tile): "
              f"{info['largest_call_tokens']} tokens per DiT call at most")
    for seg in info["segments"]:
        print(f"  segment {seg['index']}: blocks {seg['blocks']} neighbors {seg['neighbors']} "
              f"positions {seg['positions']} ({seg['tokens']} tokens)")


def _run_one(args: argparse.Namespace) -> int:
    """`generate` / `refine` through the Python API."""
    from swifti2v.config import check_prompt, validate
    from swifti2v.media import load_image
    from swifti2v.outputs import Output, check_paths
    from swifti2v.workdir import WorkOptions

    cfg = validate(resolve_config(args))
    work = WorkOptions(Path(args.work_dir) if args.work_dir else None, args.restart, args.keep_work)
    outputs = dict(out=args.out, crf=args.crf, png_dir=args.png_dir, progress=progress(args), work=work,
                   keep_frames=False)
    png_dir = None if args.png_dir is None else Path(args.png_dir)
    stage1_out = getattr(args, "stage1_out", None)
    check_paths(Output(Path(args.out), args.crf, png_dir, stage1_out and Path(stage1_out)), work.path)  # before loading
    load_image(args.image)
    if args.command == "generate":
        check_prompt(args.prompt)
    quiet_libraries()
    from swifti2v.api import SwiftI2V
    try:
        if args.command == "generate":
            result = SwiftI2V(cfg, force=args.force).generate(args.image, args.prompt, stage1_out=stage1_out, **outputs)
        else:
            result = SwiftI2V(cfg, with_stage1=False, force=args.force).refine(args.image, args.motion, args.prompt,
                                                             frames=args.frames, **outputs)
    finally:
        _end_process_group()
    if not args.quiet and is_rank0():
        secs = ", ".join(f"{k} {t:.1f}s" for k, t in {"load": result.info["models_load_seconds"],
                                                       **result.info["seconds"]}.items())
        print(f"wrote {args.out} ({result.info['config']['video']['frames']} frames); {secs}")
    return 0


def _end_process_group() -> None:
    """A --parallel run's process group, closed when the command ends (however it ends)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()

