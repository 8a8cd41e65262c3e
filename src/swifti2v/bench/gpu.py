"""`swifti2v bench gpu`: the 2K run on a real accelerator with full-size Wan architectures and random
weights (time and memory do not depend on the weight values).

For each memory mode, a fresh set of models goes through `pipeline.generate` (the code users run):
Stage I = Wan2.1-I2V-14B architecture (+ CLIP ViT-H/14, Wan2.1 VAE) at 640x352x81, 4 steps; hybrid
reference (Stage I decode, 2K Wan2.2 VAE encode); Stage II = the TI2V-5B architecture widened for `concat`,
CSG at 2560x1408x81 with the `wan-2k` preset's schedule; 2K decode as the mode does it; mp4 written.
Reported: seconds and peak allocated memory per stage (the sidecar's), total. Then end-to-end Stage II
(`--no-csg`) on the same GPU, as far as memory allows, and each installed attention backend against SDPA.

Not timed: the text encoder (a one-layer stand-in with umt5-xxl's width; the real encoder runs once per
prompt) and loading from disk (weights are initialised in place). `--scale debug` runs the same code with
the debug-random sizes on any device (the CPU smoke test).
"""

from __future__ import annotations

import platform
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from swifti2v import pipeline
from swifti2v.config import ATTENTION_BACKENDS, MEMORY_MODES, QUANTS, RunConfig
from swifti2v.errors import UserError
from swifti2v.models import specs
from swifti2v.models.components import (
    DEBUG_RANDOM,
    Components,
    Stage1Components,
    Stage2Components,
    load_stage1,
    load_stage2,
    load_text_encoder,
)
from swifti2v.models.placement import get_placement, load_device
from swifti2v.models.quant import quantize_dit
from swifti2v.models.speed import attention_error, check_attention
from swifti2v.models.text import TextEncoder
from swifti2v.models.vae import WanVAE
from swifti2v.presets import get_preset
from swifti2v.runtime import StageTimer, resolve_device
from swifti2v.stage2 import add_detail


@dataclass(frozen=True)
class GpuBenchConfig:
    scale: str = "full"  # "full": Wan 14B + 5B architectures at 2K; "debug": debug-random sizes (smoke test)
    modes: tuple[str, ...] = MEMORY_MODES
    end_to_end: bool = True
    device: str = "auto"
    compile: bool = False
    quants: tuple[str, ...] = ("none",)  # --quant: each mode runs with the DiTs quantized in-process each way

    def __post_init__(self):
        unknown = [m for m in self.modes if m not in MEMORY_MODES]
        if unknown:
            raise UserError(f"--modes {','.join(unknown)} unknown; use some of {','.join(MEMORY_MODES)}")
        unknown = [q for q in self.quants if q not in QUANTS]
        if unknown:
            raise UserError(f"--quant {','.join(unknown)} unknown; use some of {','.join(QUANTS)} (GGUF files are "
                            "read from disk: time them with `generate --stage1-weights`)")


def _text_stand_in(device: torch.device, dtype: torch.dtype) -> TextEncoder:
    """umt5-xxl's width, one layer, byte vocabulary: right shapes, negligible cost (not what is measured)."""
    from transformers import UMT5Config, UMT5EncoderModel

    from swifti2v.models import debug

    cfg = UMT5Config(**{**specs.UMT5_XXL, "num_layers": 1, "vocab_size": 259, "pad_token_id": 0, "eos_token_id": 1})
    model = specs.random_module(lambda: UMT5EncoderModel(cfg), device, dtype)
    return TextEncoder(debug.tiny_tokenizer(), model)


