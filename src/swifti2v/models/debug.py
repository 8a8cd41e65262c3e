"""`debug-random`: tiny random-init components with the real Wan architectures and key names.

Built in code (no download) from a fixed seed, so every code path runs on a laptop CPU in seconds.
Outputs are noise-like: these weights are random. Same classes as the full-size models: UMT5 text
encoder, CLIP vision tower, Wan2.1-style VAE (z, 4x8x8), Wan2.2-style VAE (patchified, 4x16x16),
Wan I2V DiT (image cross-attention, mask+image latent channels), TI2V-style DiT.
"""

from __future__ import annotations

from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanTransformer3DModel
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import (
    CLIPVisionConfig,
    CLIPVisionModel,
    PreTrainedTokenizerFast,
    UMT5Config,
    UMT5EncoderModel,
)

TEXT_DIM = 32
STAGE1_Z = 4
STAGE2_Z = 8


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    """Byte-level tokenizer (one token per byte) with T5's special tokens: any prompt tokenizes."""
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2}
    vocab.update({ch: i + 3 for i, ch in enumerate(sorted(alphabet))})
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>", model_max_length=512
    )


def tiny_text_encoder() -> UMT5EncoderModel:
    cfg = UMT5Config(
        vocab_size=259, d_model=TEXT_DIM, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
        relative_attention_num_buckets=8, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
    )
    return UMT5EncoderModel(cfg).eval()


def tiny_image_encoder() -> tuple[CLIPVisionModel, object]:
    cfg = CLIPVisionConfig(
        hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
        image_size=32, patch_size=8, projection_dim=16,
    )
    from transformers import CLIPImageProcessorPil  # the PIL backend: no torchvision needed

    processor = CLIPImageProcessorPil(crop_size={"height": 32, "width": 32}, size={"shortest_edge": 32})
    return CLIPVisionModel(cfg).eval(), processor


def _stats(z: int) -> dict:
    return {"latents_mean": [0.0] * z, "latents_std": [1.0] * z}


def tiny_vae_21() -> AutoencoderKLWan:
    """Wan2.1-style VAE: 4x8x8, no patchify."""
    return AutoencoderKLWan(
        base_dim=8, z_dim=STAGE1_Z, dim_mult=[1, 2, 2, 2], num_res_blocks=1, attn_scales=[],
        temperal_downsample=[False, True, True], **_stats(STAGE1_Z),
    ).eval()


def tiny_vae_22() -> AutoencoderKLWan:
    """Wan2.2-style VAE: residual blocks, 2x2 patchify in front, 4x16x16 overall."""
    return AutoencoderKLWan(
        base_dim=8, decoder_base_dim=12, z_dim=STAGE2_Z, dim_mult=[1, 2, 2, 2], num_res_blocks=1,
        attn_scales=[], temperal_downsample=[False, True, True], is_residual=True, in_channels=12,
        out_channels=12, patch_size=2, scale_factor_spatial=16, **_stats(STAGE2_Z),
    ).eval()


def _tiny_dit(**kw) -> WanTransformer3DModel:
    base = dict(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, text_dim=TEXT_DIM,
        freq_dim=32, ffn_dim=48, num_layers=2, cross_attn_norm=True, rope_max_seq_len=1024,
    )
    return WanTransformer3DModel(**{**base, **kw}).eval()


def tiny_stage1_transformer() -> WanTransformer3DModel:
    """Wan2.1 I2V-style: input = noise (z) + mask (4) + image latent (z); CLIP tokens via added K/V."""
    return _tiny_dit(in_channels=2 * STAGE1_Z + 4, out_channels=STAGE1_Z, image_dim=16, added_kv_proj_dim=24)


def tiny_stage2_transformer() -> WanTransformer3DModel:
    """TI2V-5B-style (text only, z=STAGE2_Z in/out), the base of both Stage II modes."""
    return _tiny_dit(in_channels=STAGE2_Z, out_channels=STAGE2_Z)


# `bench-cpu`'s VAE: a fixed projected codec with Wan2.2's latent density (48 channels per 4x16x16 pixels),
# so a benchmark times the DiT, not a CPU-bound VAE, and whole-clip latents are as small as at full size.
BENCH_CODEC = dict(scale_factor_spatial=16, scale_factor_temporal=4, projected_dim=48)


def bench_stage2_transformer() -> WanTransformer3DModel:
    """`bench-cpu`'s Stage II: wide and deep enough that attention and MLPs dominate a call, as at full size
    (256 wide, 4 layers, 1024 FFN; patch 1x1x1 over the codec: one token per 16x16 pixels)."""
    z = BENCH_CODEC["projected_dim"]
    return _tiny_dit(in_channels=z, out_channels=z, num_attention_heads=4, attention_head_dim=64,
                     ffn_dim=1024, num_layers=4, freq_dim=64, patch_size=(1, 1, 1))


def scheduler() -> FlowMatchEulerDiscreteScheduler:
    return FlowMatchEulerDiscreteScheduler(shift=5.0)
