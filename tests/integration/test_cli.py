"""The `swifti2v` command in a subprocess, as a user runs it."""

import json
import sys

import pytest
import torch

from conftest import run_cli, run_process
from swifti2v.media import VideoWriter, probe_video
from swifti2v.presets import PRESETS


def swifti2v(*args, cwd=None):
    return run_process([sys.executable, "-m", "swifti2v", *map(str, args)], cwd=cwd, timeout=300)


def test_generate_debug_random_writes_mp4_and_sidecar(image_file, tmp_path):
    out = tmp_path / "clip.mp4"
    r = swifti2v("generate", "--preset", "debug-random", "--image", image_file, "--prompt", "a red square moves up",
                 "--out", out, "--frames", "17", "--seed", "3", "-q")
    assert r.returncode == 0, r.stderr
    meta = probe_video(out)
    assert (meta["frames"], meta["height"], meta["width"], meta["fps"]) == (17, 128, 256, 8.0)
    info = json.loads(out.with_suffix(".json").read_text())
    assert info["config"]["video"]["frames"] == 17 and info["config"]["seed"] == 3
    assert info["plan"]["num_segments"] == 2 and info["plan"]["segments"][1]["positions"] == [0, 3, 4]
    assert {"stage1", "reference", "stage2", "decode", "write"} <= set(info["seconds"])
    assert info["memory"]
    assert not list(tmp_path.glob(".*partial*")), "no temporary files left behind"


def test_refine_bring_your_own_motion(image_file, tmp_path):
    import torch

    motion = tmp_path / "motion.mp4"
    with VideoWriter(motion, fps=8) as w:
        w.write(torch.rand(1, 3, 23, 48, 80) * 2 - 1)  # any size; 23 frames -> 21 used
    out = tmp_path / "refined.mp4"
    r = swifti2v("refine", "--image", image_file, "--motion", motion, "--out", out, "--mode", "concat",
                 "--width", "192", "--height", "96", "-q")
    assert r.returncode == 0, r.stderr
    meta = probe_video(out)
    assert (meta["frames"], meta["height"], meta["width"]) == (21, 96, 192)
    info = json.loads(out.with_suffix(".json").read_text())
    assert "stage1" not in info["seconds"] and info["inputs"]["motion"].endswith("motion.mp4")


def test_plan_json_needs_no_weights():
    r = swifti2v("plan", "--preset", "wan-2k-refine", "--frames", "81", "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert (info["blocks"], info["num_segments"], info["tokens_per_block"], info["largest_window_tokens"]) == (
        21, 7, 3520, 17600)
    r = swifti2v("plan", "--preset", "wan-2k", "--segment-blocks", "4", "--neighbor-blocks", "2")
    assert r.returncode == 0 and "5 segments" in r.stdout, r.stderr + r.stdout


def test_presets_and_help(capsys):
    r = swifti2v("presets")  # one through the interpreter; the help pages in this process
    assert r.returncode == 0 and len(r.stdout.strip().splitlines()) == len(PRESETS)
    for cmd in ("generate", "refine", "plan"):
        r = run_cli(capsys, cmd, "--help")
        assert r.returncode == 0 and "--segment-blocks" in r.stdout
        if cmd != "plan":
            assert all(flag in r.stdout for flag in ("--memory-mode", "--attention", "--compile"))
    for bench in ("fidelity", "scaling", "cost", "gpu", "serve"):
        assert run_cli(capsys, "bench", bench, "--help").returncode == 0
    r = run_cli(capsys, "eval", "--help")
    assert r.returncode == 0 and all(flag in r.stdout for flag in ("--truth", "--weights", "--segment-frames"))


@pytest.mark.parametrize(
    "args,fragment",
    [
        (["--image", "missing.png"], "missing.png not found"),
        (["--image", "{bad}"], "not a readable image"),
        (["--frames", "20"], "4k+1"),
        (["--height", "100"], "multiple of 32"),
        (["--preset", "wan-8k"], "unknown"),
        (["--prompt", " "], "--prompt is empty"),
        (["--prompt", "x" * 600], "over the encoder's 512"),
        (["--preset", "wan-2k"], "--stage2"),
        (["--stage2", "no/such/ckpt"], "not found"),
        (["--lora", "{zero}"], "zero.safetensors matched no weight of the Stage I model"),
        (["--lora", "high={zero}@0.5"], "has one DiT; drop 'high='"),
        (["--lora", "no/such/lora.safetensors"], "not found"),
        (["--lora-strength", "0.5"], "--lora PATH@0.5"),
    ],
)
def test_user_errors_exit_2_with_one_line(image_file, tmp_path, capsys, args, fragment):
    """In this process (`run_cli`: the same `main`, exit code and stderr without an interpreter start-up each)."""
    from safetensors.torch import save_file

    bad = tmp_path / "notes.png"
    bad.write_text("this is not an image")
    zero = tmp_path / "zero.safetensors"  # a LoRA for a deeper model: none of its blocks exist here
    save_file({"diffusion_model.blocks.77.self_attn.q.lora_down.weight": torch.zeros(2, 8),
               "diffusion_model.blocks.77.self_attn.q.lora_up.weight": torch.zeros(8, 2)}, zero)
    base = {"--image": str(image_file), "--prompt": "x", "--out": str(tmp_path / "o.mp4")}
    for k, v in zip(args[::2], args[1::2], strict=True):
        base[k] = v.replace("{bad}", str(bad)).replace("{zero}", str(zero))
    r = run_cli(capsys, "generate", *[x for kv in base.items() for x in kv], "-q")
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0], r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "o.mp4").exists()


def test_argument_errors_exit_2_with_one_line():
    r = swifti2v("generate", "--prompt", "x")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "--image" in r.stderr
    r = swifti2v("generate", "--image", "a.png", "--prompt", "x", "--out", "o.mp4", "--frames", "many")
    assert r.returncode == 2 and "--frames" in r.stderr
