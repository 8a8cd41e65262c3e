"""Typed components for both stages, loaded from diffusers-format folders or Hub ids, or built in code.

Stage I: a Wan I2V DiT (Wan2.1-I2V-14B-480P with CLIP, or the Wan2.2 I2V A14B expert pair), its VAE
(4x8x8) and the pipeline helpers that prepare its conditioning. Stage II: a TI2V-5B-style DiT (stock for
`refine`, widened 2x input channels for `concat`) and the Wan2.2 VAE (4x16x16). One text encoder.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanImageToVideoPipeline, WanTransformer3DModel

from swifti2v.config import DitWeights, RunConfig
from swifti2v.errors import UserError
from swifti2v.models.adapter import PREDICTION_FILE, widen_patch_embedding
from swifti2v.models.codec import PixelCodec
from swifti2v.models.lora import EXPERTS
from swifti2v.models.quant import check_gguf_fits, load_gguf_dit, read_gguf
from swifti2v.models.text import TextEncoder
from swifti2v.models.vae import WanVAE
from swifti2v.presets import resolve

log = logging.getLogger(__name__)

DEBUG_RANDOM = "debug-random"
BENCH_CPU = "bench-cpu"  # debug-random's components with a larger random Stage II DiT (benchmarks)
IN_CODE = (DEBUG_RANDOM, BENCH_CPU)
DEBUG_SEED = 1234


def _debug():
    from swifti2v.models import debug  # tiny configs; imported only when asked for

    return debug


PREDICTIONS = ("velocity", "x0", "x0-skip")


def read_prediction(transformer_dir: str | Path) -> str:
    """What a trained DiT outputs: "velocity" (every Wan checkpoint) or "x0" (ours, e.g. the tiny models)."""
    path = Path(transformer_dir) / PREDICTION_FILE
    if not path.is_file():
        return "velocity"
    prediction = json.loads(path.read_text()).get("prediction", "velocity")
    if prediction not in PREDICTIONS:
        raise UserError(f"{path} says prediction {prediction!r}; expected one of {', '.join(PREDICTIONS)}")
    return prediction


@dataclass
class Stage1Components:
    pipe: WanImageToVideoPipeline  # container for diffusers' conditioning helpers; we own the loop
    vae: WanVAE
    prediction: str = "velocity"

    @property
    def transformer(self) -> WanTransformer3DModel:
        return self.pipe.transformer

    @property
    def transformer_2(self) -> WanTransformer3DModel | None:
        return self.pipe.transformer_2

    @property
    def boundary_sigma(self) -> float | None:
        return self.pipe.config.boundary_ratio


@dataclass
class Stage2Components:
    transformer: WanTransformer3DModel
    vae: WanVAE
    concat: bool  # input = [x ; z_ref]: in_channels == 2 * z_dim
    prediction: str = "velocity"


@dataclass
class Components:
    text: TextEncoder
    stage2: Stage2Components
    stage1: Stage1Components | None = None
    lora_reports: list[dict] = field(default_factory=list)  # what each Stage I LoRA matched, for the sidecar
    load_seconds: float = 0.0  # how long loading and preparing took (once, however many runs use them)
    memory_choice: object | None = None  # how `--memory-mode auto` chose their placement (memory.MemoryChoice)


def _fail_load(what: str, source: str, err: Exception) -> UserError:
    if Path(source).exists():
        return UserError(f"{what} at {source} could not be loaded ({type(err).__name__}: {err}); "
                         "check the folder is a complete diffusers-format model")
    return UserError(f"{what} {source!r} is neither a local folder nor a cached Hub model ({type(err).__name__}); "
                     f"download it with `hf download {source}` or pass a local folder")


def _load(cls, source: str, what: str, **kw):
    try:
        return cls.from_pretrained(source, **kw)
    except (OSError, ValueError) as e:
        raise _fail_load(what, source, e) from None


def _model_index(source: str) -> dict:
    try:
        return dict(WanImageToVideoPipeline.load_config(source))
    except (OSError, ValueError) as e:
        raise _fail_load("model", source, e) from None


def _load_vae(source: str, what: str):
    """AutoencoderKLWan, or the fixed PixelCodec the `tiny` models use (by the folder's `_class_name`)."""
    config = Path(source) / "vae" / "config.json"
    settings = json.loads(config.read_text()) if config.is_file() else {}
    if settings.get("_class_name") == PixelCodec.__name__:
        if settings.get("fitted"):
            return _load(PixelCodec, source, what, subfolder="vae")  # a PCA basis and mean (safetensors)
        return PixelCodec.from_config(PixelCodec.load_config(source, subfolder="vae"))  # no weights
    return _load(AutoencoderKLWan, source, what, subfolder="vae", torch_dtype=torch.float32)


def _finish(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    return model.to(device).eval().requires_grad_(False)


def load_text_encoder(source: str, device: torch.device, dtype: torch.dtype) -> TextEncoder:
    if source in IN_CODE:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(DEBUG_SEED)
            return TextEncoder(_debug().tiny_tokenizer(), _finish(_debug().tiny_text_encoder(), device))
    source = resolve(source)
    from transformers import AutoTokenizer, UMT5EncoderModel

    tokenizer = _load(AutoTokenizer, source, "tokenizer", subfolder="tokenizer")
    model = _load(UMT5EncoderModel, source, "text encoder", subfolder="text_encoder", torch_dtype=dtype)
    return TextEncoder(tokenizer, _finish(model, device))


def _as_loaded(model: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """A model built in code, in `dtype` the way `from_pretrained(torch_dtype=dtype)` gives it: the modules
    it names in `_keep_in_fp32_modules` stay fp32 (a plain `.to` would cast them too)."""
    keep = set(getattr(model, "_keep_in_fp32_modules", None) or [])
    torch.nn.Module.to(model, dtype)
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        if keep & set(name.split(".")) and tensor.is_floating_point():
            tensor.data = tensor.data.float()
    return model


def _config_of(model: torch.nn.Module) -> dict:
    return {k: v for k, v in dict(model.config).items() if not k.startswith("_")}


def _folder_config(source: str, subfolder: str, what: str) -> dict:
    try:
        config = WanTransformer3DModel.load_config(source, subfolder=subfolder)
    except (OSError, ValueError) as e:
        raise _fail_load(what, source, e) from None
    return {k: v for k, v in config.items() if not k.startswith("_")}


S1_FLAG, S2_FLAG = "--stage1-weights", "--stage2-weights"
SLOT_NAMES = {"transformer": "Stage I transformer slot", "transformer_2": "Stage I low-noise expert slot",
              "stage2": "Stage II transformer slot"}


def _dit(source: str, subfolder: str, what: str, dtype: torch.dtype, slot: tuple[str, dict] | None,
         name: str, flag: str):
    """A DiT from the folder's weights, or from a GGUF file `slot` = (path, the config of its slot's DiT)."""
    if slot is None:
        return _load(WanTransformer3DModel, source, what, subfolder=subfolder, torch_dtype=dtype)
    return load_gguf_dit(slot[0], slot[1], SLOT_NAMES[name], flag, dtype)


def stage1_gguf(weights: tuple[DitWeights, ...], pair: bool) -> dict[str, str]:
    """--stage1-weights -> {"transformer": PATH, "transformer_2": PATH} for the model's DiTs."""
    if not pair:
        for w in weights:
            if w.target != "all":
                raise UserError(f"--stage1-weights {w} names the {w.target}-noise expert, but this Stage I model has "
                                f"one DiT; drop '{w.target}='")
        return {"transformer": weights[-1].path} if weights else {}
    if any(w.target == "all" for w in weights):
        raise UserError("--stage1-weights: this Stage I model is a Wan2.2 A14B expert pair; give one GGUF file per "
                        "expert, high=HIGH.gguf and low=LOW.gguf")
    return {EXPERTS[w.target]: w.path for w in weights}


def _stage1_slots(source: str, weights: tuple[DitWeights, ...]) -> dict[str, tuple[str, dict]]:
    """--stage1-weights -> {"transformer" / "transformer_2": (GGUF path, the config of that DiT)}."""
    if not weights:
        return {}
    if source in IN_CODE:
        config = _config_of(_debug().tiny_stage1_transformer())
        return {sub: (path, config) for sub, path in stage1_gguf(weights, pair=False).items()}
    source = resolve(source)
    pair = _model_index(source).get("transformer_2", [None, None])[0] is not None
    return {sub: (path, _folder_config(source, sub, "Stage I transformer"))
            for sub, path in stage1_gguf(weights, pair).items()}


def _stage2_slot(source: str, checkpoint: str | None, weights: str | None) -> tuple[str, dict] | None:
    """--stage2-weights -> (GGUF path, the config of the DiT it replaces: the checkpoint's, else the model's)."""
    if weights is None:
        return None
    if checkpoint is not None:
        return weights, _folder_config(str(concat_checkpoint_dir(checkpoint)), "", "Stage II checkpoint")
    if source in IN_CODE:
        build = _debug().tiny_stage2_transformer if source == DEBUG_RANDOM else _debug().bench_stage2_transformer
        return weights, _config_of(build())
    return weights, _folder_config(resolve(source), "transformer", "Stage II transformer")


def check_gguf_files(cfg: RunConfig) -> None:
    """Every --stage1-weights / --stage2-weights file read and checked against its slot's model (names and
    shapes) before any model loads: a wrong file fails in a second, not after the text encoder has loaded."""
    s2 = cfg.stage2
    slots = {**{sub: (S1_FLAG, *slot) for sub, slot in _stage1_slots(cfg.stage1.model, cfg.stage1.weights).items()},
             **({"stage2": (S2_FLAG, *slot)} if (slot := _stage2_slot(s2.model, s2.checkpoint, s2.weights)) else {})}
    for name, (flag, path, config) in slots.items():
        check_gguf_fits(read_gguf(path, flag), config, SLOT_NAMES[name], flag)


def load_stage1(source: str, device: torch.device, dtype: torch.dtype,
                weights: tuple[DitWeights, ...] = ()) -> Stage1Components:
    """Wan2.1 I2V (one DiT + CLIP) or Wan2.2 I2V A14B (two experts, `boundary_ratio` in model_index.json);
    `weights`: GGUF files in place of the DiT weights (--stage1-weights)."""
    prediction = "velocity"
    slots = _stage1_slots(source, weights)
    if source in IN_CODE:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(DEBUG_SEED + 1)
            transformer = _as_loaded(_debug().tiny_stage1_transformer(), dtype)
            if "transformer" in slots:
                transformer = _dit(source, "", "", dtype, slots["transformer"], "transformer", S1_FLAG)
            image_encoder, image_processor = _debug().tiny_image_encoder()
            vae = _debug().tiny_vae_21()
        transformer_2, boundary = None, None
    else:
        source = resolve(source)
        index = _model_index(source)
        transformer = _dit(source, "transformer", "Stage I transformer", dtype, slots.get("transformer"),
                           "transformer", S1_FLAG)
        prediction = read_prediction(Path(source) / "transformer")
        transformer_2 = None
        if index.get("transformer_2", [None, None])[0] is not None:
            transformer_2 = _dit(source, "transformer_2", "Stage I low-noise expert", dtype,
                                 slots.get("transformer_2"), "transformer_2", S1_FLAG)
        boundary = index.get("boundary_ratio")
        image_encoder = image_processor = None
        if transformer.config.image_dim is not None:  # Wan2.1 I2V needs a real CLIP encoder
            from transformers import CLIPImageProcessor, CLIPVisionModel

            image_encoder = _load(CLIPVisionModel, source, "CLIP image encoder", subfolder="image_encoder",
                                  torch_dtype=torch.float32)
            image_processor = _load(CLIPImageProcessor, source, "CLIP processor", subfolder="image_processor")
        vae = _load_vae(source, "Stage I VAE")
    pipe = WanImageToVideoPipeline(
        tokenizer=None, text_encoder=None, vae=_finish(vae, device),
        scheduler=FlowMatchEulerDiscreteScheduler(shift=5.0),
        image_processor=image_processor,
        image_encoder=None if image_encoder is None else _finish(image_encoder, device),
        transformer=_finish(transformer, device),
        transformer_2=None if transformer_2 is None else _finish(transformer_2, device),
        boundary_ratio=boundary,
    )
    return Stage1Components(pipe=pipe, vae=WanVAE(pipe.vae), prediction=prediction)


def concat_checkpoint_dir(path: str) -> Path:
    p = Path(path)
    if not p.exists():
        raise UserError(f"--stage2 {path} not found; pass the folder written by training (it holds config.json)")
    if (p / "transformer" / "config.json").is_file():
        p = p / "transformer"
    if not (p / "config.json").is_file():
        raise UserError(f"--stage2 {path} has no config.json; pass a diffusers-format transformer folder")
    weights = list(p.glob("*.safetensors")) + list(p.glob("*.safetensors.index.json"))
    if not weights:
        found = ", ".join(sorted(x.name for x in p.iterdir())) or "nothing"
        raise UserError(f"--stage2 {path} holds no .safetensors weights (found: {found}); "
                        "only safetensors checkpoints are loaded")
    return p


def load_stage2(source: str, checkpoint: str | None, concat: bool, device: torch.device,
                dtype: torch.dtype, widen: bool = False, weights: str | None = None) -> Stage2Components:
    """VAE from `source`; DiT from `checkpoint` (a trained concat refiner) or from `source` (stock);
    `weights`: a GGUF file in place of that DiT's weights (--stage2-weights).

    widen: give a stock DiT the concat input channels (zero-initialised), the start of training.
    """
    prediction = "velocity"
    slot = _stage2_slot(source, checkpoint, weights)
    if source in IN_CODE:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(DEBUG_SEED + 2)
            if source == DEBUG_RANDOM:
                vae, transformer = _debug().tiny_vae_22(), _debug().tiny_stage2_transformer()
            else:
                vae, transformer = PixelCodec(**_debug().BENCH_CODEC), _debug().bench_stage2_transformer()
            transformer = _as_loaded(transformer, dtype)
        if slot is not None and checkpoint is None:
            transformer = _dit(source, "", "", dtype, slot, "stage2", S2_FLAG)
    else:
        source = resolve(source)
        vae = _load_vae(source, "Stage II VAE")
        transformer = None
        if checkpoint is None:
            transformer = _dit(source, "transformer", "Stage II transformer", dtype, slot, "stage2", S2_FLAG)
            prediction = read_prediction(Path(source) / "transformer")
    if checkpoint is not None:
        folder = concat_checkpoint_dir(checkpoint)
        transformer = _dit(str(folder), "", "Stage II checkpoint", dtype, slot, "stage2", S2_FLAG)
        prediction = read_prediction(folder)
    z = vae.config.z_dim
    in_ch = transformer.config.in_channels
    if concat and in_ch == z and checkpoint is None and (widen or source in IN_CODE):
        widen_patch_embedding(transformer, z)  # an untrained refiner: equals the base model
        in_ch = 2 * z
    expected = 2 * z if concat else z
    if in_ch != expected:
        mode = "concat" if concat else "refine"
        fix = ("pass a trained concat checkpoint with --stage2" if concat
               else "use --mode concat for a widened checkpoint")
        raise UserError(f"Stage II transformer has in_channels={in_ch}, but mode {mode} needs {expected} "
                        f"(VAE z={z}); {fix}")
    return Stage2Components(_finish(transformer, device), WanVAE(_finish(vae, device)), concat, prediction)


def save_concat_checkpoint(transformer: WanTransformer3DModel, path: str | Path, run_config: dict | None = None):
    """Write a `concat` refiner as a diffusers folder (config.json + safetensors) `--stage2` loads."""
    path = Path(path)
    transformer.save_pretrained(path, safe_serialization=True)
    if run_config is not None:
        (path / "swifti2v.json").write_text(json.dumps(run_config, indent=2))
