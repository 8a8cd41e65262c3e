"""Typed training configuration: a TOML/JSON file plus `--set section.key=value` overrides.

Every field has a default that runs the `debug-random` models on CPU; the docs give the 2K recipe.
The resolved config is saved beside every checkpoint and export.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from swifti2v.config import lora_list
from swifti2v.errors import UserError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

Task = Literal["stage2", "stage1", "stage1-lora"]
ConditionKind = Literal["stage1", "degrade", "downsample"]


@dataclass(frozen=True)
class DataConfig:
    """Training clips (see swifti2v.data.videos for the clip policy)."""

    folder: str = ""  # videos + metadata.jsonl/.csv
    cache: str = ""  # latent cache written by `prepare-data`; used instead of decoding the videos
    synthetic: int = 0  # > 0: train on this many procedural clips (swifti2v.data.synthetic) instead
    synthetic_kinds: tuple[str, ...] = ("camera", "sprite")
    bank: int = 0  # > 0: synthetic clips are camera clips over a bank of this many collages + photographs
    speed: tuple[float, float] = (0.25, 4.5)  # bank clips: pan speed range, pixels per frame at the data size
    photo_share: float = 0.5  # bank clips: share of clips over a photograph alone
    photos: str = ""  # bank clips: a folder of more photographs (JPEG/PNG/WebP) beside scikit-image's 10
    motions: tuple[str, ...] = ("pan", "zoom", "rotate")  # bank clips: the camera motions drawn (data.synthetic's
    # MOTIONS shares among those kept); ["pan"] alone is a curriculum for Stage I's motion
    pan_speed: Literal["path", "axis"] = "path"  # bank clips: `speed` along a pan's path, or along each axis it
    # moves on (diagonals sqrt(2) x faster: at 4 px/frame every pan moves half a tiny token per latent frame per axis)
    height: int = 128  # Stage II training size (Stage I trains at height/downscale)
    width: int = 256
    frames: int = 25  # 4k+1
    stride: int = 1  # take every stride-th frame
    num_workers: int = 0
    cache_dtype: Literal["bf16", "fp32"] = "bf16"


@dataclass(frozen=True)
class ConditionConfig:
    """How z_ref is made for a training clip (DESIGN.md, stage-transition training).

    stage1: downsample, Stage I VAE encode, noise to sigma ~ U[sigma_min, sigma_max], denoise with Stage I
    in `steps` steps, decode, hybrid reference. degrade: pixel-space blur + noise + JPEG at the Stage I
    size, no model needed. downsample: the clean low-res clip (an oracle Stage I; for ablations).
    """

    kind: ConditionKind = "stage1"
    downscale: int = 4  # Stage I size = training size / downscale (as at inference)
    sigma_min: float = 0.3
    sigma_max: float = 0.7
    steps: int = 2
    shift: float = 5.0
    sampler: Literal["euler", "renoise"] = "renoise"
    blur: float = 0.8  # degrade: Gaussian sigma in low-res pixels
    noise: float = 0.02  # degrade: additive Gaussian noise, in [-1, 1] units
    jpeg_quality: int = 70  # degrade: per-frame JPEG quality (100 = off)
    strength: tuple[float, float] = (1.0, 1.0)  # degrade: per-clip strength ~ U[lo, hi], scaling the blur, the
    # noise and 100 - jpeg_quality; (0, 1) mixes clean references with ones as degraded as the settings above
    oracle_share: float = 0.0  # stage1: this share of clips gets the clean low-res clip (an oracle Stage I) instead,
    # so Stage II keeps its gain on exact references while it learns Stage I's own output


@dataclass(frozen=True)
class ModelConfig:
    stage1: str = "debug-random"  # Stage I model (folder or Hub id): conditions, stage1-lora base, text encoder
    stage2: str = "debug-random"  # Stage II base (TI2V-5B-style folder or Hub id): widened for concat
    init: str = ""  # optional concat checkpoint to start Stage II from instead of the widened base
    dtype: Literal["auto", "bf16", "fp32"] = "auto"  # frozen models (VAE, text, Stage I for conditions)
    # LoRAs fused into the Stage I model before anything uses it, as --lora values ("[high=|low=]PATH[@S]"):
    # stage1-lora then learns on top of them (the low-res LoRA over the few-step one, as it will run), and
    # the stage-transition conditions come from Stage I as it runs.
    base_loras: tuple[str, ...] = ()


@dataclass(frozen=True)
class LoraSpec:
    """rank 0 = full fine-tune (stage2 only). Targets are diffusers module-name suffixes."""

    rank: int = 0
    alpha: float = 0.0  # 0 -> alpha = rank
    targets: tuple[str, ...] = ("to_q", "to_k", "to_v", "to_out.0", "ffn.net.0.proj", "ffn.net.2")


@dataclass(frozen=True)
class OptimConfig:
    lr: float = 1e-4
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 0
    decay_steps: int = 0  # > 0: after the warm-up, a cosine from lr to 0 over this many steps (then 0); 0 = constant
    grad_clip: float = 1.0


@dataclass(frozen=True)
class TrainConfig:
    task: Task = "stage2"
    output_dir: str = "outputs/train"
    data: DataConfig = DataConfig()
    condition: ConditionConfig = ConditionConfig()
    model: ModelConfig = ModelConfig()
    lora: LoraSpec = LoraSpec()
    optim: OptimConfig = OptimConfig()
    segment_blocks: int = 3  # M: noisy blocks per training window (as at inference)
    neighbor_blocks: int = 1  # N: clean previous blocks
    reference_neighbors: float = 0.0  # share of windows whose N clean neighbours are their z_ref blocks, not the
    # truth: at inference a neighbour is Stage II's own output, so true ones teach copying them, not the anchor
    sigma_sampling: Literal["logit_normal", "shifted_uniform"] = "logit_normal"
    logit_mean: float = 0.0
    logit_std: float = 1.0
    sigma_shift: float = 1.0  # applied after sampling (Wan/SD3 shift); >1 favours high noise
    max_steps: int = 1000
    dist_timeout_min: float = 30.0  # multi-process: a collective waiting longer than this fails (torch's default)
    max_minutes: float = 0.0  # > 0: stop (checkpoint + export) after the first step past this wall time;
    # --resume continues, so a long run can be trained in pieces
    batch_size: int = 1  # per process
    grad_accum: int = 1
    mixed_precision: Literal["no", "bf16"] = "bf16"
    gradient_checkpointing: bool = True
    ema_decay: float = 0.0  # 0 = no EMA; e.g. 0.999
    # diffusers' warm-up: the decay grows as (1+n)/(10+n), an average of the last ~n/9 steps until it reaches
    # ema_decay (0.999: after ~9,000 steps). False: ema_decay from the first step, for a run continued from
    # trained weights (the start is already a good average)
    ema_warmup: bool = True
    save_every: int = 500
    keep_checkpoints: int = 3
    log_every: int = 10
    tracker: Literal["tensorboard", "wandb", "none"] = "tensorboard"
    export_dtype: Literal["bf16", "fp32"] = "bf16"
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _coerce(tp: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise UserError(f"config {key} must be a table of fields, got {value!r}")
        return _build(tp, value, key + ".")
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise UserError(f"config {key}={value!r} is not one of {', '.join(map(str, typing.get_args(tp)))}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise UserError(f"config {key} must be a list, got {value!r}")
        args = typing.get_args(tp)
        inner = args[0] if len(args) == 2 and args[1] is Ellipsis else None
        return tuple(_coerce(inner or args[i], v, key) for i, v in enumerate(value))
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp in (int, float, str, bool) and not (isinstance(value, tp) and (tp is bool or not isinstance(value, bool))):
        raise UserError(f"config {key}={value!r} must be {tp.__name__}")
    return value


def _build(cls: type, values: dict, prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise UserError(f"unknown config key {prefix}{unknown[0]}; known: {', '.join(sorted(names))}")
    return cls(**{k: _coerce(hints[k], v, prefix + k) for k, v in values.items()})


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text  # a bare string


def _set_path(values: dict, dotted: str, value: Any) -> None:
    *path, last = dotted.split(".")
    node = values
    for part in path:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise UserError(f"config key {dotted}: {part} is not a section")
    node[last] = value


def apply_overrides(values: dict, overrides: list[str], flags: dict[str, Any] | None = None) -> dict:
    """Dotted `flags` (CLI options, None = unset), then `section.key=value` strings (value as JSON, else a
    string), applied to a copy of the nested dict."""
    out = json.loads(json.dumps(values))
    for key, value in (flags or {}).items():
        if value is not None:
            _set_path(out, key, value)
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--set {item!r} is not KEY=VALUE, e.g. --set optim.lr=1e-4")
        _set_path(out, key.strip(), _parse_value(text))
    return out


def read_config_file(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"--config {path} not found; pass a .toml or .json training config")
    try:
        if path.suffix == ".toml":
            return tomllib.loads(path.read_text())
        return json.loads(path.read_text())
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"--config {path} could not be parsed ({e})") from None


def load_train_config(path: str | Path | None, overrides: list[str] = (), flags: dict[str, Any] | None = None
                      ) -> TrainConfig:
    """Defaults <- config file <- dotted `flags` (e.g. {"data.folder": ...}) <- `--set` overrides."""
    values = read_config_file(path) if path else {}
    return validate_train(_build(TrainConfig, apply_overrides(values, list(overrides), flags)))


def validate_train(cfg: TrainConfig) -> TrainConfig:
    d = cfg.data
    if d.frames < 5 or (d.frames - 1) % 4:
        raise UserError(f"data.frames {d.frames} is not 4k+1 with k>=1; use {max(5, (d.frames - 1) // 4 * 4 + 1)}")
    low = 8 * cfg.condition.downscale  # the Stage I size (x / downscale) must be a multiple of 8 at least
    for name, x in (("data.height", d.height), ("data.width", d.width)):
        if x <= 0 or x % 32 or x % low:
            raise UserError(f"{name} {x} must be a positive multiple of 32 and of {low} (8 x condition.downscale)")
    if d.stride < 1:
        raise UserError(f"data.stride {d.stride} must be at least 1")
    if d.photos and not (d.synthetic and d.bank):
        raise UserError(f"data.photos {d.photos!r} feeds bank clips: set data.synthetic and data.bank > 0 too")
    if d.bank < 0 or not 0.0 <= d.photo_share <= 1.0 or not 0.0 <= d.speed[0] <= d.speed[1]:
        raise UserError(f"data.bank {d.bank} must be >= 0, data.photo_share {d.photo_share} in [0, 1] and "
                        f"data.speed {list(d.speed)} an increasing pair >= 0")
    kinds = DataConfig.motions
    if not d.motions or len(set(d.motions)) < len(d.motions) or set(d.motions) - set(kinds):
        raise UserError(f"data.motions {list(d.motions)} must list distinct motions among {list(kinds)}")
    if not d.folder and not d.cache and d.synthetic < 1:
        raise UserError("no training data: pass --data FOLDER (videos + metadata.jsonl), --cache DIR or "
                        "--set data.synthetic=N (procedural clips)")
    c = cfg.condition
    if not 0.0 <= c.sigma_min <= c.sigma_max <= 1.0:
        raise UserError(f"condition sigma range [{c.sigma_min}, {c.sigma_max}] must lie in [0, 1], min <= max")
    if not 0.0 <= c.strength[0] <= c.strength[1]:
        raise UserError(f"condition.strength {list(c.strength)} must be an increasing pair >= 0, e.g. [0, 1]")
    if not 0.0 <= c.oracle_share <= 1.0:
        raise UserError(f"condition.oracle_share {c.oracle_share} must be in [0, 1], e.g. 0.25")
    if cfg.segment_blocks < 1 or cfg.neighbor_blocks < 0:
        raise UserError("segment_blocks must be >= 1 and neighbor_blocks >= 0")
    if not 0.0 <= cfg.reference_neighbors <= 1.0:
        raise UserError(f"reference_neighbors {cfg.reference_neighbors} must be in [0, 1]")
    if cfg.task == "stage1-lora" and cfg.lora.rank < 1:
        raise UserError("stage1-lora needs lora.rank >= 1, e.g. --set lora.rank=32")
    lora_list(cfg.model.base_loras)  # each spelled as --lora takes it
    for name, x in (("max_steps", cfg.max_steps), ("batch_size", cfg.batch_size), ("grad_accum", cfg.grad_accum),
                    ("save_every", cfg.save_every), ("keep_checkpoints", cfg.keep_checkpoints),
                    ("log_every", cfg.log_every)):
        if x < 1:
            raise UserError(f"{name} {x} must be at least 1")
    if cfg.dist_timeout_min <= 0:
        raise UserError(f"dist_timeout_min {cfg.dist_timeout_min} must be > 0")
    if cfg.max_minutes < 0:
        raise UserError(f"max_minutes {cfg.max_minutes} must be >= 0 (0 = no time limit)")
    if not 0.0 <= cfg.ema_decay < 1.0:
        raise UserError(f"ema_decay {cfg.ema_decay} must be in [0, 1)")
    if min(cfg.optim.warmup_steps, cfg.optim.decay_steps) < 0:
        raise UserError(f"optim.warmup_steps {cfg.optim.warmup_steps} and optim.decay_steps {cfg.optim.decay_steps} "
                        "must be >= 0 (0 = none)")
    return cfg