def full_size_components(cfg: RunConfig, device: torch.device, dtype: torch.dtype) -> Components:
    """Random-weight Wan2.1-I2V-14B (+ CLIP ViT-H/14, Wan2.1 VAE) and a concat TI2V-5B (+ Wan2.2 VAE),
    each initialised on the accelerator and left where the memory mode loads it."""
    from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanImageToVideoPipeline
    from diffusers import WanTransformer3DModel as Wan
    from transformers import CLIPImageProcessorPil, CLIPVisionConfig, CLIPVisionModel

    p = get_placement(cfg.memory_mode)
    home = load_device(p, device, "models")

    def build(make, model_dtype=dtype):
        return specs.random_module(make, device, model_dtype).to(home)

    stage2_cfg = {**specs.WAN22_TI2V_5B, "in_channels": 2 * specs.WAN22_TI2V_5B["in_channels"]}
    pipe = WanImageToVideoPipeline(
        tokenizer=None, text_encoder=None, transformer=build(lambda: Wan(**specs.WAN21_I2V_14B)),
        vae=build(lambda: AutoencoderKLWan(**specs.vae_init(specs.WAN21_VAE))),
        image_encoder=build(lambda: CLIPVisionModel(CLIPVisionConfig(**specs.CLIP_VIT_H14)), torch.float32),
        image_processor=CLIPImageProcessorPil(), scheduler=FlowMatchEulerDiscreteScheduler(shift=5.0))
    stage2 = Stage2Components(build(lambda: Wan(**stage2_cfg)),
                              WanVAE(build(lambda: AutoencoderKLWan(**specs.vae_init(specs.WAN22_VAE)))), concat=True)
    return Components(text=_text_stand_in(load_device(p, device, "text"), dtype), stage2=stage2,
                      stage1=Stage1Components(pipe=pipe, vae=WanVAE(pipe.vae)))


def debug_components(cfg: RunConfig, device: torch.device, dtype: torch.dtype) -> Components:
    p = get_placement(cfg.memory_mode)
    home = load_device(p, device, "models")
    return Components(text=load_text_encoder(DEBUG_RANDOM, load_device(p, device, "text"), dtype),
                      stage2=load_stage2(DEBUG_RANDOM, None, True, home, dtype),
                      stage1=load_stage1(DEBUG_RANDOM, home, dtype))


def _run_config(c: GpuBenchConfig, mode: str, quant: str = "none") -> RunConfig:
    base = get_preset("wan-2k" if c.scale == "full" else "debug-random")
    stage1 = replace(base.stage1, loras=())  # random weights: no LoRA to merge
    return replace(base, stage1=stage1, memory_mode=mode, device=c.device, compile=c.compile, quant=quant)


def _gib(device: torch.device) -> float:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")


def run_mode(c: GpuBenchConfig, mode: str, image: Path, work: Path, quant: str = "none") -> dict:
    """One memory mode x quant through `pipeline.generate` (forced: a mode predicted not to fit is measured
    until it runs out of memory, as a user with --force would see it)."""
    cfg = _run_config(c, mode, quant)
    s = pipeline.setup(cfg, force=True)
    t0 = time.perf_counter()
    build = full_size_components if c.scale == "full" else debug_components
    comps = build(cfg, s.device, s.dtype)
    if quant != "none":
        for dit in s.placer.dits(comps):
            quantize_dit(dit, quant)
    pipeline.prepare_components(s, comps)
    built = time.perf_counter() - t0
    info = pipeline.generate(cfg, image, "the camera pans left over a harbour", work / f"{mode}-{quant}.mp4",
                             components=comps, force=True).info
    seconds = {k: v for k, v in info["seconds"].items() if k != "load"}
    return {"mode": mode, "quant": quant, "build_s": round(built, 1), "seconds": seconds,
            "total_s": round(sum(seconds.values()), 2), "stage_peak_gib": info["stage_peak_gib"],
            "memory": info["memory"], "dit_weights": info["dit_weights"], "comps": comps}


