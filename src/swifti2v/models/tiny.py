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
a residual on their conditioning (models/adapter.py). `training.tiny.build_base` fits the codec and writes the
random-init starting point (from a seed) that the recipe (recipes/tiny/train.sh) trains; that workshop
(codec fitting, the base, composing and bundling folders) lives in training/tiny.py.
"""

from __future__ import annotations

from diffusers import WanTransformer3DModel

CODEC = dict(scale_factor_spatial=8, scale_factor_temporal=4, projected_dim=192, fitted=True)
Z = CODEC["projected_dim"]
STAGE1_DEBLOCK = 2  # pixels: Stage I's decoder ramps its tokens' edges (models/codec.py `deblock`)
WIDTH, HEADS = 384, 6
TEXT_DIM = 32


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
