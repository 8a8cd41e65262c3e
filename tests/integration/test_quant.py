"""Quantized DiT weights on the bundled tiny models: GGUF files written here the way community files are
(the `gguf` package, original Wan names), loaded through the same path as a user's file; torchao int8;
a LoRA on a GGUF Stage I as an unfused adapter; bad files and settings as one-line errors."""

import json

import numpy as np
import pytest
import torch
from diffusers import WanTransformer3DModel

from conftest import run_cli, write_wan_gguf
from swifti2v import SwiftI2V
from swifti2v.errors import UserError
from swifti2v.models.quant import stored_bytes
from swifti2v.presets import get_preset, resolve, with_overrides

SMALL = dict(frames=9, height=128, width=224)
PROMPT = "the camera pans left"


def _dit(stage: str) -> WanTransformer3DModel:
    return WanTransformer3DModel.from_pretrained(resolve(getattr(get_preset("tiny"), stage).model),
                                                 subfolder="transformer")


@pytest.fixture(scope="module")
def ggufs(tmp_path_factory):
    """{(stage, quant): path} for Q8_0 and Q4_0 of both tiny DiTs."""
    d = tmp_path_factory.mktemp("gguf")
    return {(stage, q): write_wan_gguf(_dit(stage), d / f"{stage}-{q}.gguf", q)
            for stage in ("stage1", "stage2") for q in ("Q8_0", "Q4_0")}


def _frames(image_file, **settings) -> tuple[np.ndarray, dict]:
    result = SwiftI2V(with_overrides(get_preset("tiny"), **SMALL, **settings)).generate(image_file, PROMPT)
    return result.frames.astype(np.float64), result.info


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255.0**2 / max(np.mean((a - b) ** 2), 1e-10)))


@pytest.fixture(scope="module")
def bf16(image_file):
    return _frames(image_file)[0]


@pytest.mark.parametrize(("quant", "floor_db"), [("Q8_0", 35.0), ("Q4_0", 25.0)])
def test_gguf_files_of_both_stages_generate_close_to_the_full_precision_video(image_file, ggufs, bf16, quant,
                                                                              floor_db):
    frames, info = _frames(image_file, stage1_weights=str(ggufs["stage1", quant]),
                           stage2_weights=str(ggufs["stage2", quant]))
    weights = info["dit_weights"]
    assert weights["stage1"]["storage"] == weights["stage2"]["storage"] == f"gguf {quant}", weights
    print(f"{quant}: PSNR {psnr(frames, bf16):.1f} dB against the full-precision video; DiT GiB {weights}")
    assert psnr(frames, bf16) >= floor_db


def test_int8_weights_are_smaller_and_generate_close_to_full_precision(image_file, bf16):
    frames, info = _frames(image_file, quant="int8")
    full = stored_bytes(_dit("stage1")) / 2**30
    stage1 = info["dit_weights"]["stage1"]
    assert stage1["storage"] == "int8" and info["config"]["quant"] == "int8"
    print(f"int8: PSNR {psnr(frames, bf16):.1f} dB; Stage I weights {full:.4f} -> {stage1['gib']:.4f} GiB "
          f"({full / stage1['gib']:.2f}x smaller)")
    assert stage1["gib"] < 0.4 * full
    assert psnr(frames, bf16) >= 35.0


def _lora_file(path) -> str:
    """A LightX2V-format LoRA of the tiny Stage I: random low-rank pairs on every block's q and ffn.0."""
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(3)
    dim, ffn = 384, 1536
    sd = {}
    for i in range(4):
        for name, (out_f, in_f) in (("self_attn.q", (dim, dim)), ("ffn.0", (ffn, dim))):
            sd[f"diffusion_model.blocks.{i}.{name}.lora_down.weight"] = torch.randn(4, in_f, generator=g) * 0.3
            sd[f"diffusion_model.blocks.{i}.{name}.lora_up.weight"] = torch.randn(out_f, 4, generator=g) * 0.3
    save_file(sd, str(path))
    return str(path)


def test_a_lora_on_a_gguf_stage1_changes_the_video_as_on_full_precision(image_file, ggufs, bf16, tmp_path):
    lora = _lora_file(tmp_path / "lora.safetensors") + "@0.9"
    with_lora, info = _frames(image_file, lora=lora)
    gguf = str(ggufs["stage1", "Q8_0"])
    base_q, _ = _frames(image_file, stage1_weights=gguf)
    lora_q, info_q = _frames(image_file, stage1_weights=gguf, lora=lora)
    assert info["inputs"]["loras"][0]["how"] == "fused"
    assert info_q["inputs"]["loras"][0]["how"] == "unfused adapter" and info_q["inputs"]["loras"][0]["pairs"] == 8
    delta, delta_q = with_lora - bf16, lora_q - base_q
    change = np.abs(delta).mean()
    print(f"LoRA change: {change:.2f} (bf16) vs {np.abs(delta_q).mean():.2f} (Q8_0); their difference "
          f"{np.abs(delta - delta_q).mean():.2f} (mean abs, 0-255)")
    assert change > 1.0  # the LoRA does change the video
    assert np.abs(delta - delta_q).mean() < 0.1 * change


