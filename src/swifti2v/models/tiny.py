"""The `tiny` models: small Wan-architecture components trained on procedural video, shipped in the package.

Layout (diffusers format, the same loading code as the real models):

    weights/tiny/stage1/  model_index.json, transformer/ (Wan2.1 I2V-style DiT, no CLIP), vae/ (PixelCodec),
                          text_encoder/ (UMT5), tokenizer/ (byte-level)
    weights/tiny/stage2/  vae/ (PixelCodec), transformer/ (concat refiner, [x ; z_ref] input), text_encoder/,
                          tokenizer/ (the same as Stage I's)
    weights/tiny/stage2-no-transition/  the same refiner trained on oracle (downsampled) references only

Both stages code video with the fixed lossless PixelCodec (4 frames x 8 x 8 pixels per latent pixel,
768 channels) and use 1x1x1 patches, so one token is an 8x8-pixel patch of 4 frames. Both DiTs predict
x0 as a residual on their conditioning (models/adapter.py): 256 wide, they cannot carry 768 channels of
noise through to a velocity. `build_base` writes the random-init starting point (from a seed) that the
recipe (recipes/tiny/train.sh) trains.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from diffusers import WanTransformer3DModel

from swifti2v.models.adapter import PREDICTION_FILE
from swifti2v.models.codec import PixelCodec
from swifti2v.presets import BUNDLED  # "bundled:tiny/stage1" -> WEIGHTS_DIR/tiny/stage1

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
CODEC = dict(scale_factor_spatial=8, scale_factor_temporal=4)
Z = 3 * CODEC["scale_factor_temporal"] * CODEC["scale_factor_spatial"] ** 2
TEXT_DIM = 32


def resolve(source: str) -> str:
    """'bundled:NAME' -> the folder inside the package; anything else unchanged."""
    return str(WEIGHTS_DIR / source.removeprefix(BUNDLED)) if source.startswith(BUNDLED) else source


def _dit(in_channels: int, layers: int, **kw) -> WanTransformer3DModel:
    return WanTransformer3DModel(
        patch_size=(1, 1, 1), num_attention_heads=4, attention_head_dim=64, in_channels=in_channels,
        out_channels=Z, text_dim=TEXT_DIM, freq_dim=64, ffn_dim=768, num_layers=layers, cross_attn_norm=True,
        qk_norm="rms_norm_across_heads", rope_max_seq_len=256, **kw,
    )


def stage1_transformer() -> WanTransformer3DModel:
    """Wan2.1 I2V-style input: noise (Z) + first-frame mask (4) + image latent (Z); text cross-attention."""
    return _dit(2 * Z + CODEC["scale_factor_temporal"], layers=4)


def stage2_transformer() -> WanTransformer3DModel:
    """TI2V-style base (Z in, Z out); training widens it to the concat refiner's [x ; z_ref]."""
    return _dit(Z, layers=6)


def build_base(out: str | Path, seed: int = 0) -> Path:
    """Write the random-init tiny Stage I and Stage II folders (the start of training) under `out`."""
    from swifti2v.models import debug

    out = Path(out)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        text, s1, s2 = debug.tiny_text_encoder(), stage1_transformer(), stage2_transformer()
    codec = PixelCodec(**CODEC)
    s1_dir, s2_dir = out / "stage1", out / "stage2"
    for model, folder in ((s1, s1_dir / "transformer"), (s2, s2_dir / "transformer")):
        model.save_pretrained(folder)
        (folder / PREDICTION_FILE).write_text(json.dumps({"prediction": "x0"}))  # see models/adapter.py
    for d in (s1_dir, s2_dir):
        codec.save_pretrained(d / "vae")
    for d in (s1_dir, s2_dir):  # both folders are complete: `refine` reads the text encoder from Stage II's
        text.save_pretrained(d / "text_encoder")
        debug.tiny_tokenizer().save_pretrained(d / "tokenizer")
    write_model_index(s1_dir)
    return out


def write_model_index(folder: Path) -> None:
    """A Wan I2V model_index.json (so `load_stage1` reads the folder like a real one)."""
    index = {
        "_class_name": "WanImageToVideoPipeline", "_diffusers_version": "0.42.1",
        "transformer": ["diffusers", "WanTransformer3DModel"], "vae": ["swifti2v.models.codec", "PixelCodec"],
        "text_encoder": ["transformers", "UMT5EncoderModel"], "tokenizer": ["transformers", "PreTrainedTokenizerFast"],
        "transformer_2": [None, None], "image_encoder": [None, None], "image_processor": [None, None],
        "boundary_ratio": None, "expand_timesteps": False,
    }
    (folder / "model_index.json").write_text(json.dumps(index, indent=2))


def compose(base_folder: str | Path, transformer: str | Path, out: str | Path) -> Path:
    """A copy of a model folder (codec, text encoder, ...) with its transformer/ replaced by a trained one."""
    import shutil

    out = Path(out)
    shutil.copytree(base_folder, out, ignore=shutil.ignore_patterns("transformer"), dirs_exist_ok=True)
    shutil.copytree(transformer, out / "transformer")
    return out


def assemble(base: str | Path, stage1: str | Path, stage2: str | Path, ablation: str | Path,
             out: str | Path = WEIGHTS_DIR / "tiny") -> Path:
    """Bundle trained transformer folders with the base's codec, text encoder and tokenizer into `out`."""
    import shutil

    base, out = Path(base), Path(out)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    compose(base / "stage1", stage1, tmp / "stage1")
    compose(base / "stage2", stage2, tmp / "stage2")
    compose(base / "stage2", ablation, tmp / "stage2-no-transition")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out
