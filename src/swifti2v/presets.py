"""Named presets: every default of a run in one place."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from swifti2v.config import (
    LatentGeometry,
    LoraFile,
    RunConfig,
    ScheduleConfig,
    Stage1Config,
    Stage2Config,
    VideoConfig,
    lora_list,
    weights_list,
)
from swifti2v.errors import UserError

WAN21_I2V_480P = "Wan-AI/Wan2.1-I2V-14B-480P-Diffusers"
WAN22_I2V_A14B = "Wan-AI/Wan2.2-I2V-A14B-Diffusers"  # a high-noise / low-noise expert pair, no CLIP
WAN22_TI2V_5B = "Wan-AI/Wan2.2-TI2V-5B-Diffusers"
LIGHTX2V_I2V_LORA = (
    "lightx2v/Wan2.1-I2V-14B-480P-StepDistill-CfgDistill-Lightx2v:"
    "loras/Wan21_I2V_14B_lightx2v_cfg_step_distill_lora_rank64.safetensors"
)
# LightX2V's 4-step LoRAs for the A14B pair, one per expert (Hub repo lightx2v/Wan2.2-Distill-Loras, "1022").
LIGHTX2V_A14B_LORAS = tuple(
    LoraFile(f"lightx2v/Wan2.2-Distill-Loras:wan2.2_i2v_A14b_{noise}_noise_lora_rank64_lightx2v_4step_1022.safetensors",
             target=target) for noise, target in (("high", "high"), ("low", "low")))
BUNDLED = "bundled:"  # model sources inside the package's weights/ folder (models/tiny.py)
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


def resolve(source: str) -> str:
    """'bundled:NAME' -> the folder inside the package; anything else unchanged."""
    return str(WEIGHTS_DIR / source.removeprefix(BUNDLED)) if source.startswith(BUNDLED) else source


# LightX2V's distilled sampler: unshifted sigmas [1, .75, .5, .25], shift 5, re-noise between steps.
LIGHTX2V_4STEP = ScheduleConfig(steps=4, shift=5.0, sampler="renoise")


def _debug_random() -> RunConfig:
    return RunConfig(
        preset="debug-random",
        video=VideoConfig(height=128, width=256, frames=25, fps=8),
        stage1=Stage1Config(model="debug-random", schedule=LIGHTX2V_4STEP, window=33),
        stage2=Stage2Config(mode="concat", model="debug-random",
                            schedule=ScheduleConfig(steps=4, shift=3.0, sampler="euler")),
    )


def _bench_cpu() -> RunConfig:
    euler2 = ScheduleConfig(steps=2, shift=3.0, sampler="euler")
    return RunConfig(
        preset="bench-cpu",
        video=VideoConfig(height=192, width=320, frames=33, fps=16),
        stage1=Stage1Config(model="bench-cpu", schedule=euler2),
        stage2=Stage2Config(mode="concat", model="bench-cpu", schedule=euler2,
                            geometry=LatentGeometry(vae_temporal=4, vae_spatial=16, patch=(1, 1, 1))),
    )


TINY_GEOMETRY = LatentGeometry(vae_temporal=4, vae_spatial=8, patch=(1, 1, 1))


def _tiny() -> RunConfig:
    return RunConfig(
        preset="tiny",
        video=VideoConfig(height=288, width=512, frames=33, fps=16),
        stage1=Stage1Config(model=BUNDLED + "tiny/stage1", schedule=ScheduleConfig(steps=4, shift=3.0, sampler="euler"),
                            downscale=4, geometry=TINY_GEOMETRY, window=33),
        stage2=Stage2Config(mode="concat", model=BUNDLED + "tiny/stage2",
                            schedule=ScheduleConfig(steps=1, shift=3.0, sampler="euler"), geometry=TINY_GEOMETRY,
                            tile=128),  # 3 x 5 tiles at 512x288, its training crops' size: 1.7x faster, same gain
    )


def _wan_2k_stage1() -> Stage1Config:
    return Stage1Config(model=WAN21_I2V_480P, schedule=LIGHTX2V_4STEP, loras=(LoraFile(LIGHTX2V_I2V_LORA),),
                        downscale=4)


def _refine_stage2() -> Stage2Config:
    return Stage2Config(mode="refine", model=WAN22_TI2V_5B,
                        schedule=ScheduleConfig(steps=8, shift=5.0, sampler="euler", start_sigma=0.6),
                        geometry=LatentGeometry())


def _wan_2k_refine() -> RunConfig:
    return RunConfig(preset="wan-2k-refine", video=VideoConfig(height=1408, width=2560, frames=81, fps=16),
                     stage1=_wan_2k_stage1(), stage2=_refine_stage2())


def _wan22_2k_refine() -> RunConfig:
    """Stage I on the Wan2.2 I2V A14B pair (the high-noise expert above the boundary sigma the folder's
    model_index.json gives, 0.900 in Wan's own i2v_A14B config), each expert with its own LightX2V 4-step LoRA."""
    stage1 = Stage1Config(model=WAN22_I2V_A14B, schedule=LIGHTX2V_4STEP, loras=LIGHTX2V_A14B_LORAS, downscale=4)
    return RunConfig(preset="wan22-2k-refine", video=VideoConfig(height=1408, width=2560, frames=81, fps=16),
                     stage1=stage1, stage2=_refine_stage2())


def _wan_2k() -> RunConfig:
    return RunConfig(
        preset="wan-2k",
        video=VideoConfig(height=1408, width=2560, frames=81, fps=16),
        stage1=_wan_2k_stage1(),
        stage2=Stage2Config(mode="concat", model=WAN22_TI2V_5B, checkpoint=None,
                            schedule=ScheduleConfig(steps=8, shift=5.0, sampler="euler")),
    )


PRESETS: dict[str, tuple[str, Callable[[], RunConfig]]] = {
    "tiny": ("small models trained on procedural video, bundled in the package: 512x288, 33 frames from a "
             "128x72 Stage I, under a minute on a laptop CPU (docs/results.md)", _tiny),
    "debug-random": ("tiny random-init Wan-architecture models built in code: every code path on CPU in "
                     "seconds (output is noise)", _debug_random),
    "bench-cpu": ("random-init models built in code, Stage II 256 wide x 4 layers at 320x192 (240 tokens per "
                  "latent block): attention and MLPs dominate as at full size; `swifti2v bench scaling`", _bench_cpu),
    "wan-2k-refine": ("Wan2.1-I2V-14B-480P + LightX2V 4-step LoRA at 640x352 -> zero-shot TI2V-5B refine at "
                      "2560x1408, 81 frames", _wan_2k_refine),
    "wan-2k": ("same Stage I -> trained concat Stage II (pass --stage2 CKPT) at 2560x1408, 81 frames", _wan_2k),
    "wan22-2k-refine": ("Wan2.2-I2V-A14B expert pair + LightX2V's per-expert 4-step LoRAs at 640x352 -> zero-shot "
                        "TI2V-5B refine at 2560x1408, 81 frames", _wan22_2k_refine),
}
DEFAULT_PRESET = "tiny"


def get_preset(name: str) -> RunConfig:
    if name not in PRESETS:
        raise UserError(f"--preset {name!r} is unknown; choose one of: {', '.join(PRESETS)} (see `swifti2v presets`)")
    return PRESETS[name][1]()


# Settings a run may change, by their CLI names with underscores (the CLI, `batch` jobs, the Python API).
OVERRIDES = ("height", "width", "frames", "fps", "seed", "stage1_steps", "lora", "mode", "stage2",
             "stage2_steps", "stage2_sampler", "start_sigma", "segment_blocks", "neighbor_blocks", "no_csg",
             "device", "dtype", "memory_mode", "attention", "compile", "parallel", "quant", "stage1_weights",
             "stage2_weights", "extend", "stage2_tile")
# Those that choose or place the models: fixed once the models are loaded.
MODEL_OVERRIDES = ("lora", "mode", "stage2", "device", "dtype", "memory_mode", "attention", "compile", "parallel",
                   "quant", "stage1_weights", "stage2_weights")


def _set(obj, **changes):
    changes = {k: v for k, v in changes.items() if v is not None}
    return replace(obj, **changes) if changes else obj


def with_overrides(cfg: RunConfig, **settings) -> RunConfig:
    """cfg with OVERRIDES applied (None: keep the preset's). `lora`: one --lora value or a list of them, added
    after the preset's LoRAs in order; 'none' clears those before it (`lora="none"`: no LoRA at all)."""
    unknown = sorted(set(settings) - set(OVERRIDES))
    if unknown:
        raise UserError(f"setting {unknown[0]!r} is unknown; use one of {', '.join(OVERRIDES)}")
    get = settings.get
    video = _set(cfg.video, height=get("height"), width=get("width"), frames=get("frames"), fps=get("fps"))
    stage1 = _set(cfg.stage1, schedule=_set(cfg.stage1.schedule, steps=get("stage1_steps")), extend=get("extend"))
    if get("lora") is not None:
        stage1 = replace(stage1, loras=lora_list(get("lora"), stage1.loras))
    if get("stage1_weights") is not None:
        stage1 = replace(stage1, weights=weights_list(get("stage1_weights"), stage1.weights))
    mode = get("mode") or ("concat" if get("stage2") else None)
    stage2 = _set(cfg.stage2, mode=mode, checkpoint=get("stage2"), weights=get("stage2_weights"),
                  segment_blocks=get("segment_blocks"), neighbor_blocks=get("neighbor_blocks"), tile=get("stage2_tile"),
                  csg=False if get("no_csg") else None,
                  schedule=_set(cfg.stage2.schedule, steps=get("stage2_steps"), sampler=get("stage2_sampler"),
                                start_sigma=get("start_sigma")))
    return _set(cfg, video=video, stage1=stage1, stage2=stage2, seed=get("seed"), device=get("device"),
                dtype=get("dtype"), memory_mode=get("memory_mode"), attention=get("attention"),
                compile=get("compile"), parallel=get("parallel"), quant=get("quant"))


def check_weights(cfg: RunConfig) -> None:
    """A concat Stage II needs trained weights: bundled or built in code, or a --stage2 checkpoint."""
    s2 = cfg.stage2
    if s2.mode == "concat" and s2.checkpoint is None and not (
            s2.model in ("debug-random", "bench-cpu") or s2.model.startswith(BUNDLED)):
        raise UserError(f"preset {cfg.preset} runs a trained concat Stage II; pass --stage2 CKPT "
                        "(or --mode refine for the zero-shot refiner)")