def test_bad_gguf_files_and_settings_are_one_line_errors(capsys, ggufs, image_file, tmp_path):
    data = ggufs["stage1", "Q8_0"].read_bytes()
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(data[: len(data) // 2])
    unknown = tmp_path / "unknown.gguf"  # a tensor type id no GGML version has
    unknown.write_bytes(_retyped(ggufs["stage1", "Q8_0"]))
    out = tmp_path / "out.mp4"
    cases = [
        (["--stage1-weights", str(truncated)], "not a readable GGUF file"),
        (["--stage1-weights", str(ggufs["stage2", "Q8_0"])], "Stage I transformer slot expects"),
        (["--stage2-weights", str(ggufs["stage1", "Q8_0"])], "Stage II"),
        (["--stage1-weights", str(unknown)], "not a readable GGUF file"),
        (["--stage1-weights", str(tmp_path / "missing.gguf")], "not found"),
        (["--stage1-weights", "high=" + str(ggufs["stage1", "Q8_0"])], "one DiT"),
        (["--quant", "fp8"], "fp8 units"),
        (["--quant", "int4"], "invalid choice"),
    ]
    for extra, words in cases:
        r = run_cli(capsys, "generate", "--image", str(image_file), "--prompt", PROMPT, "--out", str(out),
                    "--frames", "9", "--height", "128", "--width", "224", *extra)
        assert r.returncode == 2 and words in r.stderr and r.stderr.count("\n") == 1, (extra, r.stderr)
        assert not out.exists() and not list(tmp_path.glob("*.mp4*")) and not list(tmp_path.glob(".out*"))


def _retyped(path) -> bytes:
    """The GGUF file with its first tensor's type id replaced by one GGML does not define (a newer quant type)."""
    import gguf

    data = path.read_bytes()
    name = gguf.GGUFReader(path).tensors[0].name.encode()
    at = data.index(name) + len(name)  # tensor info: name, n_dims (u32), dims (u64 each), type (u32), offset
    at += 4 + 8 * int.from_bytes(data[at:at + 4], "little")
    return data[:at] + (250).to_bytes(4, "little") + data[at + 4:]


def test_the_api_refuses_unknown_quant_and_stage_mismatched_files(ggufs):
    with pytest.raises(UserError, match="--quant 'q3' is unknown"):
        SwiftI2V(with_overrides(get_preset("tiny"), quant="q3"))
    cfg = with_overrides(get_preset("tiny"), stage2_weights=str(ggufs["stage1", "Q4_0"]))
    with pytest.raises(UserError, match="dim 384, 4 layers, 388 input channels"):
        SwiftI2V(cfg)
    assert json.loads(json.dumps(cfg.to_dict()))["stage2"]["weights"].endswith("stage1-Q4_0.gguf")


@pytest.mark.parametrize(("preset", "size", "words"), [
    ("debug-random", ("32000", "32000", "9"), "predicted to need"),
    ("tiny", ("8192", "8192", "81"), "has positions for 256 latent rows")])
def test_a_run_that_cannot_fit_is_refused_at_once_naming_what_fits(capsys, image_file, tmp_path, preset, size, words):
    """Before anything loads: one line, exit 2, nothing written, well under 10 s (in this process; a fresh
    `swifti2v` process adds its ~6 s of imports)."""
    import time

    out = tmp_path / "big.mp4"
    t0 = time.perf_counter()
    r = run_cli(capsys, "generate", "--preset", preset, "--image", str(image_file), "--prompt", PROMPT, "--out",
                str(out), "--height", size[0], "--width", size[1], "--frames", size[2])
    seconds = time.perf_counter() - t0
    print(f"{preset} {'x'.join(size)}: refused in {seconds:.1f} s: {r.stderr.strip()}")
    assert r.returncode == 2 and words in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert seconds < 10 and list(tmp_path.iterdir()) == []
    if preset == "debug-random":
        assert "is predicted to fit" in r.stderr and "--force" in r.stderr


def test_force_runs_what_the_check_refuses_and_every_call_is_checked(image_file, monkeypatch):
    """With 0.5 GiB free the tiny job (predicted ~0.4 GiB + 2 GiB headroom) is refused by the API, at loading
    and per call; force=True runs it."""
    from swifti2v import memory

    monkeypatch.setattr(memory, "free_gib", lambda device: 0.5)
    cfg = with_overrides(get_preset("tiny"), **SMALL)
    with pytest.raises(UserError, match="predicted to need .* GiB of RAM .* 0.5 GiB is free"):
        SwiftI2V(cfg)
    result = SwiftI2V(cfg, force=True).generate(image_file, PROMPT)
    assert result.frames.shape == (9, 128, 224, 3)
    monkeypatch.setattr(memory, "free_gib", lambda device: 8.0)
    pipe = SwiftI2V(cfg)
    with pytest.raises(UserError, match="--height .* --width .* is predicted to fit"):
        pipe.generate(image_file, PROMPT, height=2048, width=2048, frames=81)
