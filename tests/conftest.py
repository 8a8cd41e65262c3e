"""Shared fixtures: tiny Wan-architecture components (the `debug-random` preset) built in code; subprocesses
that cannot outlive their test; the tiers, marked by folder (unit, equivalence, integration, gpu) and by what a test
starts (`subprocess`: the CLI in a process, torchrun, a browser, a server).

    pytest                                      # the default tier: what CI and the README run
    pytest -m "not slow and not subprocess"     # the inner loop (docs/architecture.md has its time)
"""

from __future__ import annotations

import ast
import contextlib
import inspect
import os
import signal
import socket
import subprocess
import tempfile
import time

import numpy as np
import pytest
import torch
from PIL import Image

from swifti2v.models.components import DEBUG_RANDOM, load_stage1, load_stage2, load_text_encoder

CPU = torch.device("cpu")


@pytest.fixture(scope="session")
def stage2_concat():
    return load_stage2(DEBUG_RANDOM, None, True, CPU, torch.float32)


@pytest.fixture(scope="session")
def stage2_refine():
    return load_stage2(DEBUG_RANDOM, None, False, CPU, torch.float32)


@pytest.fixture(scope="session")
def stage1():
    return load_stage1(DEBUG_RANDOM, CPU, torch.float32)


@pytest.fixture(scope="session")
def text():
    return load_text_encoder(DEBUG_RANDOM, CPU, torch.float32)


@pytest.fixture(scope="session")
def wan_folders(tmp_path_factory):
    """Wan2.1-I2V-like (CLIP), Wan2.2-I2V-A14B-like (two experts, boundary 0.9) and TI2V-5B-like pipeline folders
    with tiny weights, saved as diffusers saves them (the real loading path, as on the Hub)."""
    from diffusers import FlowMatchEulerDiscreteScheduler, WanImageToVideoPipeline, WanPipeline

    from swifti2v.models import debug

    root = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    tok, te = debug.tiny_tokenizer(), debug.tiny_text_encoder()
    clip, proc = debug.tiny_image_encoder()
    sched = FlowMatchEulerDiscreteScheduler(shift=5.0)
    WanImageToVideoPipeline(tokenizer=tok, text_encoder=te, vae=debug.tiny_vae_21(), scheduler=sched,
                            image_processor=proc, image_encoder=clip,
                            transformer=debug.tiny_stage1_transformer()).save_pretrained(root / "i2v")
    expert = lambda: debug._tiny_dit(in_channels=2 * debug.STAGE1_Z + 4, out_channels=debug.STAGE1_Z)  # noqa: E731
    WanImageToVideoPipeline(tokenizer=tok, text_encoder=te, vae=debug.tiny_vae_21(), scheduler=sched,
                            transformer=expert(), transformer_2=expert(),
                            boundary_ratio=0.9).save_pretrained(root / "a14b")
    WanPipeline(tokenizer=tok, text_encoder=te, vae=debug.tiny_vae_22(), scheduler=sched,
                transformer=debug.tiny_stage2_transformer(), expand_timesteps=True).save_pretrained(root / "ti2v")
    return root


