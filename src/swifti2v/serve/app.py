"""The HTTP API (FastAPI): submit a job, follow it, fetch its files, cancel it; health and Prometheus metrics.

Every answer that is not a file is JSON; every error is `{"error": "one line"}` with a 4xx status, and a bad
request queues nothing and writes nothing. Jobs belong to the token that submitted them (one owner without tokens).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException

from swifti2v.errors import UserError
from swifti2v.serve import options as job_options
from swifti2v.serve.queue import FINAL, STATES, JobQueue
from swifti2v.serve.worker import SIDECAR, STAGE1, VIDEO, Workers, job_dir

ID = re.compile(r"^[0-9a-f]{32}$")
FILES = {"video": (VIDEO, "video/mp4"), "sidecar": (SIDECAR, "application/json"), "stage1": (STAGE1, "video/mp4")}


@dataclass(frozen=True)
class Limits:
    upload_bytes: int = 64 << 20  # the whole request body
    pixels: int = 50_000_000  # an uploaded image's width x height
    queued_per_token: int = 100  # queued + running jobs of one token


class Recent:
    """Job reads of the last `ttl` seconds: clients polling a job hundreds of times a second cost one database read
    per job per `ttl` (workers store progress every half second, so nothing newer is missed)."""

    def __init__(self, ttl: float = 0.25, size: int = 10_000):
        self.ttl, self.size, self.items = ttl, size, {}

    def get(self, key: tuple[str, str], load):
        now = time.monotonic()
        hit = self.items.get(key)
        if hit is not None and now - hit[0] < self.ttl:
            return hit[1]
        value = load()
        if len(self.items) >= self.size:
            self.items.clear()
        self.items[key] = (now, value)
        return value

    def forget(self, job_id: str) -> None:
        for key in [k for k in self.items if k[0] == job_id]:
            self.items.pop(key, None)


@dataclass
class Service:
    queue: JobQueue
    data_dir: Path
    tokens: dict[str, str] = field(default_factory=dict)  # owner -> token; empty: no authentication
    limits: Limits = Limits()
    workers: Workers | None = None
    recent: Recent = field(default_factory=Recent)


class ApiError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def create_app(service: Service) -> FastAPI:
    app = FastAPI(title="swifti2v", summary="Image-to-video jobs: submit, follow, fetch (SwiftI2V).",
                  version="1", lifespan=_lifespan(service))
    app.add_middleware(BodyLimit, limit=service.limits.upload_bytes)
    _errors(app)
    _routes(app, service)
    return app


def _lifespan(service: Service):
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(_app):
        if service.workers is not None:
            service.workers.start()
        try:
            yield
        finally:
            if service.workers is not None:
                service.workers.stop()

    return lifespan


def _errors(app: FastAPI) -> None:
    def answer(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message.replace("\n", " ")}, status_code=status)

    @app.exception_handler(ApiError)
    async def api_error(_request, e: ApiError):
        return answer(e.status, str(e))

    @app.exception_handler(HTTPException)
    async def http_error(_request, e: HTTPException):
        return answer(e.status_code, str(e.detail))

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request, e: RequestValidationError):
        first = e.errors()[0] if e.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", ()))
        return answer(422, f"{where}: {first.get('msg', 'invalid request')}")


def _owner(service: Service, request: Request) -> str:
    """The caller's owner id (a hash of its bearer token); 401 without a valid token when tokens are set."""
    if not service.tokens:
        return "local"
    header = request.headers.get("authorization", "")
    given = header[7:].strip() if header.lower().startswith("bearer ") else ""
    for owner, token in service.tokens.items():
        if given and hmac.compare_digest(given.encode(), token.encode()):
            return owner
    raise ApiError(401, "a valid bearer token is required (Authorization: Bearer TOKEN)")


def owner_id(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:16]


def _job(service: Service, job_id: str, owner: str, fresh: bool = False) -> dict:
    if fresh:
        service.recent.forget(job_id)
    job = service.recent.get((job_id, owner), lambda: service.queue.get(job_id, owner)) if ID.match(job_id) else None
    if job is None:
        raise ApiError(404, f"no job {job_id[:64]!r}")
    return _with_links(job)


def _with_links(job: dict) -> dict:
    base = f"/v1/jobs/{job['id']}"
    return {**job, "links": {"self": base, **{name: f"{base}/{name}" for name in FILES}}}


