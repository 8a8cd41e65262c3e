"""Start a server: the data directory, the queue, the workers, uvicorn."""

from __future__ import annotations

import fcntl
import ipaddress
import logging
from dataclasses import dataclass
from pathlib import Path

from swifti2v.errors import UserError
from swifti2v.serve.app import Limits, Service, create_app, read_tokens
from swifti2v.serve.queue import JobQueue, database_url
from swifti2v.serve.worker import Workers, WorkerSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServeConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: Path = Path("swifti2v-data")
    devices: tuple[str, ...] = ("cpu",)
    preset: str = "tiny"
    db: str | None = None  # None: SQLite in data_dir; postgresql://... to share the queue between hosts
    token_file: Path | None = None
    lease_s: float = 30.0
    retries: int = 2
    limits: Limits = Limits()

    def __post_init__(self):
        if not 1 <= self.port <= 65535:
            raise UserError(f"--port {self.port} must be in 1..65535")
        if self.lease_s < 2:
            raise UserError(f"--lease {self.lease_s:g} must be at least 2 seconds")
        if self.retries < 0:
            raise UserError(f"--retries {self.retries} must be 0 or more")
        if not self.devices or any(not (d == "cpu" or d.startswith("cuda")) for d in self.devices):
            raise UserError(f"--devices {','.join(self.devices)!r}: list cpu or cuda:N devices, e.g. cuda:0,cuda:1")
        if self.token_file is None and not _loopback(self.host):
            raise UserError(f"--host {self.host} is reachable from other machines: pass --token-file with the "
                            "bearer tokens clients must send")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _lock(data_dir: Path):
    """One server per SQLite queue: held for the server's life (the OS drops it when the process dies)."""
    handle = open(data_dir / "server.lock", "w")  # noqa: SIM115 - kept open on purpose
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise UserError(f"another swifti2v serve uses --data-dir {data_dir} (its SQLite queue); stop it, pick "
                        "another folder, or share one queue between servers with --db postgresql://...") from None
    return handle


def build(cfg: ServeConfig, with_workers: bool = True) -> tuple[Service, object]:
    """The service (queue, workers) and the lock it holds."""
    from swifti2v.presets import check_weights, get_preset

    check_weights(get_preset(cfg.preset))
    cfg.data_dir.mkdir(parents=True, exist_ok=True)
    queue = JobQueue(database_url(cfg.db, cfg.data_dir))
    lock = None
    if queue.sqlite:  # this server owns the queue: whatever was running belonged to a server that is gone
        lock = _lock(cfg.data_dir)
        back = queue.requeue_running("the server restarted", retries=1 << 30)  # not the job's failure
        if back:
            log.warning("%d job(s) left running by the last server are queued again: %s", len(back), ", ".join(back))
    tokens = read_tokens(cfg.token_file) if cfg.token_file else {}
    spec = WorkerSpec(queue.url, cfg.data_dir.resolve(), cfg.devices[0], cfg.preset, cfg.lease_s, cfg.retries)
    workers = Workers(spec, list(cfg.devices), queue) if with_workers else None
    return Service(queue, cfg.data_dir.resolve(), tokens, cfg.limits, workers), lock


def serve(cfg: ServeConfig) -> None:
    import uvicorn

    service, _lock_handle = build(cfg)
    print(f"swifti2v serve: http://{cfg.host}:{cfg.port} (API docs at /docs), data in {cfg.data_dir}, queue "
          f"{'SQLite' if service.queue.sqlite else 'PostgreSQL'}, workers on {','.join(cfg.devices)}", flush=True)
    uvicorn.run(create_app(service), host=cfg.host, port=cfg.port, log_level="warning", access_log=False)
