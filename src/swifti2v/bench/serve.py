"""`swifti2v bench serve`: the HTTP service under status polling while it runs a job.

A real `swifti2v serve` (its own process, one worker) runs the same job twice: once with nobody asking, once while
this process sends `rate` GET /v1/jobs/ID requests per second (open loop: each request leaves on schedule, whether
the last one answered or not) for at least `seconds` and until the job ends. Reported: requests, failures, latency
percentiles, and the job's wall time (the server's own start/finish stamps) loaded over unloaded.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from swifti2v.errors import UserError


@dataclass(frozen=True)
class ServeLoadConfig:
    image: Path = Path("examples/input.jpg")
    prompt: str = "the camera pans left over the hills"
    preset: str = "tiny"
    options: tuple[tuple[str, object], ...] = ()  # other job options (e.g. (("frames", 9),))
    rate: float = 200.0  # requests per second
    seconds: float = 30.0  # at least this long, and until the job ends

    def __post_init__(self):
        if not self.image.is_file():
            raise UserError(f"--image {self.image} not found; pass an existing image file")
        if self.rate <= 0 or self.seconds <= 0:
            raise UserError(f"--rate {self.rate:g} and --seconds {self.seconds:g} must be positive")


class _Server:
    def __init__(self, data_dir: Path, preset: str):
        import httpx

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self.log = (data_dir / "server.log").open("w")
        self.proc = subprocess.Popen([sys.executable, "-m", "swifti2v", "serve", "--data-dir", str(data_dir / "data"),
                                      "--port", str(port), "--preset", preset], stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self.http = httpx.Client(base_url=self.url, timeout=60)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and self.proc.poll() is None:
            with contextlib.suppress(httpx.TransportError):
                if all(w["alive"] for w in self.http.get("/healthz").json()["workers"]):
                    return
            time.sleep(0.5)
        raise RuntimeError(f"the server did not start; see {data_dir / 'server.log'}")

    def run_job(self, cfg: ServeLoadConfig, seed: int, during=None) -> dict:
        """Submit the job, call `during(job_id)` once it runs (it returns when the load is done), wait for the end."""
        with cfg.image.open("rb") as f:
            options = {"prompt": cfg.prompt, "seed": seed, **dict(cfg.options)}
            r = self.http.post("/v1/jobs", files={"image": (cfg.image.name, f.read())},
                               data={"options": json.dumps(options)})
        r.raise_for_status()
        job_id = r.json()["id"]
        while self.http.get(f"/v1/jobs/{job_id}").json()["state"] == "queued":
            time.sleep(0.05)
        stats = during(job_id) if during else None
        while (job := self.http.get(f"/v1/jobs/{job_id}").json())["state"] not in ("done", "failed", "cancelled"):
            time.sleep(0.5)
        if job["state"] != "done":
            raise RuntimeError(f"the bench job {job['state']}: {job['error']}")
        return {"wall_s": round(job["finished"] - job["started"], 2), "seconds": job["seconds"], "load": stats}

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, 9)
        self.http.close()
        self.log.close()


async def _load(url: str, job: str, rate: float, seconds: float) -> dict:
    """Open-loop GETs of `job` at `rate` per second for `seconds` and while the job runs; latencies in ms. (aiohttp:
    the client shares the machine with the server, so it should cost little CPU per request.)"""
    import aiohttp

    latencies, failures, tasks = [], [], []
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(url, timeout=timeout, connector=aiohttp.TCPConnector(limit=256)) as client:
        async def one():
            t = time.perf_counter()
            try:
                async with client.get(job) as r:
                    await r.read()
                    if r.status != 200:
                        failures.append(f"HTTP {r.status}")
            except (aiohttp.ClientError, asyncio.TimeoutError) as e:
                failures.append(type(e).__name__)
            latencies.append((time.perf_counter() - t) * 1000)

        start, sent, more = time.perf_counter(), 0, True
        while more:
            await asyncio.sleep(max(0.0, start + sent / rate - time.perf_counter()))
            tasks.append(asyncio.create_task(one()))
            sent += 1
            if sent % max(1, int(rate)) == 0 and time.perf_counter() - start >= seconds:  # once a second
                async with client.get(job) as r:
                    more = (await r.json())["state"] == "running"
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - start
    lat = np.array(latencies)
    return {"requests": len(latencies), "failures": len(failures), "failure_kinds": sorted(set(failures)),
            "seconds": round(elapsed, 2), "achieved_rps": round(len(latencies) / elapsed, 1),
            **{f"p{q}_ms": round(float(np.percentile(lat, q)), 2) for q in (50, 90, 99)},
            "max_ms": round(float(lat.max()), 2)}


def _measured(server: _Server, job_id: str, cfg: ServeLoadConfig) -> dict:
    """The load, and the CPU seconds it cost the HTTP server's process and this (the client's) process."""
    import psutil

    api = psutil.Process(server.proc.pid)
    api0, client0 = sum(api.cpu_times()[:2]), time.process_time()
    stats = asyncio.run(_load(server.url, f"/v1/jobs/{job_id}", cfg.rate, cfg.seconds))
    cpu = {"server_cpu_s": sum(api.cpu_times()[:2]) - api0, "client_cpu_s": time.process_time() - client0}
    return stats | {k: round(v, 2) for k, v in cpu.items()} | {
        "server_cpu_ms_per_request": round(cpu["server_cpu_s"] * 1000 / stats["requests"], 3),
        "client_cpu_ms_per_request": round(cpu["client_cpu_s"] * 1000 / stats["requests"], 3)}


def run_serve_load(cfg: ServeLoadConfig, progress=None) -> dict:
    with tempfile.TemporaryDirectory(prefix="swifti2v-bench-serve-") as tmp:
        server = _Server(Path(tmp), cfg.preset)
        try:
            show = progress or (lambda *a: None)
            show("bench serve", 0, 3)
            server.run_job(cfg, seed=100)  # warm-up: first-call costs are nobody's load
            show("bench serve", 1, 3)
            unloaded = server.run_job(cfg, seed=0)
            show("bench serve", 2, 3)

            loaded = server.run_job(cfg, seed=0, during=lambda job_id: _measured(server, job_id, cfg))
            show("bench serve", 3, 3)
        finally:
            server.stop()
    return {"config": {**asdict(cfg), "image": str(cfg.image), "options": dict(cfg.options)},
            "date": datetime.date.today().isoformat(), "cpu_count": os.cpu_count(),
            "load": loaded["load"], "job_wall_unloaded_s": unloaded["wall_s"], "job_wall_loaded_s": loaded["wall_s"],
            "wall_ratio": round(loaded["wall_s"] / unloaded["wall_s"], 3)}


def to_markdown(r: dict) -> str:
    load = r["load"]
    return ("| rate asked | achieved | requests | failures | p50 | p90 | p99 | max | job wall unloaded | loaded | "
            "ratio | server CPU per request | client CPU per request |\n" + "|---" * 13 + "|\n"
            f"| {r['config']['rate']:g}/s | {load['achieved_rps']}/s | {load['requests']} | {load['failures']} | "
            f"{load['p50_ms']} ms | {load['p90_ms']} ms | {load['p99_ms']} ms | {load['max_ms']} ms | "
            f"{r['job_wall_unloaded_s']} s | {r['job_wall_loaded_s']} s | {r['wall_ratio']}x | "
            f"{load['server_cpu_ms_per_request']} ms | {load['client_cpu_ms_per_request']} ms |\n")
