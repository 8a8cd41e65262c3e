"""A small client for `swifti2v serve`: upload, follow with progress bars, download.

    from swifti2v.client import Client
    c = Client("http://127.0.0.1:8000")                      # token="..." when the server has --token-file
    job = c.submit("photo.jpg", prompt="the camera pans left", seed=3, frames=33)
    c.wait(job["id"])                                        # progress bars per stage and segment
    c.download(job["id"], "clip.mp4")                        # also "sidecar" (the JSON) and "stage1"

Any HTTP client works the same way (docs/serve.md has curl); this one turns the server's JSON errors into UserError.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import httpx

from swifti2v.errors import UserError

FINAL = ("done", "failed", "cancelled")


class Client:
    def __init__(self, server: str, token: str | None = None, timeout: float = 60.0):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.server = server.rstrip("/")
        self.http = httpx.Client(base_url=self.server, headers=headers, timeout=timeout)

    def _call(self, method: str, path: str, **kw) -> httpx.Response:
        try:
            r = self.http.request(method, path, **kw)
        except httpx.TransportError as e:
            raise UserError(f"cannot reach {self.server} ({type(e).__name__}); is `swifti2v serve` running "
                            "there?") from None
        if r.status_code >= 400:
            self._raise(r)
        return r

    def submit(self, image: str | Path, motion: str | Path | None = None, **options) -> dict:
        """Queue a job: `generate` from an image and options (prompt=..., seed=..., frames=..., any generate option
        by name), or `refine` with a low-res `motion` video. Returns the job (its "id", "state", "position")."""
        files = {"image": (Path(image).name, Path(image).read_bytes())}
        if motion is not None:
            files["motion"] = (Path(motion).name, Path(motion).read_bytes())
        options = {k: v for k, v in options.items() if v is not None}
        return self._call("POST", "/v1/jobs", files=files, data={"options": json.dumps(options)}).json()

    def job(self, job_id: str) -> dict:
        return self._call("GET", f"/v1/jobs/{job_id}").json()

    def jobs(self, state: str | None = None) -> list[dict]:
        return self._call("GET", "/v1/jobs", params={"state": state} if state else {}).json()["jobs"]

    def cancel(self, job_id: str) -> dict:
        return self._call("DELETE", f"/v1/jobs/{job_id}").json()

    def wait(self, job_id: str, poll_s: float = 1.0, progress: bool = True, timeout_s: float | None = None) -> dict:
        """Poll until the job ends; with `progress`, a bar per stage and segment. A failed or cancelled job is a
        UserError with the server's reason."""
        bars: dict = {}
        start = time.monotonic()
        try:
            while True:
                job = self.job(job_id)
                if progress:
                    _show(bars, job)
                if job["state"] in FINAL:
                    break
                if timeout_s is not None and time.monotonic() - start > timeout_s:
                    raise UserError(f"job {job_id} is still {job['state']} after {timeout_s:g} s")
                time.sleep(poll_s)
        finally:
            for bar in bars.values():
                bar.close()
        if job["state"] != "done":
            raise UserError(f"job {job_id} {job['state']}: {job.get('error') or 'no reason given'}")
        return job

    def download(self, job_id: str, out: str | Path, what: str = "video") -> Path:
        """A finished job's file (video, sidecar or stage1) to `out`, complete or not at all."""
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.partial")
        try:
            with self.http.stream("GET", f"/v1/jobs/{job_id}/{what}") as r:
                if r.status_code >= 400:
                    r.read()
                    self._raise(r)
                with open(tmp, "wb") as f:
                    for chunk in r.iter_bytes():
                        f.write(chunk)
        except httpx.TransportError as e:
            tmp.unlink(missing_ok=True)
            raise UserError(f"cannot reach {self.server} ({type(e).__name__})") from None
        os.replace(tmp, out)
        return out

    def _raise(self, r: httpx.Response) -> None:
        try:
            message = r.json()["error"]
        except (ValueError, KeyError, TypeError):
            message = r.text[:200]
        raise UserError(f"{self.server} answered {r.status_code}: {message}")

    def close(self) -> None:
        self.http.close()


def _show(bars: dict, job: dict) -> None:
    from tqdm.auto import tqdm

    if job["state"] == "queued" and "queue" not in bars:
        bars["queue"] = tqdm(desc=f"queued (position {job.get('position')})", total=None, bar_format="{desc}")
    for name, (done, total) in job.get("progress", {}).items():
        bar = bars.get(name)
        if bar is None:
            bar = bars[name] = tqdm(total=total, desc=name, unit="step")
        bar.update(done - bar.n)
