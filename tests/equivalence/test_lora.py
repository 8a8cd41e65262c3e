"""A LightX2V-format LoRA (original Wan key names, incl. diff_m) changes exactly the weights it should."""

import copy

import pytest
import torch
from safetensors.torch import save_file

from swifti2v.errors import UserError
from swifti2v.models.lora import load_lightx2v_lora

RANK, ALPHA, STRENGTH = 4, 2.0, 0.5


def _lora(transformer):
    g = torch.Generator().manual_seed(0)
    r = lambda *shape: torch.randn(*shape, generator=g) * 0.1
    dim = transformer.config.num_attention_heads * transformer.config.attention_head_dim
    ffn = transformer.config.ffn_dim
    added = transformer.config.added_kv_proj_dim
    sd = {
        "blocks.0.self_attn.q.lora_down.weight": r(RANK, dim),
        "blocks.0.self_attn.q.lora_up.weight": r(dim, RANK),
        "blocks.0.self_attn.q.alpha": torch.tensor(ALPHA),
        "blocks.0.self_attn.q.diff_b": r(dim),
        "blocks.1.cross_attn.k_img.lora_down.weight": r(RANK, added),
        "blocks.1.cross_attn.k_img.lora_up.weight": r(dim, RANK),
        "blocks.1.cross_attn.v_img.lora_down.weight": r(RANK, added),
        "blocks.1.cross_attn.v_img.lora_up.weight": r(dim, RANK),
        "blocks.1.ffn.0.lora_down.weight": r(RANK, dim),
        "blocks.1.ffn.0.lora_up.weight": r(ffn, RANK),
        "blocks.0.diff_m": r(1, 6, dim),  # per-block modulation delta: diffusers drops it
        "head.diff_m": r(1, 2, dim),
        "blocks.1.norm3.diff": r(dim),  # Wan's cross-attn norm = diffusers norm2
        "blocks.1.norm3.diff_b": r(dim),
        "blocks.0.cross_attn.o.diff_b": r(dim),  # a bias delta with no low-rank pair
        "blocks.0.self_attn.bogus.diff": r(dim),  # matches nothing
    }
    return {f"diffusion_model.{k}": v for k, v in sd.items()}


def test_lightx2v_lora_changes_exactly_its_weights(stage1, tmp_path):
    pipe = copy.deepcopy(stage1.pipe)
    before = {k: v.clone() for k, v in pipe.transformer.state_dict().items()}
    raw = _lora(pipe.transformer)
    save_file(raw, tmp_path / "lora.safetensors")
    report = load_lightx2v_lora(pipe, tmp_path / "lora.safetensors", STRENGTH)
    after = pipe.transformer.state_dict()
    assert set(after) == set(before), "fused and unloaded: no adapter modules left"
    L = lambda k: raw[f"diffusion_model.{k}"]

    def lowrank(name):
        scale = ALPHA / RANK if name == "blocks.0.self_attn.q" else 1.0
        return STRENGTH * scale * L(f"{name}.lora_up.weight") @ L(f"{name}.lora_down.weight")

    expected = {
        "blocks.0.attn1.to_q.weight": lowrank("blocks.0.self_attn.q"),
        "blocks.0.attn1.to_q.bias": STRENGTH * L("blocks.0.self_attn.q.diff_b"),
        "blocks.1.attn2.add_k_proj.weight": lowrank("blocks.1.cross_attn.k_img"),
        "blocks.1.attn2.add_v_proj.weight": lowrank("blocks.1.cross_attn.v_img"),
        "blocks.1.ffn.net.0.proj.weight": lowrank("blocks.1.ffn.0"),
        "blocks.0.scale_shift_table": STRENGTH * L("blocks.0.diff_m"),
        "scale_shift_table": STRENGTH * L("head.diff_m"),
        "blocks.1.norm2.weight": STRENGTH * L("blocks.1.norm3.diff"),
        "blocks.1.norm2.bias": STRENGTH * L("blocks.1.norm3.diff_b"),
        "blocks.0.attn2.to_out.0.bias": STRENGTH * L("blocks.0.cross_attn.o.diff_b"),
    }
    for key in before:
        delta = after[key] - before[key]
        if key in expected:
            torch.testing.assert_close(delta, expected[key], atol=1e-5, rtol=1e-4, msg=key)
        else:
            assert torch.equal(after[key], before[key]), f"{key} changed but the LoRA has no delta for it"
    assert report.pairs == 4 and report.bias_deltas == 1
    assert report.modulation_deltas == 2 and report.direct_deltas == 3
    assert report.unmatched == ["blocks.0.self_attn.bogus.diff"]
    assert "unmatched" in report.summary()


def test_lora_file_errors(stage1, tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_lightx2v_lora(stage1.pipe, tmp_path / "missing.safetensors")
    with pytest.raises(UserError, match="safetensors"):
        load_lightx2v_lora(stage1.pipe, tmp_path / "lora.pt")
    (tmp_path / "bad.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(UserError, match="could not be read"):
        load_lightx2v_lora(stage1.pipe, tmp_path / "bad.safetensors")
