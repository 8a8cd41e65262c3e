"""The two trainers, as tasks for the engine: the trainable DiT, its data, its loss and its export.

stage2: the `concat` refiner. A TI2V-5B-style DiT with its patch embedding widened to [x ; z_ref]
(new channels zero), trained on CSG windows (objective.py) with stage-transition z_ref (conditions.py).
Full fine-tune or LoRA (+ the widened patch embedding). Exported as a diffusers folder `--stage2` loads.

stage1-lora: a LoRA on the Stage I Wan I2V DiT at the Stage I resolution, whole-clip I2V flow matching
with Wan2.1's own conditioning (CLIP tokens, mask + image latent). Exported as a diffusers-format LoRA
file `generate --lora` loads. stage1: the same, every weight trained (the `tiny` Stage I), exported as a
diffusers transformer folder.

Data: a video folder, a latent cache (stage2), or procedural clips (`data.synthetic`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import Dataset

from swifti2v.config import lora_list
from swifti2v.data.bank import batch_pixels
from swifti2v.data.cache import CachedLatents, collate
from swifti2v.data.synthetic import SyntheticClips
from swifti2v.data.videos import ScanReport, open_folder
from swifti2v.errors import UserError
from swifti2v.files import atomic_write_json
from swifti2v.models.adapter import PREDICTION_FILE, WanVelocity
from swifti2v.models.components import load_stage1, load_stage2, load_text_encoder
from swifti2v.models.lora import fuse_loras
from swifti2v.models.text import TextEncoder
from swifti2v.runtime import resolve_dtype
from swifti2v.sampling.noise import derive_seed
from swifti2v.stage1 import stage1_velocity
from swifti2v.training.conditions import ConditionModels, condition_reference, to_image
from swifti2v.training.config import TrainConfig
from swifti2v.training.objective import clip_loss, pick_segment, sample_train_sigmas, training_window, window_loss

log = logging.getLogger(__name__)

LORA_FILE = "pytorch_lora_weights.safetensors"


def cache_key(cfg: TrainConfig) -> dict:
    """Everything a cached clip depends on (not the folder: a dataset may move), as its JSON reads back."""
    d = cfg.data
    key = {"version": 1, "size": [d.height, d.width], "frames": d.frames, "stride": d.stride,
           "dtype": d.cache_dtype, "condition": dataclasses.asdict(cfg.condition),
           "stage1": cfg.model.stage1, "stage2": cfg.model.stage2, "seed": cfg.seed}
    return json.loads(json.dumps(key))  # tuples as lists


def frozen_precision(device: torch.device) -> torch.autocast:
    """The frozen encoders (codec, text, the Stage I that makes references) run in their own dtype under the
    training step's autocast: the targets and references stay what `generate` computes."""
    return torch.autocast(torch.device(device).type, enabled=False)


def condition_generator(seed: int, name: str) -> torch.Generator:
    """A clip's condition randomness depends on the run seed and the clip only (cache == on the fly)."""
    return torch.Generator().manual_seed(derive_seed(seed, f"condition/{name}"))


@dataclasses.dataclass
class ClipEncoder:
    """Pixels + caption -> (z, z_ref, text), the frozen part of Stage II training (and of prepare-data)."""

    cfg: TrainConfig
    text: TextEncoder
    models: ConditionModels
    captions: dict[str, torch.Tensor] = dataclasses.field(default_factory=dict)  # procedural captions repeat

    def encode_text(self, caption: str) -> torch.Tensor:
        text = self.captions.get(caption)
        if text is None:
            text = self.text.encode(caption, self.models.stage2_vae.device)
            if len(self.captions) < 1024:
                self.captions[caption] = text
        return text

    @torch.no_grad()
    def __call__(self, pixels: torch.Tensor, captions: list[str], names: list[str]) -> tuple[torch.Tensor, ...]:
        """pixels: (B, 3, F, H, W) in [-1, 1]. A batch at once where the condition has no randomness
        (`downsample`), else clip by clip with each clip's own generator."""
        vae = self.models.stage2_vae
        pixels = pixels.to(vae.device)
        with frozen_precision(vae.device):
            text = torch.cat([self.encode_text(c) for c in captions])
            z = vae.encode(pixels)
            if self.cfg.condition.kind == "downsample":
                z_ref = condition_reference(pixels, text, self.cfg.condition, self.models, torch.Generator())
            else:
                z_ref = torch.cat([condition_reference(pixels[i : i + 1], text[i : i + 1], self.cfg.condition,
                                                       self.models, condition_generator(self.cfg.seed, name))
                                   for i, name in enumerate(names)])
        return z, z_ref, text


def load_clip_encoder(cfg: TrainConfig, device: torch.device, stage2_vae=None) -> ClipEncoder:
    dtype = resolve_dtype(cfg.model.dtype, device)
    if stage2_vae is None:
        stage2_vae = load_stage2(cfg.model.stage2, None, False, device, dtype).vae
    stage1 = load_base_stage1(cfg, device, dtype) if cfg.condition.kind == "stage1" else None
    return ClipEncoder(cfg, load_text_encoder(cfg.model.stage1, device, dtype), ConditionModels(stage2_vae, stage1))


