"""`swifti2v serve`: the HTTP service (serve/); `swifti2v submit`: send it a job (swifti2v.client)."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from swifti2v.errors import UserError
from swifti2v.presets import DEFAULT_PRESET, get_preset

COMMANDS = ("serve", "submit")


def add_parser(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("serve", help="headless HTTP API with a persistent job queue (needs the `serve` extra)",
                       description="POST /v1/jobs (multipart: image, options JSON, motion to refine), GET /v1/jobs/ID "
                       "(state, position, progress, seconds), GET /v1/jobs/ID/video|sidecar|stage1, DELETE /v1/jobs/ID "
                       "(cancel), /healthz, /metrics (Prometheus), API docs at /docs. Jobs are rows in a database "
                       "(SQLite in --data-dir, or PostgreSQL shared by several servers): a killed server loses none, a "
                       "running job resumes from its finished steps. Options that name server files or place the "
                       "models (lora, stage2, device, memory_mode, dtype, attention, compile, out, work_dir) are the "
                       "server's. See docs/serve.md.")
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only; "
                   "any other needs --token-file)")
    s.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    s.add_argument("--data-dir", default="swifti2v-data", help="uploads, outputs and the SQLite queue (default "
                   "swifti2v-data); with --db, a folder every server sharing the queue can reach")
    s.add_argument("--devices", default="cpu", help="one worker per device, comma-separated: cpu, or cuda:0,cuda:1 "
                   "(default cpu)")
    s.add_argument("--preset", default=DEFAULT_PRESET, help=f"the models the workers load at start and a job's "
                   f"default (default {DEFAULT_PRESET}); a job may name another preset")
    s.add_argument("--db", metavar="URL", help="the queue's database: postgresql://USER@HOST/DB to share one queue "
                   "between servers on several hosts (default: SQLite in --data-dir)")
    s.add_argument("--token-file", metavar="FILE", help="bearer tokens clients must send, one per line; required "
                   "when --host is not loopback")
    s.add_argument("--lease", type=float, default=30.0, metavar="SECONDS", help="a job whose worker stopped "
                   "heartbeating (its host died) is taken over this long after its last beat (default 30)")
    s.add_argument("--retries", type=int, default=2, help="extra attempts for a job whose worker crashed or erred "
                   "(default 2)")
    s.add_argument("--max-upload-mb", type=int, default=64, help="largest request body in MB (default 64)")
    s.add_argument("--max-pixels", type=int, default=50_000_000, help="largest uploaded image, width x height "
                   "(default 50,000,000)")
    s.add_argument("--max-queued", type=int, default=100, help="jobs one token may have queued or running "
                   "(default 100; past it: 429)")
    s.add_argument("-q", "--quiet", action="store_true", help="no info logs")

    c = sub.add_parser("submit", help="send a job to a `swifti2v serve` server; --wait for it and --out its video",
                       description="Upload an image (and a low-res --motion video to refine) with generate's options "
                       "to a server; print the job; with --wait show its progress, with --out download the video.")
    c.add_argument("image", help="the input image")
    c.add_argument("--prompt", help="what happens in the clip (required unless --motion)")
    c.add_argument("--motion", help="a low-res video giving the motion: a refine job")
    c.add_argument("--server", default=os.environ.get("SWIFTI2V_SERVER", "http://127.0.0.1:8000"),
                   help="the server (default $SWIFTI2V_SERVER or http://127.0.0.1:8000)")
    c.add_argument("--token-file", metavar="FILE", help="a file holding the bearer token (or set $SWIFTI2V_TOKEN)")
    c.add_argument("--preset", help="preset (default: the server's)")
    c.add_argument("--seed", type=int, help="random seed")
    c.add_argument("--frames", type=int, help="frame count, 4k+1")
    c.add_argument("--set", action="append", default=[], metavar="OPTION=VALUE", help="any other generate option "
                   "by name, the value as JSON (repeatable), e.g. --set height=704 --set no_csg=true")
    c.add_argument("--wait", action="store_true", help="follow the job until it ends (progress bars)")
    c.add_argument("--out", help="download the video here when done (implies --wait)")
    c.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    return _serve(args) if args.command == "serve" else _submit(args)


def _serve(args: argparse.Namespace) -> int:
    try:
        from swifti2v.serve.server import ServeConfig, serve
    except ImportError as e:
        raise UserError(f"swifti2v serve needs the `serve` extra ({e.name} missing); pip install -e '.[serve]'") \
            from None
    from swifti2v.serve.app import Limits

    get_preset(args.preset)
    for flag, value in (("--max-upload-mb", args.max_upload_mb), ("--max-pixels", args.max_pixels),
                        ("--max-queued", args.max_queued)):
        if value < 1:
            raise UserError(f"{flag} {value} must be at least 1")
    serve(ServeConfig(host=args.host, port=args.port, data_dir=Path(args.data_dir),
                      devices=tuple(d.strip() for d in args.devices.split(",") if d.strip()), preset=args.preset,
                      db=args.db, token_file=Path(args.token_file) if args.token_file else None, lease_s=args.lease,
                      retries=args.retries, limits=Limits(args.max_upload_mb << 20, args.max_pixels, args.max_queued)))
    return 0


def _options(args: argparse.Namespace) -> dict:
    options = {"prompt": args.prompt, "preset": args.preset, "seed": args.seed, "frames": args.frames}
    for item in args.set:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise UserError(f"--set {item!r} must be OPTION=VALUE, e.g. --set height=704")
        try:
            options[key] = json.loads(value)
        except ValueError:
            options[key] = value  # a bare string
    return options


def _submit(args: argparse.Namespace) -> int:
    try:
        from swifti2v.client import Client
    except ImportError as e:
        raise UserError(f"swifti2v submit needs the `serve` extra ({e.name} missing); pip install -e '.[serve]'") \
            from None
    if not Path(args.image).is_file():
        raise UserError(f"image {args.image} not found; pass an existing image file")
    if args.motion is None and not args.prompt:
        raise UserError("--prompt is missing; describe the motion, e.g. --prompt 'the camera pans left'")
    token = os.environ.get("SWIFTI2V_TOKEN")
    if args.token_file:
        try:
            token = Path(args.token_file).read_text().strip().splitlines()[0]
        except (OSError, IndexError):
            raise UserError(f"--token-file {args.token_file} cannot be read or is empty") from None
    client = Client(args.server, token)
    job = client.submit(args.image, args.motion, **_options(args))
    print(json.dumps({k: job[k] for k in ("id", "state", "position")}))
    if args.wait or args.out:
        job = client.wait(job["id"], progress=not args.quiet)
        if args.out:
            client.download(job["id"], args.out)
            print(f"wrote {args.out}; seconds {json.dumps(job['seconds'])}")
    return 0
