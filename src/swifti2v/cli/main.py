"""`swifti2v`: one command line over the pipeline, a module per command (cli/generate.py, batch.py, ui.py,
serve.py, eval.py, bench.py, train.py), each with `add_parser(sub)` and `run(args)`.

User errors: one line on stderr, exit code 2 — out of GPU memory included, with the advice of memory.py."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from swifti2v.cli import batch, bench, generate, serve, train, ui
from swifti2v.cli import eval as eval_
from swifti2v.cli.common import EXIT_USER_ERROR, Parser, one_line
from swifti2v.errors import UserError

MODULES = (generate, batch, ui, serve, eval_, bench, train)  # the order of `swifti2v --help`
COMMANDS = {name: module for module in MODULES for name in module.COMMANDS}


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="swifti2v", description="Efficient high-resolution image-to-video (SwiftI2V): low-res "
                    "motion with a large Wan I2V model, then 2K detail segment by segment.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for module in MODULES:
        module.add_parser(sub)
    return parser


def run(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command not in ("presets", "plan"):
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
        logging.getLogger("swifti2v").setLevel(logging.WARNING if args.quiet else logging.INFO)
    try:
        return COMMANDS[args.command].run(args)
    except Exception as e:  # out of memory is a user-fixable condition, not a crash
        import torch

        if not isinstance(e, torch.OutOfMemoryError):
            raise
        from swifti2v.memory import oom_advice

        mode = (getattr(args, "memory_mode", None) or "auto") if args.command in ("generate", "refine") else None
        raise UserError(oom_advice(mode)) from e


def entry() -> None:
    """The `swifti2v` command's process (and `python -m swifti2v`): swifti2v's alone, so a CPU run may tune the
    process-wide C allocator (placement.own_heap); `main` is the same command inside another program."""
    from swifti2v.models.placement import own_heap

    own_heap()
    main()


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
    sys.exit(code)