def _routes(app: FastAPI, service: Service) -> None:
    @app.post("/v1/jobs", status_code=201, summary="Submit a job: multipart `image`, `options` (JSON), `motion`")
    async def submit(request: Request):
        owner = _owner(service, request)
        if service.queue.queued_count(owner) >= service.limits.queued_per_token:
            raise ApiError(429, f"this token has {service.limits.queued_per_token} jobs queued or running; wait for "
                           "some to finish")
        kind, opts, uploads = await _read_form(request)
        job_id = _store(service, kind, opts, uploads)
        service.queue.submit(owner, kind, opts, job_id)
        return JSONResponse(_with_links(service.queue.get(job_id)), status_code=201)

    @app.get("/v1/jobs", summary="The caller's jobs, oldest first")
    async def list_jobs(request: Request, state: str | None = None, limit: int = 100):
        owner = _owner(service, request)
        if state is not None and state not in STATES:
            raise ApiError(422, f"state {state[:32]!r} must be one of {list(STATES)}")
        return {"jobs": [_with_links(j) for j in service.queue.list(owner, state, max(1, min(limit, 1000)))]}

    # Status reads are quick SQL reads: served on the event loop itself, no thread hand-off per request.
    @app.get("/v1/jobs/{job_id}", summary="State, queue position, progress per stage and segment, seconds, error")
    async def get_job(request: Request, job_id: str):
        return JSONResponse(_job(service, job_id, _owner(service, request)))

    @app.get("/v1/jobs/{job_id}/{name}", summary="A finished job's file: video, sidecar (its JSON) or stage1")
    def get_file(request: Request, job_id: str, name: str):
        job = _job(service, job_id, _owner(service, request))
        if name not in FILES:
            raise ApiError(404, f"no file {name[:32]!r}; a job has {', '.join(FILES)}")
        if job["state"] != "done":
            raise ApiError(409, f"job {job_id} is {job['state']}; its files are ready when its state is done")
        filename, media_type = FILES[name]
        path = job_dir(service.data_dir, job_id) / filename
        if not path.is_file():
            raise ApiError(404, f"job {job_id} has no {name} (a refine job has no stage1 clip)")
        return FileResponse(path, media_type=media_type, filename=f"{job_id}-{filename}")

    @app.delete("/v1/jobs/{job_id}", summary="Cancel: a queued job is dropped, a running one stops between steps")
    def cancel(request: Request, job_id: str):
        owner = _owner(service, request)
        job = _job(service, job_id, owner, fresh=True)
        if job["state"] in FINAL:
            raise ApiError(409, f"job {job_id} is already {job['state']}")
        state = service.queue.cancel(job_id, owner)
        if state == "cancelled":
            shutil.rmtree(job_dir(service.data_dir, job_id), ignore_errors=True)
        return JSONResponse(_job(service, job_id, owner, fresh=True), status_code=200 if state == "cancelled" else 202)

    @app.get("/healthz", summary="Liveness, the workers and the queue's counts")
    def healthz():
        workers = service.workers.describe() if service.workers is not None else []
        return {"ok": True, "workers": workers, "jobs": service.queue.counts()}

    @app.get("/metrics", summary="Prometheus text format", response_class=PlainTextResponse)
    def metrics():
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return PlainTextResponse(generate_latest(_registry(service)), media_type=CONTENT_TYPE_LATEST)