def end_to_end_stage2(c: GpuBenchConfig, comps: Components, device: torch.device) -> dict:
    """Stage II over the whole clip in one window, on random z_ref: seconds and peak, or how it failed."""
    cfg = _run_config(c, "fast")
    v, s2 = cfg.video, replace(cfg.stage2, csg=False)
    vae = comps.stage2.vae
    shape = (1, vae.z_dim, v.num_blocks, v.height // vae.spatial, v.width // vae.spatial)
    z_ref = torch.randn(shape, device=device)
    text = torch.zeros(1, 512, comps.stage2.transformer.config.text_dim, device=device)
    timer = StageTimer(device)
    try:
        with timer("stage2_end_to_end"):
            add_detail(comps.stage2, z_ref, text, s2, seed=0)
    except torch.OutOfMemoryError:
        return {"status": "out of memory", "tokens": shape[2] * shape[3] * shape[4] // 4}
    return {"status": "ok", "seconds": round(timer.seconds["stage2_end_to_end"], 2),
            "peak_gib": round(timer.peaks_gib.get("stage2_end_to_end", _gib(device)), 2)}


def attention_backends(device: torch.device) -> dict[str, object]:
    out: dict[str, object] = {}
    for name in ATTENTION_BACKENDS[1:]:
        try:
            check_attention(name)
            out[name] = attention_error(name, device)
        except (UserError, RuntimeError, ValueError) as e:
            out[name] = f"unavailable: {str(e).splitlines()[0][:120]}"
    return out


def environment(device: torch.device) -> dict:
    import diffusers

    env = {"torch": torch.__version__, "diffusers": diffusers.__version__, "python": platform.python_version(),
           "device": str(device)}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1), cuda=torch.version.cuda,
                   driver=_driver())
    return env


def _driver() -> str:
    try:
        import subprocess

        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30)
        return out.stdout.strip().splitlines()[0]
    except (OSError, IndexError, subprocess.SubprocessError):
        return "unknown"


def run_gpu_bench(c: GpuBenchConfig, progress: Callable[[str, int, int], None]) -> dict:
    device = resolve_device(c.device)
    if c.scale == "full" and device.type != "cuda":
        raise UserError("bench gpu at full size needs a CUDA GPU; `--scale debug` runs the same code on the CPU")
    results, e2e = [], None
    with tempfile.TemporaryDirectory(prefix="swifti2v-gpu-") as tmp:
        work = Path(tmp)
        image = work / "input.png"
        Image.fromarray(np.random.default_rng(0).integers(0, 256, (1408, 2560, 3), dtype=np.uint8)).save(image)
        runs = [(mode, quant) for mode in c.modes for quant in c.quants]
        for i, (mode, quant) in enumerate(runs):
            row = run_mode(c, mode, image, work, quant)
            comps = row.pop("comps")
            if c.end_to_end and mode == "fast" and e2e is None:
                comps.stage1 = None  # the 14B leaves; Stage II gets the GPU to itself
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                    torch.cuda.reset_peak_memory_stats(device)
                e2e = end_to_end_stage2(c, comps, device)
            del comps
            if device.type == "cuda":
                torch.cuda.empty_cache()
            results.append(row)
            progress("memory modes", i + 1, len(runs))
    return {"config": asdict(c), "environment": environment(device), "modes": results, "stage2_end_to_end": e2e,
            "attention_vs_sdpa": attention_backends(device) if device.type == "cuda" else {}}


def to_markdown(r: dict) -> str:
    env = r["environment"]
    lines = [f"GPU benchmark: {env.get('gpu', env['device'])}, driver {env.get('driver', '-')}, CUDA "
             f"{env.get('cuda', '-')}, torch {env['torch']}, diffusers {env['diffusers']}; "
             f"scale {r['config']['scale']}.",
             "", "| memory mode | quant | Stage I s | reference s | Stage II s | decode s | mp4 write s | total s | "
             "peak GiB (stage I / reference / stage II) |", "|---|---|---|---|---|---|---|---|---|"]
    for row in r["modes"]:
        s, p = row["seconds"], row["stage_peak_gib"]
        peaks = " / ".join(f"{p.get(k, float('nan')):.1f}" for k in ("stage1", "reference", "stage2"))
        lines.append(f"| {row['mode']} | {row.get('quant', 'none')} | {s.get('stage1', 0):.1f} | "
                     f"{s.get('reference', 0):.1f} | {s.get('stage2', 0):.1f} | {s.get('decode', 0):.1f} | "
                     f"{s.get('write', 0):.1f} | **{row['total_s']:.1f}** | {peaks} |")
    if r["stage2_end_to_end"]:
        e = r["stage2_end_to_end"]
        lines += ["", f"End-to-end Stage II (one window): {e}"]
    if r["attention_vs_sdpa"]:
        errors = (f"{k}: {v if isinstance(v, str) else f'{v:.2e}'}" for k, v in r["attention_vs_sdpa"].items())
        lines += ["", "Attention backends vs SDPA (max relative error): " + ", ".join(errors)]
    return "\n".join(lines) + "\n"
