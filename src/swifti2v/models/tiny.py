"""The `tiny` models: small Wan-architecture components trained on procedural video, shipped in the package.

Layout (diffusers format, the same loading code as the real models):

    weights/tiny/stage1/  model_index.json, transformer/ (Wan2.1 I2V-style DiT, no CLIP), vae/ (PixelCodec),
                          text_encoder/ (UMT5), tokenizer/ (byte-level)
    weights/tiny/stage2/  vae/ (PixelCodec), transformer/ (concat refiner, [x ; z_ref] input), text_encoder/,
                          tokenizer/ (the same as Stage I's)

Both stages code video with a fixed linear codec: the 192 principal components of 4-frame x 8 x 8-pixel
RGB patches (768 values), fitted on training clips and on their bicubic x4 round trips (the hybrid
reference is bicubic), so it keeps both nearly losslessly. One token is one 1x1x1 latent pixel (192
channels) and both DiTs are 384 wide: a DiT can only copy what fits through its width, and this keeps it
at 2x a token's channels, as TI2V-5B (3,072 wide, 192 channels per token) does. Both DiTs predict x0 as
a residual on their conditioning (models/adapter.py). `build_base` fits the codec and writes the
random-init starting point (from a seed) that the recipe (recipes/tiny/train.sh) trains.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from diffusers import WanTransformer3DModel

from swifti2v.models.adapter import PREDICTION_FILE
from swifti2v.models.codec import PixelCodec, fit_pca, patch_vectors
from swifti2v.presets import BUNDLED  # "bundled:tiny/stage1" -> WEIGHTS_DIR/tiny/stage1

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
CODEC = dict(scale_factor_spatial=8, scale_factor_temporal=4, projected_dim=192, fitted=True)
Z = CODEC["projected_dim"]
WIDTH, HEADS = 384, 6
TEXT_DIM = 32
# The codec's fit weighs bicubic x4 round trips 8x the sharp patches: the reference then loses <= 0.1 dB
# to the round trip (docs/results.md), and the sharp clips still reconstruct at ~39 dB.
BICUBIC_WEIGHT = 8.0


def resolve(source: str) -> str:
    """'bundled:NAME' -> the folder inside the package; anything else unchanged."""
    return str(WEIGHTS_DIR / source.removeprefix(BUNDLED)) if source.startswith(BUNDLED) else source


def _dit(in_channels: int, layers: int, **kw) -> WanTransformer3DModel:
    return WanTransformer3DModel(
        patch_size=(1, 1, 1), num_attention_heads=HEADS, attention_head_dim=WIDTH // HEADS, in_channels=in_channels,
        out_channels=Z, text_dim=TEXT_DIM, freq_dim=64, ffn_dim=4 * WIDTH, num_layers=layers, cross_attn_norm=True,
        qk_norm="rms_norm_across_heads", rope_max_seq_len=256, **kw,
    )


def stage1_transformer() -> WanTransformer3DModel:
    """Wan2.1 I2V-style input: noise (Z) + first-frame mask (4) + image latent (Z); text cross-attention."""
    return _dit(2 * Z + CODEC["scale_factor_temporal"], layers=4)


def stage2_transformer() -> WanTransformer3DModel:
    """TI2V-style base (Z in, Z out); training widens it to the concat refiner's [x ; z_ref]."""
    return _dit(Z, layers=6)


def zero_head(transformer: WanTransformer3DModel) -> WanTransformer3DModel:
    """Output projection set to zero: an x0 model's residual starts at nothing, so Stage II starts as its
    conditioning's own guess, z_ref (bicubic through the codec), and training can only add to it."""
    with torch.no_grad():
        transformer.proj_out.weight.zero_()
        transformer.proj_out.bias.zero_()
    return transformer


def zero_head_folder(folder: str | Path) -> None:
    """zero_head on a saved transformer folder, in place (recipes/tiny/train.sh ZERO_HEAD=1)."""
    folder = Path(folder)
    model = WanTransformer3DModel.from_pretrained(folder, torch_dtype=torch.float32)
    for pattern in ("diffusion_pytorch_model*.safetensors", "diffusion_pytorch_model*.index.json"):
        for f in folder.glob(pattern):
            f.unlink()
    zero_head(model).save_pretrained(folder)


def codec_patches(clips: int, seed: int, size: int = 256, frames: int = 33):
    """Patch vectors of training bank clips and of their bicubic x4 round trips (what the reference is)."""
    from swifti2v.data.bank import BankClips, StillBank, batch_pixels
    from swifti2v.data.cache import collate
    from swifti2v.reference import upsample
    from swifti2v.training.conditions import downsample

    data = BankClips(StillBank.build(clips, "train", seed=seed), clips, size, size, frames, seed0=seed)
    s, t = CODEC["scale_factor_spatial"], CODEC["scale_factor_temporal"]
    for i in range(clips):
        clip = batch_pixels(collate([data[i]]), "cpu")  # (1, 3, 1+4k, H, W)
        yield patch_vectors(clip, s, t), 1.0
        yield patch_vectors(upsample(downsample(clip, 4), size, size), s, t), BICUBIC_WEIGHT


def fit_codec(clips: int = 48, seed: int = 0) -> PixelCodec:
    """The tiny models' PCA codec, fitted on `clips` training clips (deterministic from the seed)."""
    basis, mean, variances = fit_pca(codec_patches(clips, seed), Z)
    scale = float(variances[:Z].mean().sqrt())  # one scale for every channel: latent MSE stays pixel MSE
    codec = PixelCodec(**CODEC, latents_std=[scale] * Z)
    codec.projection.copy_(basis)
    codec.offset.copy_(mean)
    return codec


def build_base(out: str | Path, seed: int = 0, codec_clips: int = 48) -> Path:
    """Write the random-init tiny Stage I and Stage II folders (the start of training) under `out`."""
    from swifti2v.models import debug

    out = Path(out)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        text, s1, s2 = debug.tiny_text_encoder(), stage1_transformer(), zero_head(stage2_transformer())
    codec = fit_codec(codec_clips, seed)
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
    reshard(out / "transformer")
    return out


def reshard(folder: Path, max_shard_size: str = "15MB") -> None:
    """Rewrite a transformer folder's weights as safetensors shards of at most `max_shard_size` (plus the
    index diffusers loads them by), so no file in the package is large."""
    from huggingface_hub import save_torch_state_dict
    from safetensors.torch import load_file

    files = sorted(folder.glob("diffusion_pytorch_model*.safetensors"))
    state = {k: v for f in files for k, v in load_file(str(f)).items()}
    for f in [*files, *folder.glob("diffusion_pytorch_model*.index.json")]:
        f.unlink()
    save_torch_state_dict(state, folder, filename_pattern="diffusion_pytorch_model{suffix}.safetensors",
                          max_shard_size=max_shard_size)


def assemble(base: str | Path, stage1: str | Path, stage2: str | Path, out: str | Path = WEIGHTS_DIR / "tiny") -> Path:
    """Bundle trained transformer folders with the base's codec, text encoder and tokenizer into `out`."""
    import shutil

    base, out = Path(base), Path(out)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    compose(base / "stage1", stage1, tmp / "stage1")
    compose(base / "stage2", stage2, tmp / "stage2")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out
