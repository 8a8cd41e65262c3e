"""Typed, frozen configuration: one source of truth, saved as JSON beside every output."""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass
from typing import Any, Literal

from swifti2v.errors import UserError

Sampler = Literal["euler", "renoise"]
Stage2Mode = Literal["concat", "refine"]
SAMPLERS: tuple[str, ...] = ("euler", "renoise")
STAGE2_MODES: tuple[str, ...] = ("concat", "refine")
MEMORY_MODES: tuple[str, ...] = ("fast", "balanced", "low")  # models/placement.py
ATTENTION_BACKENDS: tuple[str, ...] = ("sdpa", "flash", "flash3", "sage", "flex")  # models/speed.py
PARALLEL_KINDS: tuple[str, ...] = ("ulysses", "ring")  # context parallelism over processes (models/parallel.py)
QUANTS: tuple[str, ...] = ("none", "int8", "fp8")  # torchao, in-process (models/quant.py)
# How Stage I makes a clip longer than its window (stage1.py): each next window from the previous one's last frame,
# or overlapping windows denoised together with their overlaps blended
EXTENDS: tuple[str, ...] = ("last-frame", "context")


@dataclass(frozen=True)
class VideoConfig:
    """The output video. Frames must be 4k+1 (one latent block per 4 frames plus the first)."""

    height: int
    width: int
    frames: int
    fps: int = 16

    @property
    def num_blocks(self) -> int:
        return (self.frames - 1) // 4 + 1


@dataclass(frozen=True)
class ScheduleConfig:
    """A flow-matching schedule: `steps` sigmas from `start_sigma` down to 0, time-shifted by `shift`.

    `sampler="renoise"` is LightX2V's stochastic few-step sampler (predict x0, re-noise to the next
    sigma with fresh noise); `"euler"` is the deterministic ODE step.
    """

    steps: int
    shift: float
    sampler: Sampler = "euler"
    start_sigma: float = 1.0