def load_base_stage1(cfg: TrainConfig, device: torch.device, dtype: torch.dtype):
    """The Stage I model with model.base_loras fused in order (what `generate --lora` would run)."""
    stage1 = load_stage1(cfg.model.stage1, device, dtype)
    reports = fuse_loras(stage1.pipe, lora_list(cfg.model.base_loras))
    for r in reports:
        log.info("base LoRA %s: %d pairs, %d modulation deltas fused", r["path"], r["pairs"], r["modulation_deltas"])
    return stage1


def add_lora(model: nn.Module, cfg: TrainConfig) -> None:
    from peft import LoraConfig

    spec = cfg.lora
    names = {n for n, _ in model.named_modules()}
    targets = [t for t in spec.targets if any(n.endswith(t) for n in names)]
    if not targets:
        raise UserError(f"lora.targets {list(spec.targets)} match no module of the model")
    model.add_adapter(LoraConfig(r=spec.rank, lora_alpha=spec.alpha or spec.rank, target_modules=targets,
                                 init_lora_weights="gaussian"))


def _prepare_trainable(model: nn.Module, cfg: TrainConfig, extra_trainable: tuple[str, ...] = ()) -> nn.Module:
    model.train()
    if cfg.lora.rank:
        model.requires_grad_(False)
        add_lora(model, cfg)
        for name, p in model.named_parameters():
            if "lora_" in name or name.startswith(extra_trainable):
                p.requires_grad_(True)
                p.data = p.data.float()  # fp32 master copy of what trains
    else:
        model.requires_grad_(True).float()
    if cfg.gradient_checkpointing:
        model.enable_gradient_checkpointing()
    return model


