"""`swifti2v ui`: the web UI (Gradio) over the same pipeline."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from swifti2v.cli.common import quiet_libraries
from swifti2v.errors import UserError
from swifti2v.presets import DEFAULT_PRESET, get_preset

COMMANDS = ("ui",)


def add_parser(sub: argparse._SubParsersAction) -> None:
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


def run(args: argparse.Namespace) -> int:
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # nothing leaves the machine
    try:
        from swifti2v.ui import UIConfig, parse_auth, serve
    except ImportError as e:
        raise UserError(f"the web UI needs Gradio ({e.name} missing); pip install -e '.[ui]'") from None
    get_preset(args.preset)
    quiet_libraries()
    serve(UIConfig(host=args.host, port=args.port, preset=args.preset, out_dir=Path(args.out_dir),
                   auth=parse_auth(args.auth), max_upload_mb=args.max_upload_mb))
    return 0
