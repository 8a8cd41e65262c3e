"""Architecture configs of the full-size models (diffusers config keys), and models built from them
without weights: on the meta device (free, for counting) or randomly initialised on a device (for the
GPU benchmark, where time and memory do not depend on the weight values).

Values are those of the public diffusers-format checkpoints: Wan2.1-I2V-14B-480P (+ its CLIP ViT-H/14
and Wan2.1 VAE), Wan2.2-TI2V-5B (+ Wan2.2 VAE), umt5-xxl's encoder, and Wan2.1-T2V-14B (the
end-to-end 2K baseline's DiT).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKLWan, WanTransformer3DModel

from swifti2v.errors import UserError

_WAN_DIT = dict(patch_size=(1, 2, 2), attention_head_dim=128, text_dim=4096, freq_dim=256, cross_attn_norm=True,
                qk_norm="rms_norm_across_heads", eps=1e-6, rope_max_seq_len=1024)
WAN21_I2V_14B = dict(_WAN_DIT, num_attention_heads=40, in_channels=36, out_channels=16, ffn_dim=13824, num_layers=40,
                     image_dim=1280, added_kv_proj_dim=5120)
WAN21_T2V_14B = dict(_WAN_DIT, num_attention_heads=40, in_channels=16, out_channels=16, ffn_dim=13824, num_layers=40)
WAN22_TI2V_5B = dict(_WAN_DIT, num_attention_heads=24, in_channels=48, out_channels=48, ffn_dim=14336, num_layers=30)
WAN21_VAE: dict[str, Any] = {}  # AutoencoderKLWan's defaults: z16, 4x8x8
WAN22_VAE = dict(base_dim=160, decoder_base_dim=256, z_dim=48, is_residual=True, in_channels=12, out_channels=12,
                 patch_size=2, scale_factor_spatial=16, scale_factor_temporal=4)
UMT5_XXL = dict(vocab_size=256384, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
                relative_attention_num_buckets=32, relative_attention_max_distance=128,
                feed_forward_proj="gated-gelu", is_encoder_decoder=False)
CLIP_VIT_H14 = dict(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=16,
                    image_size=224, patch_size=14, projection_dim=1024, hidden_act="gelu")
CLIP_TOKENS = 257  # Wan2.1 I2V reads the penultimate layer's 16x16 patches + class token

# Hub id -> (Stage I or II DiT config, VAE config)
FULL_SIZE = {
    "Wan-AI/Wan2.1-I2V-14B-480P-Diffusers": (WAN21_I2V_14B, WAN21_VAE),
    "Wan-AI/Wan2.1-T2V-14B-Diffusers": (WAN21_T2V_14B, WAN21_VAE),
    "Wan-AI/Wan2.2-TI2V-5B-Diffusers": (WAN22_TI2V_5B, WAN22_VAE),
}


def local_config(source: str, file: str) -> Path | None:
    """`source`/`file` in a local folder, or in the Hub cache for a Hub id (no download)."""
    path = Path(source) / file
    if path.is_file():
        return path
    if "/" in source and not Path(source).exists():
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(source, file)
        if isinstance(cached, str):
            return Path(cached)
    return None


def transformer_config(source: str, subfolder: str = "transformer") -> dict:
    """A DiT's config from a local diffusers folder or the Hub cache, else a known Hub id's."""
    path = local_config(source, f"{subfolder}/config.json" if subfolder else "config.json")
    if path is None:
        if source in FULL_SIZE:
            return dict(FULL_SIZE[source][0])
        raise UserError(f"no transformer config for {source!r}: not a known Hub id ({', '.join(FULL_SIZE)}) "
                        f"and {Path(source) / subfolder / 'config.json'} does not exist")
    cfg = json.loads(path.read_text())
    keys = WanTransformer3DModel.extract_init_dict(cfg)[0].keys()
    return {k: v for k, v in cfg.items() if k in keys}


def vae_config(source: str) -> dict:
    path = local_config(source, "vae/config.json")
    if path is None:
        if source in FULL_SIZE:
            return dict(FULL_SIZE[source][1])
        raise UserError(f"no VAE config for {source!r}: not a known Hub id and {Path(source) / 'vae'} has no "
                        "config.json")
    return json.loads(path.read_text())


def keep_fp32(model: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """Cast to `dtype` but keep the modules diffusers keeps in fp32 (as `from_pretrained(torch_dtype=)`)."""
    torch.nn.Module.to(model, dtype)  # diffusers' .to() warns about the fp32 modules, handled below
    for name in getattr(model, "_keep_in_fp32_modules", None) or []:
        for path, module in model.named_modules():
            if name in path.split("."):
                module.float()
    return model


def meta_transformer(config: dict, dtype: torch.dtype = torch.bfloat16) -> WanTransformer3DModel:
    """The DiT with no storage (counting parameters, FLOPs and activations)."""
    with torch.device("meta"):
        return keep_fp32(WanTransformer3DModel(**config), dtype).eval().requires_grad_(False)


def vae_init(config: dict) -> dict:
    """AutoencoderKLWan kwargs; latent statistics of the right length when the config has none (their
    values do not matter for counting or timing)."""
    z = config.get("z_dim", 16)
    return {"latents_mean": [0.0] * z, "latents_std": [1.0] * z, **config}


def meta_vae(config: dict, dtype: torch.dtype = torch.float32) -> AutoencoderKLWan:
    with torch.device("meta"):
        vae = AutoencoderKLWan(**vae_init(config))
    return torch.nn.Module.to(vae, dtype).eval().requires_grad_(False)


def random_module(build, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
    """`build()` initialised directly on `device` in `dtype` (fp32 where diffusers keeps fp32): random weights
    without a CPU round trip, fast even at 14B on a GPU."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = build()
    finally:
        torch.set_default_dtype(previous)
    return keep_fp32(model, dtype).eval().requires_grad_(False)


def param_count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def param_bytes(model: torch.nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters())