@pytest.fixture(scope="session")
def image_file(tmp_path_factory):
    """A 300x500 textured RGB image."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:300, 0:500]
    base = np.stack([(xx * 0.5) % 255, (yy * 0.8) % 255, ((xx + yy) * 0.3) % 255], -1)
    pixels = np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)
    path = tmp_path_factory.mktemp("img") / "input.png"
    Image.fromarray(pixels).save(path)
    return path


def write_clip(path, frames: int, height: int, width: int, seed: int, dx: int = 3, dy: int = 0, fps: int = 8):
    """A textured image panning by (dx, dy) pixels per frame, as an H.264 mp4."""
    from swifti2v.media import VideoWriter

    rng = np.random.default_rng(seed)
    big = rng.integers(0, 255, (height + abs(dy) * frames + 8, width + abs(dx) * frames + 8, 3)).astype(np.float32)
    big = (big + np.roll(big, 1, 0) + np.roll(big, 1, 1)) / 3  # some spatial correlation
    clip = np.stack([big[abs(dy) * t: abs(dy) * t + height, abs(dx) * t: abs(dx) * t + width] for t in range(frames)])
    with VideoWriter(path, fps) as w:
        w.write(torch.from_numpy(clip).permute(3, 0, 1, 2)[None] / 127.5 - 1)
    return path


@pytest.fixture(scope="session")
def video_folder(tmp_path_factory):
    """Four 256x128 clips of 25 frames with captions (metadata.jsonl)."""
    import json

    root = tmp_path_factory.mktemp("videos")
    rows = []
    for i, (dx, dy) in enumerate([(3, 0), (-3, 0), (0, 2), (0, -2)]):
        write_clip(root / f"clip{i}.mp4", 25, 128, 256, seed=i, dx=dx, dy=dy)
        rows.append({"file": f"clip{i}.mp4", "caption": f"the camera pans {['left', 'right', 'up', 'down'][i]}"})
    (root / "metadata.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return root


def run_process(cmd: list[str], *, timeout: float = 300, env: dict | None = None, cwd=None,
                check: bool = False) -> subprocess.CompletedProcess:
    """Run a command in a process group of its own, and kill the whole group when it ends, fails or times out.

    A launcher (torchrun, accelerate launch) killed alone would leave its workers running; and a command that
    returns while processes it started are still alive fails the test (they would hold ports and GPUs).
    Output goes through files, not pipes, so a leftover process holding them cannot stall the test.
    """
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True, env=env, cwd=cwd, start_new_session=True)
        try:
            proc.wait(timeout=timeout)
        except BaseException:
            kill_group(proc.pid)
            proc.wait()
            raise
        left = kill_group(proc.pid, grace=3.0)
        out.seek(0)
        err.seek(0)
        result = subprocess.CompletedProcess(cmd, proc.returncode, out.read(), err.read())
    assert not left, f"{cmd[:6]} left {left} process(es) running after it exited; stderr: {result.stderr[-2000:]}"
    if check:
        result.check_returncode()
    return result


def run_cli(capsys, *argv: str) -> subprocess.CompletedProcess:
    """`swifti2v ARGV` run in this process (no interpreter start-up, ~10 s each on a small CPU): its exit code,
    stdout and stderr as a subprocess would give them."""
    from swifti2v.cli.main import main

    capsys.readouterr()
    with pytest.raises(SystemExit) as done:
        main(list(argv))
    out = capsys.readouterr()
    return subprocess.CompletedProcess(["swifti2v", *argv], done.value.code, out.out, out.err)


def kill_group(pgid: int, grace: float = 0.0) -> int:
    """SIGKILL every process of group `pgid` still there after `grace` seconds (helpers such as
    multiprocessing's resource tracker exit on their own just after their parent); returns how many there were."""
    import psutil

    members = lambda: [p for p in psutil.process_iter(["pid"]) if _pgid(p.pid) == pgid and p.status() != "zombie"]
    deadline = time.monotonic() + grace
    while members() and time.monotonic() < deadline:
        time.sleep(0.1)
    left = len(members())
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    return left


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


def free_port() -> int:
    """A TCP port nobody listens on now: each multi-process test rendezvouses on its own."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wan_original_name(name: str) -> str:
    """A diffusers WanTransformer3DModel parameter name -> the original Wan name community files use."""
    import re

    from swifti2v.models.lora import BLOCK_NAMES, TOP_NAMES

    if name == "scale_shift_table":
        return "head.modulation"
    m = re.fullmatch(r"blocks\.(\d+)\.scale_shift_table", name)
    if m:
        return f"blocks.{m.group(1)}.modulation"
    module, kind = name.rsplit(".", 1)
    m = re.fullmatch(r"blocks\.(\d+)\.(.+)", module)
    if m:
        block = {v: k for k, v in BLOCK_NAMES.items()}
        return f"blocks.{m.group(1)}.{block[m.group(2)]}.{kind}"
    return f"{ {v: k for k, v in TOP_NAMES.items()}[module]}.{kind}"


def write_wan_gguf(transformer: torch.nn.Module, path, quant: str):
    """A GGUF file of a Wan DiT made the way community files are (the `gguf` package's writer and quantizers):
    original Wan names, each 2-D weight in `quant` where its rows fit the type's block, the rest F32."""
    import gguf

    qtype = gguf.GGMLQuantizationType[quant]
    block = gguf.GGML_QUANT_SIZES[qtype][0]
    writer = gguf.GGUFWriter(str(path), "wan")
    for name, tensor in transformer.state_dict().items():
        data = tensor.float().numpy()
        kind = qtype if data.ndim == 2 and data.shape[-1] % block == 0 else gguf.GGMLQuantizationType.F32
        writer.add_tensor(wan_original_name(name), gguf.quants.quantize(data, kind), raw_dtype=kind)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


TIERS = ("unit", "equivalence", "integration", "gpu")
STARTS_PROCESSES = ("run_process(", "subprocess.run(", "Popen(", "torchrun", "webdriver", ".spawn(")


def _starts_processes(function, module) -> bool:
    """The test's source, or that of a module-level helper or fixture it names, starts another process."""
    try:
        source = inspect.getsource(function)
        names = {n.id for n in ast.walk(ast.parse(source.lstrip())) if isinstance(n, ast.Name)}
        names |= set(inspect.signature(function).parameters)
        found = [getattr(module, n, None) for n in names]
        helpers = [h for h in (getattr(f, "__wrapped__", f) for f in found) if inspect.isfunction(h)]  # fixtures too
        source += "".join(inspect.getsource(h) for h in helpers)
    except (OSError, TypeError, ValueError, SyntaxError):
        return False
    return any(token in source for token in STARTS_PROCESSES)


def pytest_collection_modifyitems(config, items):
    """Mark every test with its folder's tier, and `subprocess` when it starts other processes."""
    for item in items:
        tier = next((t for t in TIERS if f"tests/{t}/" in item.nodeid), None)
        if tier:
            item.add_marker(getattr(pytest.mark, tier))
        if _starts_processes(getattr(item, "function", None), getattr(item, "module", None)):
            item.add_marker(pytest.mark.subprocess)


def pytest_configure(config):
    """SIGTERM (a CI timeout, `kill`) ends the run like Ctrl-C, so the running test's process group is killed
    too (`run_process` kills it on any exception; a default SIGTERM would orphan it)."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupt)


def pytest_sessionfinish(session, exitstatus):
    """No test may leave a process behind: any child of the test run still alive fails it (and is killed)."""
    import psutil

    children = [c for c in psutil.Process().children(recursive=True) if c.status() != psutil.STATUS_ZOMBIE]
    if children:
        names = ", ".join(f"{c.pid} {' '.join(c.cmdline()[:4])}" for c in children)
        for c in children:
            c.kill()
        print(f"\nstray processes left by the tests (killed): {names}")
        session.exitstatus = 1