async def _read_form(request: Request) -> tuple[str, dict, dict[str, bytes]]:
    """(kind, checked options, {"image": bytes[, "motion": bytes]}) from the multipart body."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise ApiError(415, "send multipart/form-data with fields image (a file) and options (a JSON object)")
    try:
        form = await request.form(max_files=2, max_fields=4, max_part_size=1 << 20)
    except MultiPartException as e:
        raise ApiError(400, f"the multipart body cannot be read ({e.message})") from None
    unknown = sorted(set(form.keys()) - {"image", "motion", "options"})
    if unknown:
        raise ApiError(422, f"unknown field {unknown[0][:32]!r}; send image, options and (to refine) motion")
    uploads = {}
    for name in ("image", "motion"):
        item = form.get(name)
        if item is None and name == "motion":
            continue
        if not isinstance(item, UploadFile):
            raise ApiError(422, f"field {name!r} must be a file upload" + (" (missing)" if item is None else ""))
        uploads[name] = await item.read()
        if not uploads[name]:
            raise ApiError(422, f"field {name!r} is an empty file")
    text = form.get("options")
    if not isinstance(text, str):
        raise ApiError(422, "field 'options' must be a JSON object (a text field), e.g. {\"prompt\": \"...\"}")
    try:
        opts = json.loads(text)
    except ValueError as e:
        raise ApiError(422, f"field 'options' is not JSON ({e})") from None
    kind = "refine" if "motion" in uploads else "generate"
    try:
        return kind, job_options.check(kind, opts), uploads
    except UserError as e:
        raise ApiError(422, str(e)) from None


def _store(service: Service, kind: str, opts: dict, uploads: dict[str, bytes]) -> str:
    """Check the uploads and store them as the job's folder (complete, or not at all); the job's id."""
    from swifti2v.serve.queue import new_id

    job_id = new_id()
    jobs = service.data_dir / "jobs"
    jobs.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{job_id}.", dir=jobs))
    try:
        _save_image(tmp, uploads["image"], service.limits.pixels)
        if "motion" in uploads:
            _save_motion(tmp, uploads["motion"])
        tmp.rename(job_dir(service.data_dir, job_id))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return job_id


def _save_image(folder: Path, data: bytes, max_pixels: int) -> None:
    import io
    import warnings

    from PIL import Image

    try:
        with warnings.catch_warnings(), Image.open(io.BytesIO(data)) as im:
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            if im.width * im.height > max_pixels:
                raise ApiError(413, f"image is {im.width}x{im.height}, over the server's {max_pixels:,} pixels; "
                               "downscale it")
            fmt = (im.format or "png").lower()
            im.load()
    except ApiError:
        raise
    except Exception as e:  # PIL raises many kinds on bad bytes
        raise ApiError(422, f"image is not a readable image ({type(e).__name__}); upload a PNG, JPEG or WebP file") \
            from None
    (folder / f"image.{'jpg' if fmt == 'jpeg' else fmt}").write_bytes(data)


def _save_motion(folder: Path, data: bytes) -> None:
    from swifti2v.media import read_video

    path = folder / "motion.mp4"
    path.write_bytes(data)
    try:
        frames, _ = read_video(path, flag="motion")
    except UserError as e:
        raise ApiError(422, str(e).replace(str(path), "upload")) from None
    if len(frames) < 5:
        raise ApiError(422, f"motion has {len(frames)} frames; a refine job needs at least 5")


def _registry(service: Service):
    """The queue's numbers, read from the database at each scrape (so every host shows the shared queue)."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, SummaryMetricFamily

    class Queue:
        def collect(self):
            counts = service.queue.counts()
            depth = GaugeMetricFamily("swifti2v_jobs", "jobs by state now", labels=["state"])
            for state in ("queued", "running"):
                depth.add_metric([state], counts[state])
            yield depth
            ended = CounterMetricFamily("swifti2v_jobs_ended", "jobs that ended, by end state", labels=["state"])
            for state in FINAL:
                ended.add_metric([state], counts[state])
            yield ended
            seconds = SummaryMetricFamily("swifti2v_job_stage_seconds", "seconds per stage of finished jobs",
                                          labels=["stage"])
            for stage, (total, n) in sorted(service.queue.stage_seconds().items()):
                seconds.add_metric([stage], n, total)
            yield seconds
            if service.workers is not None:
                yield GaugeMetricFamily("swifti2v_worker_restarts", "worker processes restarted",
                                        value=service.workers.restarts)

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Queue())
    return registry


class BodyLimit:
    """ASGI middleware: a request body over `limit` bytes is refused with 413 (by its Content-Length at once, or
    as it streams in) before it is parsed or stored."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD"):
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            return await self._refuse(send)
        seen, started = 0, False

        async def counted():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise _TooLarge
            return message

        async def watched(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except _TooLarge:
            if not started:
                await self._refuse(send)

    async def _refuse(self, send) -> None:
        body = json.dumps({"error": f"the request is over the server's {self.limit:,} bytes; send a smaller "
                           "upload"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    pass


def read_tokens(path: Path) -> dict[str, str]:
    """--token-file: one token per line (blank lines and # comments ignored) -> {owner id: token}."""
    try:
        lines = path.read_text().splitlines()
    except OSError as e:
        raise UserError(f"--token-file {path}: {e.strerror or e}; pass a readable file with one token per line") \
            from None
    tokens = [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]
    short = [t for t in tokens if len(t) < 16]
    if not tokens or short:
        raise UserError(f"--token-file {path} holds {'no tokens' if not tokens else 'a token under 16 characters'}; "
                        "put one long random token per line (e.g. `openssl rand -hex 32`)")
    return {owner_id(t): t for t in tokens}
