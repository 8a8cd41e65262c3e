"""`swifti2v serve` driven over HTTP, a real uvicorn on loopback with the tiny preset: videos byte-identical to the
CLI's; a server SIGKILLed in Stage II resumes the job with the same bytes and loses nothing; cancel; a killed
worker is replaced and its job retried; malformed requests are refused with nothing queued or written; two
servers on one real PostgreSQL queue run every job once and take over a dead server's job."""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from conftest import free_port, kill_group, run_process
from swifti2v.media import read_video

pytestmark = pytest.mark.subprocess  # every test starts a server

SMALL = {"height": 96, "width": 160, "frames": 9}
# Stage II in eight one-block segments of about a second each: long enough to kill the server in the middle.
SLOW = {"height": 128, "width": 224, "frames": 33, "segment_blocks": 1}


class Server:
    """`python -m swifti2v serve` in a process group of its own."""

    def __init__(self, data_dir: Path, *extra: str, port: int | None = None):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.TemporaryFile("w+")  # noqa: SIM115 - read until the server stops
        cmd = [sys.executable, "-m", "swifti2v", "serve", "--data-dir", str(data_dir), "--port", str(self.port),
               "--preset", "tiny", *extra]
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        self.http = httpx.Client(base_url=self.url, timeout=30)
        self.wait_healthy()

    def wait_healthy(self, timeout: float = 120) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"the server exited: {self.output()}"
            with contextlib.suppress(httpx.TransportError):
                health = self.http.get("/healthz").json()
                if all(w["alive"] for w in health["workers"]):
                    return health
            time.sleep(0.2)
        raise AssertionError(f"the server did not come up: {self.output()}")

    def submit(self, image: Path, **options) -> dict:
        r = self.http.post("/v1/jobs", files={"image": ("in.png", image.read_bytes())},
                           data={"options": json.dumps(options)})
        assert r.status_code == 201, r.text
        return r.json()

    def job(self, job_id: str) -> dict:
        return self.http.get(f"/v1/jobs/{job_id}").json()

    def wait(self, job_id: str, until=lambda job: job["state"] in ("done", "failed", "cancelled"),
             timeout: float = 300) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.job(job_id)
            if until(job):
                return job
            time.sleep(0.1)
        raise AssertionError(f"job {job_id} stayed {job}; server log: {self.output()}")

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read()[-3000:]

    def kill(self) -> None:
        """SIGKILL the server process alone, as a crash would; its workers must die with it."""
        self.proc.kill()
        self.proc.wait()
        deadline = time.monotonic() + 10
        while _group_alive(self.proc.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _group_alive(self.proc.pid), "the server's workers outlived it"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(30)
        kill_group(self.proc.pid)
        self.http.close()


def _group_alive(pgid: int) -> bool:
    import psutil

    def member(p) -> bool:
        try:
            return os.getpgid(p.pid) == pgid and p.status() != "zombie"
        except (OSError, psutil.Error):
            return False

    return any(member(p) for p in psutil.process_iter())


@contextlib.contextmanager
def serving(data_dir: Path, *extra: str, port: int | None = None):
    server = Server(data_dir, *extra, port=port)
    try:
        yield server
    finally:
        server.stop()


def cli_video(tmp_path: Path, image: Path, name: str, **options) -> bytes:
    """The same job through `swifti2v generate`."""
    out = tmp_path / f"cli-{name}.mp4"
    flags = [x for k, v in options.items() if k != "prompt"
             for x in ((f"--{k.replace('_', '-')}",) if v is True else (f"--{k.replace('_', '-')}", str(v)))]
    run_process([sys.executable, "-m", "swifti2v", "generate", "--preset", "tiny", "--image", str(image), "--prompt",
                 options["prompt"], "--out", str(out), "-q", *flags], check=True, timeout=300)
    return out.read_bytes()


def in_stage2(job: dict) -> bool:
    done, total = job["progress"].get("stage2 segments", [0, 1])
    return job["state"] == "running" and 1 <= done < total


def test_three_jobs_match_the_cli_byte_for_byte_and_serve_their_files(tmp_path, image_file):
    jobs = [{"prompt": "the camera pans left", "seed": 1, **SMALL},
            {"prompt": "the camera zooms in", "seed": 2, **SMALL},
            {"prompt": "the camera pans right", "seed": 3, **SMALL, "no_csg": True}]
    with serving(tmp_path / "data") as server:
        ids = [server.submit(image_file, **options)["id"] for options in jobs]
        assert server.job(ids[2])["state"] in ("queued", "running")
        for job_id, options in zip(ids, jobs, strict=True):
            job = server.wait(job_id)
            assert job["state"] == "done" and job["attempts"] == 1, job
            assert set(job["seconds"]) >= {"stage1", "stage2"} and job["progress"]["stage2 segments"][0] >= 1
            video = server.http.get(f"/v1/jobs/{job_id}/video")
            assert video.headers["content-type"] == "video/mp4"
            assert video.content == cli_video(tmp_path, image_file, job_id, **options), options
            sidecar = server.http.get(f"/v1/jobs/{job_id}/sidecar").json()
            assert sidecar["config"]["seed"] == options["seed"]
            stage1 = tmp_path / f"{job_id}-stage1.mp4"
            stage1.write_bytes(server.http.get(f"/v1/jobs/{job_id}/stage1").content)
            frames, _ = read_video(stage1)
            assert len(frames) == 9 and frames[0].size == (40, 24)  # the low-res clip Stage II refined
        listed = server.http.get("/v1/jobs", params={"state": "done"}).json()["jobs"]
        assert [j["id"] for j in listed] == ids
        metrics = server.http.get("/metrics").text
        assert 'swifti2v_jobs_ended_total{state="done"} 3.0' in metrics
        assert 'swifti2v_job_stage_seconds_count{stage="stage2"} 3.0' in metrics
        # the command-line client: submit, wait, download
        out = tmp_path / "submitted.mp4"
        r = run_process([sys.executable, "-m", "swifti2v", "submit", str(image_file), "--prompt", jobs[0]["prompt"],
                         "--seed", "1", "--frames", "9", "--set", "height=96", "--set", "width=160", "--server",
                         server.url, "--out", str(out), "-q"], timeout=300)
        assert r.returncode == 0, r.stderr
        assert out.read_bytes() == server.http.get(f"/v1/jobs/{ids[0]}/video").content
        # a refine job: the image and a low-res motion clip (the first job's Stage I clip), as `swifti2v refine`
        motion, refined, cli = tmp_path / f"{ids[0]}-stage1.mp4", tmp_path / "refined.mp4", tmp_path / "cli-refine.mp4"
        size = ["--height", "96", "--width", "160"]
        r = run_process([sys.executable, "-m", "swifti2v", "submit", str(image_file), "--motion", str(motion), "--set",
                         "height=96", "--set", "width=160", "--server", server.url, "--out", str(refined), "-q"])
        assert r.returncode == 0, r.stderr
        run_process([sys.executable, "-m", "swifti2v", "refine", "--preset", "tiny", "--image", str(image_file),
                     "--motion", str(motion), *size, "--out", str(cli), "-q"], check=True)
        assert refined.read_bytes() == cli.read_bytes()


def test_a_server_killed_in_stage2_resumes_the_job_with_the_same_bytes_and_loses_none(tmp_path, image_file):
    data = tmp_path / "data"
    slow = {"prompt": "the camera pans left", "seed": 5, **SLOW}
    server = Server(data)
    try:
        running = server.submit(image_file, **slow)["id"]
        waiting = server.submit(image_file, prompt="the camera pans up", seed=6, **SMALL)["id"]
        server.wait(running, until=in_stage2)
        server.kill()
    finally:
        server.stop()
    segments = sorted(p.name for p in (data / "jobs" / running / "work").glob("segment-*"))
    assert segments, "no finished segment was kept"
    assert not (data / "jobs" / running / "video.mp4").exists()
    with serving(data) as again:
        assert again.job(waiting)["state"] in ("queued", "running")
        first = again.wait(running)
        second = again.wait(waiting)
        assert first["state"] == second["state"] == "done", (first, second)
        outcomes = [a["outcome"] for a in json.loads(_attempts(data, running))]
        assert outcomes == ["lost: the server restarted", "done"], outcomes
        assert [a["outcome"] for a in json.loads(_attempts(data, waiting))] == ["done"]
        video = again.http.get(f"/v1/jobs/{running}/video").content
    assert video == cli_video(tmp_path, image_file, "slow", **slow)


def _attempts(data: Path, job_id: str) -> str:
    from swifti2v.serve.queue import JobQueue, database_url

    return json.dumps(JobQueue(database_url(None, data)).attempts_of(job_id))


def test_cancel_queued_and_running_jobs_and_a_killed_worker_is_replaced_and_its_job_retried(tmp_path, image_file):
    data = tmp_path / "data"
    with serving(data, "--retries", "1") as server:
        first = server.submit(image_file, prompt="the camera pans left", seed=7, **SLOW)["id"]
        queued = server.submit(image_file, prompt="the camera pans right", **SMALL)["id"]
        r = server.http.delete(f"/v1/jobs/{queued}")
        assert r.status_code == 200 and r.json()["state"] == "cancelled"
        assert not (data / "jobs" / queued).exists()
        server.wait(first, until=in_stage2)
        r = server.http.delete(f"/v1/jobs/{first}")
        assert r.status_code == 202 and r.json()["cancel_requested"]
        job = server.wait(first)
        assert job["state"] == "cancelled" and not (data / "jobs" / first).exists()
        assert server.http.delete(f"/v1/jobs/{first}").status_code == 409
        assert server.http.get(f"/v1/jobs/{first}/video").status_code == 409

        retried = server.submit(image_file, prompt="the camera pans down", seed=8, **SLOW)["id"]
        server.wait(retried, until=in_stage2)
        worker = server.http.get("/healthz").json()["workers"][0]
        assert worker["job"] == retried
        os.kill(worker["pid"], signal.SIGKILL)
        job = server.wait(retried)
        assert job["state"] == "done" and job["attempts"] == 2, job
        health = server.wait_healthy()
        assert health["workers"][0]["pid"] != worker["pid"]
        assert "swifti2v_worker_restarts 1.0" in server.http.get("/metrics").text


def test_malformed_requests_get_a_4xx_json_error_and_nothing_is_queued_or_written(tmp_path, image_file):
    data = tmp_path / "data"
    png = image_file.read_bytes()
    options = json.dumps({"prompt": "the camera pans left", **SMALL})
    bad = {
        "not an image": dict(files={"image": ("a.png", b"GIF89a not really")}, data={"options": options}),
        "truncated image": dict(files={"image": ("a.png", png[: len(png) // 2])}, data={"options": options}),
        "missing image": dict(data={"options": options}),
        "missing options": dict(files={"image": ("a.png", png)}),
        "options not JSON": dict(files={"image": ("a.png", png)}, data={"options": "{prompt"}),
        "options a list": dict(files={"image": ("a.png", png)}, data={"options": "[1, 2]"}),
        "frames not 4k+1": dict(files={"image": ("a.png", png)},
                                data={"options": json.dumps({"prompt": "x", "frames": 10})}),
        "frames a string": dict(files={"image": ("a.png", png)},
                                data={"options": json.dumps({"prompt": "x", "frames": "many"})}),
        "unknown preset": dict(files={"image": ("a.png", png)},
                               data={"options": json.dumps({"prompt": "x", "preset": "huge"})}),
        "path in an option": dict(files={"image": ("a.png", png)},
                                  data={"options": json.dumps({"prompt": "x", "out": "../../escape.mp4"})}),
        "path in the file name": dict(files={"image": ("../../escape.png", b"\x89PNG\r\n")}, data={"options": options}),
        "server file as a LoRA": dict(files={"image": ("a.png", png)},
                                      data={"options": json.dumps({"prompt": "x", "lora": "/etc/passwd"})}),
        "no prompt": dict(files={"image": ("a.png", png)}, data={"options": "{}"}),
        "not multipart": dict(json={"prompt": "x"}),
        "oversized upload": dict(files={"image": ("a.png", png + b"\0" * (2 << 20))}, data={"options": options}),
    }
    with serving(data, "--max-upload-mb", "1") as server:
        for name, request in bad.items():
            r = server.http.post("/v1/jobs", **request)
            assert 400 <= r.status_code < 500 and set(r.json()) == {"error"}, (name, r.status_code, r.text)
            assert "\n" not in r.json()["error"] and "Traceback" not in r.text, name
        truncated = server.http.post("/v1/jobs", content=b"--xx\r\nContent-Disposition: form-data; name=\"image\"",
                                     headers={"content-type": "multipart/form-data; boundary=xx"})
        assert truncated.status_code in (400, 422) and "error" in truncated.json()
        for path in ("/v1/jobs/..%2F..%2Fetc", "/v1/jobs/0123", f"/v1/jobs/{'a' * 32}/video"):
            assert server.http.get(path).status_code == 404
        assert server.http.get("/v1/jobs").json()["jobs"] == []
        assert sorted(p.name for p in (data / "jobs").iterdir()) == [] if (data / "jobs").exists() else True
        assert not list(tmp_path.rglob("escape*"))
        assert server.http.get("/healthz").json()["ok"]

    token = tmp_path / "tokens"
    token.write_text("# clients\n" + "t" * 40 + "\n")
    r = run_process([sys.executable, "-m", "swifti2v", "serve", "--host", "0.0.0.0", "--data-dir", str(data)])
    assert r.returncode == 2 and "--token-file" in r.stderr and "Traceback" not in r.stderr
    with serving(data, "--host", "0.0.0.0", "--token-file", str(token), "--max-queued", "1") as server:
        files = {"image": ("a.png", png)}
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "t" * 40}):
            r = server.http.post("/v1/jobs", files=files, data={"options": options}, headers=headers)
            assert r.status_code == 401 and "bearer token" in r.json()["error"]
            assert server.http.get("/v1/jobs", headers=headers).status_code == 401
        mine = {"Authorization": "Bearer " + "t" * 40}
        ok = server.http.post("/v1/jobs", files=files, data={"options": options}, headers=mine)
        assert ok.status_code == 201 and len(ok.json()["id"]) == 32
        over = server.http.post("/v1/jobs", files=files, data={"options": options}, headers=mine)
        assert over.status_code == 429 and "1 jobs queued or running" in over.json()["error"]
        assert "/v1/jobs/{job_id}" in server.http.get("/openapi.json").json()["paths"]


# ---------------------------------------------------------------- several hosts on one PostgreSQL queue

def _postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


@pytest.fixture
def postgres():
    """A real PostgreSQL server of this test's own: initdb in a temporary folder, a free port on 127.0.0.1."""
    bindir = _postgres_bin()
    if bindir is None:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql; .ci/run does)")
    folder = Path(tempfile.mkdtemp(prefix="swifti2v-pg-"))
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_user:
        shutil.chown(folder, "postgres")
    port = free_port()
    run_process(as_user + [str(bindir / "initdb"), "-D", str(folder / "db"), "-A", "trust", "-U", "postgres"],
                check=True, timeout=120)
    start = as_user + [str(bindir / "pg_ctl"), "-D", str(folder / "db"), "-l", str(folder / "log"), "-w", "-o",
                       f"-p {port} -k {folder} -c listen_addresses=127.0.0.1", "start"]
    run_process(start, check=True, timeout=120)
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(as_user + [str(bindir / "pg_ctl"), "-D", str(folder / "db"), "-m", "immediate", "stop"],
                       capture_output=True, timeout=60)
        shutil.rmtree(folder, ignore_errors=True)


def test_two_servers_on_one_postgresql_queue_run_each_job_once_and_take_over_a_dead_ones(tmp_path, image_file,
                                                                                         postgres):
    from swifti2v.serve.queue import JobQueue, database_url

    shared = tmp_path / "shared"
    args = ("--db", postgres, "--lease", "4")
    a, b = Server(shared, *args), Server(shared, *args)
    try:
        slow = {"prompt": "the camera pans left", "seed": 9, **SLOW}
        ids = [a.submit(image_file, **slow)["id"]]
        ids += [(a if i % 2 else b).submit(image_file, prompt="the camera pans right", seed=i, **SMALL)["id"]
                for i in range(5)]
        job = a.wait(ids[0], until=in_stage2)
        victim, survivor = (a, b) if job["worker"].split("/")[1] in _server_of(a) else (b, a)
        victim.kill()
        ended = [survivor.wait(job_id, timeout=600) for job_id in ids]
        assert [j["state"] for j in ended] == ["done"] * 6, ended
        queue = JobQueue(database_url(postgres, shared))
        runs = {job_id: [x["outcome"] for x in queue.attempts_of(job_id)] for job_id in ids}
        assert runs[ids[0]] == ["lost: its lease ran out", "done"], runs
        assert all(outcomes.count("done") == 1 for outcomes in runs.values()), runs
        workers = {x["worker"].rsplit("/", 2)[0] for job_id in ids for x in queue.attempts_of(job_id)}
        assert len(workers) == 2, workers  # both servers ran jobs
        assert survivor.http.get(f"/v1/jobs/{ids[0]}/video").content[4:8] == b"ftyp"
    finally:
        a.stop()
        b.stop()


def _server_of(server: Server) -> str:
    return server.http.get("/healthz").json()["workers"][0]["id"].split("/")[1]


def test_bench_serve_measures_a_loaded_and_an_unloaded_job(tmp_path, image_file):
    out = tmp_path / "load"
    r = run_process([sys.executable, "-m", "swifti2v", "bench", "serve", "--image", str(image_file), "--frames", "5",
                     "--height", "96", "--width", "160", "--rate", "20", "--seconds", "2", "--out", str(out), "-q"],
                    timeout=300)
    assert r.returncode == 0, r.stderr
    result = json.loads(out.with_suffix(".json").read_text())
    load = result["load"]
    assert load["requests"] >= 40 and load["failures"] == 0 and load["p50_ms"] <= load["p99_ms"] <= load["max_ms"]
    assert result["job_wall_unloaded_s"] > 0 and result["wall_ratio"] > 0 and load["server_cpu_ms_per_request"] > 0
    assert "| 20/s |" in out.with_suffix(".md").read_text()