@dataclass(frozen=True)
class LatentGeometry:
    """How a VAE + DiT pair maps pixels to tokens (Wan2.2 TI2V-5B: VAE 4x16x16, patch 1x2x2)."""

    vae_temporal: int = 4
    vae_spatial: int = 16
    patch: tuple[int, int, int] = (1, 2, 2)

    @property
    def pixel_multiple(self) -> int:
        return self.vae_spatial * self.patch[1]

    def tokens_per_block(self, height: int, width: int) -> int:
        return (height // self.pixel_multiple) * (width // (self.vae_spatial * self.patch[2]))


LORA_TARGETS: tuple[str, ...] = ("all", "high", "low")  # every expert, or one of a Wan2.2 A14B pair


@dataclass(frozen=True)
class LoraFile:
    """A Stage I LoRA: a local .safetensors or 'hub_repo:file.safetensors', its strength, and the expert it goes
    to ("high": the high-noise `transformer`, "low": the low-noise `transformer_2`, "all": every DiT)."""

    path: str
    strength: float = 1.0
    target: str = "all"

    def __str__(self) -> str:  # the --lora spelling, which parse_lora reads back
        target = "" if self.target == "all" else f"{self.target}="
        return f"{target}{self.path}" + ("" if self.strength == 1.0 else f"@{self.strength:g}")


def parse_lora(text: str) -> LoraFile:
    """'[high=|low=]PATH[@STRENGTH]' -> LoraFile. PATH may be 'hub_repo:file.safetensors'."""
    text = text.strip()
    target, path = "all", text
    head, sep, rest = text.partition("=")
    if sep and head.strip().lower() in LORA_TARGETS:
        target, path = head.strip().lower(), rest.strip()
    strength = 1.0
    body, at, tail = path.rpartition("@")
    if at and re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?", tail.strip()):  # else '@' is part of the path
        strength, path = float(tail), body
    if not path:
        raise UserError(f"--lora {text!r} names no file; use [high=|low=]PATH[@STRENGTH], e.g. lowres.safetensors@0.8")
    if not -10 <= strength <= 10:
        raise UserError(f"--lora {text!r}: strength {strength:g} is outside -10..10; use e.g. @1.0")
    return LoraFile(path, strength, target)


def lora_list(specs, current: tuple[LoraFile, ...] = ()) -> tuple[LoraFile, ...]:
    """LoRAs given as --lora values (str, LoraFile, or a list of them) appended to `current`, in order; the
    word 'none' clears everything before it (the preset's too)."""
    out = list(current)
    for spec in [specs] if isinstance(specs, str | LoraFile) else list(specs):
        if isinstance(spec, LoraFile):
            out.append(spec)
        elif str(spec).strip().lower() == "none":
            out.clear()
        else:
            out.append(parse_lora(str(spec)))
    return tuple(out)


@dataclass(frozen=True)
class DitWeights:
    """A GGUF file of a Stage I DiT, in place of the model folder's weights, for every DiT ("all") or one
    expert of a Wan2.2 A14B pair ("high" / "low")."""

    path: str
    target: str = "all"

    def __str__(self) -> str:
        return f"{self.target}={self.path}" if self.target != "all" else self.path


def weights_list(specs, current: tuple[DitWeights, ...] = ()) -> tuple[DitWeights, ...]:
    """--stage1-weights values ('[high=|low=]PATH', DitWeights, or a list) over `current`: a new value for a
    target replaces the old one; 'none' clears them."""
    out = {w.target: w for w in current}
    for spec in [specs] if isinstance(specs, str | DitWeights) else list(specs):
        if not isinstance(spec, DitWeights):
            text = str(spec).strip()
            if text.lower() == "none":
                out.clear()
                continue
            head, sep, rest = text.partition("=")
            target = head.strip().lower() if sep and head.strip().lower() in LORA_TARGETS else "all"
            spec = DitWeights(rest.strip() if target != "all" else text, target)
        if not spec.path:
            raise UserError(f"--stage1-weights {spec} names no file; use [high=|low=]PATH.gguf")
        out[spec.target] = spec
    return tuple(out.values())


@dataclass(frozen=True)
class Stage1Config:
    """Stage I: a large Wan I2V model makes the whole clip at 1/downscale of the target size, with its LoRAs
    fused in order (the paper: a few-step LoRA and a low-res LoRA)."""

    model: str
    schedule: ScheduleConfig
    loras: tuple[LoraFile, ...] = ()
    weights: tuple[DitWeights, ...] = ()  # GGUF files in place of the folder's DiT weights
    downscale: int = 4
    window: int = 81  # frames the model makes at once (Wan: 81); a longer clip runs in several windows
    extend: str = "last-frame"  # how those windows join: one of EXTENDS
    geometry: LatentGeometry = LatentGeometry(vae_spatial=8)


@dataclass(frozen=True)
class Stage2Config:
    """Stage II: a smaller Wan DiT adds detail segment by segment (CSG).

    mode "concat": a trained refiner whose input is [noisy latent ; z_ref] (2x channels).
    mode "refine": stock TI2V-5B, zero-shot; noisy blocks start from z_ref re-noised to start_sigma.
    """

    mode: Stage2Mode
    model: str
    schedule: ScheduleConfig
    checkpoint: str | None = None
    weights: str | None = None  # a GGUF file of the DiT (the checkpoint's, or the model's when none)
    segment_blocks: int = 3
    neighbor_blocks: int = 1
    csg: bool = True
    anchor: bool = True  # False: leave the input image's tokens out of every window (an ablation)
    tile: int = 0  # > 0: the model sees each window in overlapping spatial tiles of at most this many output pixels
    # a side (overlap a quarter of it), blended (sampling/tiles.py); 0: whole frames
    geometry: LatentGeometry = LatentGeometry()


@dataclass(frozen=True)
class RunConfig:
    preset: str
    video: VideoConfig
    stage1: Stage1Config
    stage2: Stage2Config
    seed: int = 0
    device: str = "auto"
    dtype: str = "auto"
    memory_mode: str = "auto"  # auto | fast | balanced | low (models/placement.py; auto: memory.py)
    quant: str = "none"  # none | int8 | fp8 (torchao, the DiTs not from GGUF) | auto (memory.py chooses)
    attention: str = "sdpa"  # sdpa | flash | flash3 | sage | flex (models/speed.py)
    compile: bool = False  # torch.compile the DiT blocks
    parallel: str = "none"  # none | ulysses | ring: every DiT call split over the torchrun processes

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


def stage1_size(video: VideoConfig, stage1: Stage1Config) -> tuple[int, int]:
    """Stage I (height, width): 1/downscale of the target, rounded to the Stage I pixel multiple."""
    m = stage1.geometry.pixel_multiple

    def side(x: int) -> int:
        return max(m, round(x / stage1.downscale / m) * m)

    return side(video.height), side(video.width)


def nearest_4k1(n: int) -> str:
    lo = max(1, (n - 1) // 4 * 4 + 1)
    return f"{lo} or {lo + 4}" if lo != n else str(n)


def validate(cfg: RunConfig) -> RunConfig:
    """Raise UserError for values the pipeline cannot run, naming the value and the fix."""
    v, s2 = cfg.video, cfg.stage2
    if v.frames < 5 or (v.frames - 1) % 4:
        raise UserError(f"--frames {v.frames} is not 4k+1 (5, 9, ..., 81, ..., 321: any such length; past Stage "
                        f"I's window of {cfg.stage1.window} it runs in several windows); use "
                        f"{nearest_4k1(max(v.frames, 5))}")
    mult = max(32, s2.geometry.pixel_multiple)  # 32 keeps the 1/4-size Stage I on its 8-pixel grid
    for name, x in (("--height", v.height), ("--width", v.width)):
        if x <= 0 or x % mult:
            lo = max(mult, x // mult * mult)
            raise UserError(f"{name} {x} is not a positive multiple of {mult}; use {lo} or {lo + mult}")
    if v.fps <= 0:
        raise UserError(f"--fps {v.fps} must be positive; use e.g. 16")
    if cfg.stage1.window < 5 or (cfg.stage1.window - 1) % 4:
        raise UserError(f"Stage I window {cfg.stage1.window} is not 4k+1 with k>=1; use "
                        f"{nearest_4k1(max(cfg.stage1.window, 5))}")
    if cfg.stage1.extend not in EXTENDS:
        raise UserError(f"--extend {cfg.stage1.extend!r} is unknown; use one of {', '.join(EXTENDS)}")
    if s2.segment_blocks < 1:
        raise UserError(f"--segment-blocks {s2.segment_blocks} must be at least 1")
    if s2.neighbor_blocks < 0:
        raise UserError(f"--neighbor-blocks {s2.neighbor_blocks} must be 0 or more")
    least = 4 * s2.geometry.vae_spatial * s2.geometry.patch[1]  # four DiT patches a side
    if s2.tile and s2.tile < least:
        raise UserError(f"--stage2-tile {s2.tile} is too small for this model; use 0 (whole frames) or at least "
                        f"{least}")
    if s2.tile and cfg.parallel != "none":
        raise UserError(f"--stage2-tile {s2.tile} runs each tile on one process; with --parallel use --stage2-tile 0")
    if s2.mode not in STAGE2_MODES:
        raise UserError(f"--mode {s2.mode!r} is unknown; use one of {', '.join(STAGE2_MODES)}")
    if cfg.memory_mode not in ("auto", *MEMORY_MODES):
        raise UserError(f"--memory-mode {cfg.memory_mode!r} is unknown; use auto or one of {', '.join(MEMORY_MODES)}")
    if cfg.quant not in (*QUANTS, "auto"):
        raise UserError(f"--quant {cfg.quant!r} is unknown; use auto or one of {', '.join(QUANTS)}")
    if cfg.parallel not in ("none", *PARALLEL_KINDS):
        raise UserError(f"--parallel {cfg.parallel!r} is unknown; use one of {', '.join(PARALLEL_KINDS)}")
    if cfg.attention not in ATTENTION_BACKENDS:
        raise UserError(f"--attention {cfg.attention!r} is unknown; use one of {', '.join(ATTENTION_BACKENDS)}")
    for name, sch in (("stage1", cfg.stage1.schedule), ("stage2", s2.schedule)):
        if sch.steps < 1:
            raise UserError(f"{name} steps {sch.steps} must be at least 1")
        if not 0.0 < sch.start_sigma <= 1.0:
            raise UserError(f"{name} start sigma {sch.start_sigma} must be in (0, 1]")
        if sch.sampler not in SAMPLERS:
            raise UserError(f"{name} sampler {sch.sampler!r} is unknown; use one of {', '.join(SAMPLERS)}")
    return cfg


def check_prompt(prompt: str) -> None:
    if not prompt.strip():
        raise UserError("--prompt is empty; describe the motion, e.g. --prompt 'the camera pans left'")
