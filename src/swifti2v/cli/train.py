"""`swifti2v train stage2 | stage1 | stage1-lora` and `swifti2v prepare-data`: training on accelerate."""

from __future__ import annotations

import argparse

from swifti2v.cli.common import Parser, is_rank0, progress, quiet_libraries

COMMANDS = ("train", "prepare-data")
TASKS = {"stage2": "the concat Stage II refiner on CSG windows with stage-transition conditions; exports a folder "
                   "for `generate --stage2`",
         "stage1": "every weight of the Stage I I2V model at the Stage I size (the tiny models); exports a "
                   "transformer folder",
         "stage1-lora": "a LoRA on the Stage I I2V model at the Stage I size; exports a file for `generate --lora`"}


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


def add_parser(sub: argparse._SubParsersAction) -> None:
    t = sub.add_parser("train", help="train the Stage II concat refiner or a Stage I low-res LoRA",
                       description="Training on accelerate. Single process: `swifti2v train ...`; several "
                       "processes/GPUs: `accelerate launch [--num_processes K] -m swifti2v train ...`.")
    tsub = t.add_subparsers(dest="task", required=True, parser_class=Parser)
    for task, text in TASKS.items():
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


def run(args: argparse.Namespace) -> int:
    cfg = _train_config(args)
    quiet_libraries()
    if args.command == "prepare-data":
        from swifti2v.training.prepare import prepare_data

        info = prepare_data(cfg, progress(args))
        print(f"cached {info['encoded']} clips in {cfg.data.cache} ({info['seconds']}s)")
        return 0
    from swifti2v.training.engine import train

    info = train(cfg, resume=args.resume, progress=progress(args))
    if is_rank0():
        print(f"trained {info['steps']} steps, final loss {info['final_loss']:.4f}; wrote {info['export']}")
    return 0
