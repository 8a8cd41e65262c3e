"""A job's options: the `generate` / `refine` command line's names and checks, from a JSON object.

The object is turned into the command's own arguments and parsed by the command's own parser, then resolved
into a run config and validated exactly as `swifti2v generate` does, so a job the service accepts is one the
CLI would run, and the same inputs give the same bytes. Options that name files on the server or decide
where and how the models run are the server's (SERVER_SET) and refused per job.
"""

from __future__ import annotations

import argparse
import functools
from pathlib import Path

from swifti2v.cli import generate
from swifti2v.cli.common import resolve_config
from swifti2v.config import check_prompt, validate
from swifti2v.errors import UserError

KINDS = ("generate", "refine")
# Set by the server: paths on its disk (inputs, outputs, LoRA and checkpoint files) and the placement of the models.
SERVER_SET = frozenset({"command", "help", "image", "motion", "out", "png_dir", "stage1_out", "work_dir", "restart",
                        "keep_work", "parallel", "device", "quiet", "lora_strength", "lora", "stage2", "memory_mode",
                        "dtype", "attention", "compile", "quant", "stage1_weights", "stage2_weights", "force"})


class _Raising(argparse.ArgumentParser):
    def error(self, message: str):
        raise UserError(message.replace("\n", " "))


@functools.cache
def _parsers() -> dict[str, argparse.ArgumentParser]:
    root = _Raising(prog="swifti2v", add_help=False)
    sub = root.add_subparsers(dest="command", parser_class=_Raising)
    generate.add_parser(sub)
    return {kind: sub.choices[kind] for kind in KINDS}


def _actions(kind: str) -> dict[str, argparse.Action]:
    return {a.dest: a for a in _parsers()[kind]._actions if a.option_strings}


def _argv(kind: str, options: dict) -> list[str]:
    """The JSON object as the command's arguments; a key or value of the wrong kind is a UserError."""
    actions, argv = _actions(kind), []
    for key, value in options.items():
        dest = str(key).replace("-", "_")
        action = actions.get(dest)
        if action is None or action.help == argparse.SUPPRESS:
            raise UserError(f"option {key!r} is unknown; use {kind}'s options by name, e.g. prompt, seed, frames, "
                            "preset, height, width, segment_blocks")
        if dest in SERVER_SET:
            raise UserError(f"option {key!r} is set by the server, not per job (see `swifti2v serve --help`)")
        flag = action.option_strings[-1]
        flag_only = isinstance(action, argparse._StoreTrueAction)
        if value is None or value is False and flag_only:
            continue
        if flag_only != isinstance(value, bool) or isinstance(value, (list, dict)):
            want = "true or false" if flag_only else "a number or a string"
            raise UserError(f"option {key!r} must be {want}, not {value!r}")
        argv += [flag] if flag_only else [flag, str(value)]
    return argv


def job_args(kind: str, options: dict, image: Path, out: Path, motion: Path | None = None) -> argparse.Namespace:
    """The command line `swifti2v KIND --image IMAGE --out OUT [--motion MOTION] OPTIONS...` as parsed."""
    if kind not in KINDS:
        raise UserError(f"job kind {kind!r} must be one of {list(KINDS)}")
    if not isinstance(options, dict):
        raise UserError(f"options must be a JSON object of {kind}'s options, not {type(options).__name__}")
    if kind == "generate" and not isinstance(options.get("prompt"), str):
        raise UserError("options.prompt is missing: a generate job needs a prompt (a string)")
    paths = ["--image", str(image), "--out", str(out)] + (["--motion", str(motion)] if kind == "refine" else [])
    return _parsers()[kind].parse_args(paths + _argv(kind, options), argparse.Namespace(command=kind))


def check(kind: str, options: dict) -> dict:
    """Validate a job's options as `swifti2v KIND` would (before any input is read); the options as parsed
    (typed values, canonical names), to store with the job."""
    args = job_args(kind, options, Path("image"), Path("video.mp4"), Path("motion.mp4"))
    validate(resolve_config(args))
    if kind == "generate":
        check_prompt(args.prompt)
    given = {str(k).replace("-", "_") for k, v in options.items() if v is not None}
    return {dest: getattr(args, dest) for dest in sorted(given)}