def open_data(cfg: TrainConfig, low: bool = False) -> tuple[Dataset, ScanReport | None]:
    """The training clips at the data size, or at the Stage I size (1/downscale) when `low`."""
    d, k = cfg.data, cfg.condition.downscale
    if d.synthetic and d.bank:
        from swifti2v.data.bank import BankClips, StillBank

        bank = StillBank.build(d.bank, "train", seed=cfg.seed, workers=max(1, (os.cpu_count() or 1) // 2),
                               more_photos=d.photos)
        return BankClips(bank, d.synthetic, d.height, d.width, d.frames, seed0=cfg.seed, downscale=k, low=low,
                         speed=d.speed, photo_share=d.photo_share, motions=d.motions, pan_speed=d.pan_speed), None
    if d.synthetic:
        return SyntheticClips(d.synthetic, d.height, d.width, d.frames, d.synthetic_kinds, seed0=cfg.seed,
                              downscale=k, low=low), None
    if low:
        return open_folder(d.folder, d.frames, d.stride, d.height // k, d.width // k)
    return open_folder(d.folder, d.frames, d.stride, d.height, d.width)


def save_transformer(model: nn.Module, state_dict: dict[str, torch.Tensor], path: Path, cfg: TrainConfig,
                     prediction: str) -> None:
    """A diffusers transformer folder (config.json + safetensors + what it predicts) in the export dtype."""
    from huggingface_hub import save_torch_state_dict

    dtype = torch.bfloat16 if cfg.export_dtype == "bf16" else torch.float32
    state = {k: v.detach().to("cpu", dtype if v.is_floating_point() else v.dtype) for k, v in state_dict.items()}
    path.mkdir(parents=True, exist_ok=True)
    save_torch_state_dict(state, path, filename_pattern="diffusion_pytorch_model{suffix}.safetensors",
                          max_shard_size="10GB")
    model.save_config(path)
    write_run_config(path, cfg, prediction)


def write_run_config(path: Path, cfg: TrainConfig, prediction: str = "velocity") -> None:
    atomic_write_json(path / PREDICTION_FILE, {"prediction": prediction, "training": cfg.to_dict()})


def train_sigmas(cfg: TrainConfig, n: int, g: torch.Generator) -> torch.Tensor:
    return sample_train_sigmas(n, cfg.sigma_sampling, g, mean=cfg.logit_mean, std=cfg.logit_std,
                               shift=cfg.sigma_shift)


class Stage2Task:
    """The concat refiner on CSG windows."""

    def __init__(self, cfg: TrainConfig, device: torch.device):
        self.cfg, self.device = cfg, device
        dtype = torch.float32 if not cfg.lora.rank else resolve_dtype(cfg.model.dtype, device)
        s2 = load_stage2(cfg.model.stage2, cfg.model.init or None, True, device, dtype, widen=True)
        self.prediction = s2.prediction
        self.model = _prepare_trainable(s2.transformer, cfg, extra_trainable=("patch_embedding",))
        self.report: ScanReport | None = None
        self.encoder: ClipEncoder | None = None
        if cfg.data.cache:
            self.dataset: Dataset = CachedLatents(cfg.data.cache, cache_key(cfg))
        else:
            self.dataset, self.report = open_data(cfg)
            self.encoder = load_clip_encoder(cfg, device, s2.vae)

    collate = staticmethod(collate)

    def latents(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if "z" in batch:
            return tuple(batch[k].to(self.device) for k in ("z", "z_ref", "text"))
        pixels = batch_pixels(batch, self.device)
        return self.encoder(pixels, list(batch["caption"]), list(batch["name"]))

    def loss(self, runner: nn.Module, batch: dict, g: torch.Generator) -> torch.Tensor:
        z, z_ref, text = self.latents(batch)
        c = self.cfg
        segment = pick_segment(z.shape[2], c.segment_blocks, c.neighbor_blocks, g)
        sigma = train_sigmas(c, z.shape[0], g)
        noise = torch.randn(z.shape, generator=g).to(z.device)
        swap = torch.rand(z.shape[0], generator=g) < c.reference_neighbors if c.reference_neighbors else None
        tw = training_window(z, z_ref, segment, sigma, noise, swap)
        return window_loss(WanVelocity(self.model, text, runner=runner, prediction=self.prediction), tw)

    def export(self, state_dict: dict[str, torch.Tensor], path: Path) -> None:
        """A diffusers transformer folder (config.json + safetensors) that `generate --stage2` loads."""
        model = self.model
        if self.cfg.lora.rank:  # merge the adapter into the weights (the end of training)
            model.fuse_lora()
            model.unload_lora()
            state_dict = model.state_dict()
        save_transformer(model, state_dict, path, self.cfg, self.prediction)


class Stage1Task:
    """A LoRA (lora.rank > 0) or every weight (rank 0, task `stage1`) of the Stage I I2V DiT at the Stage I size."""

    def __init__(self, cfg: TrainConfig, device: torch.device):
        if cfg.data.cache:
            raise UserError(f"{cfg.task} trains from videos (--data) or procedural clips; the latent cache is for "
                            "stage2")
        self.cfg, self.device = cfg, device
        dtype = resolve_dtype(cfg.model.dtype, device)
        self.stage1 = load_base_stage1(cfg, device, dtype)
        if self.stage1.transformer_2 is not None:
            raise UserError(f"{cfg.model.stage1} is a two-expert model; stage1-lora trains single-DiT Stage I "
                            "models (Wan2.1 I2V)")
        self.model = _prepare_trainable(self.stage1.transformer, cfg)
        self.text = load_text_encoder(cfg.model.stage1, device, dtype)
        self.dataset, self.report = open_data(cfg, low=True)

    collate = staticmethod(collate)

    def loss(self, runner: nn.Module, batch: dict, g: torch.Generator) -> torch.Tensor:
        c, vae = self.cfg, self.stage1.vae
        pixels = batch_pixels(batch, self.device)
        with torch.no_grad(), frozen_precision(self.device):
            z = torch.cat([vae.encode(px[None]) for px in pixels])
            conds = [stage1_velocity(self.stage1, to_image(px[:, 0]), self.text.encode(cap, self.device), px.shape[1],
                                     self.device) for px, cap in zip(pixels, batch["caption"], strict=True)]
        cat = lambda attr: None if getattr(conds[0], attr) is None else torch.cat([getattr(v, attr) for v in conds])
        velocity = WanVelocity(self.model, cat("text_embeds"), image_embeds=cat("image_embeds"),
                               extra_channels=cat("extra_channels"), runner=runner,
                               prediction=self.stage1.prediction)
        sigma = train_sigmas(c, z.shape[0], g)
        return clip_loss(velocity, z, sigma, torch.randn(z.shape, generator=g).to(z.device))

    def export(self, state_dict: dict[str, torch.Tensor], path: Path) -> None:
        """A diffusers-format LoRA file (`transformer.` keys) that `generate --lora` loads; rank 0: the DiT folder."""
        if not self.cfg.lora.rank:
            save_transformer(self.model, state_dict, path, self.cfg, self.stage1.prediction)
            return
        from diffusers import WanImageToVideoPipeline
        from peft.utils import get_peft_model_state_dict

        lora = get_peft_model_state_dict(self.model, state_dict=state_dict)
        dtype = torch.bfloat16 if self.cfg.export_dtype == "bf16" else torch.float32
        lora = {k: v.detach().to("cpu", dtype) for k, v in lora.items()}
        path.mkdir(parents=True, exist_ok=True)
        WanImageToVideoPipeline.save_lora_weights(path, transformer_lora_layers=lora, weight_name=LORA_FILE,
                                                  safe_serialization=True)
        write_run_config(path, self.cfg, self.stage1.prediction)


TASKS = {"stage2": Stage2Task, "stage1": Stage1Task, "stage1-lora": Stage1Task}
