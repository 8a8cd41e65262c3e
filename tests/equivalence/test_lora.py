"""A LightX2V-format LoRA (original Wan key names, incl. diff_m) changes exactly the weights it should."""

import copy

import pytest
import torch
from safetensors.torch import save_file

from swifti2v.errors import UserError
from swifti2v.models.lora import fuse_lora_file

RANK, ALPHA, STRENGTH = 4, 2.0, 0.5


def _lora(transformer):
    g = torch.Generator().manual_seed(0)
    r = lambda *shape: torch.randn(*shape, generator=g) * 0.1
    dim = transformer.config.num_attention_heads * transformer.config.attention_head_dim
    ffn = transformer.config.ffn_dim
    added = transformer.config.added_kv_proj_dim or dim  # (A14B experts have no image K/V; their keys are dropped)
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
    report = fuse_lora_file(pipe, tmp_path / "lora.safetensors", STRENGTH)
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
        fuse_lora_file(stage1.pipe, tmp_path / "missing.safetensors")
    with pytest.raises(UserError, match="safetensors"):
        fuse_lora_file(stage1.pipe, tmp_path / "lora.pt")
    (tmp_path / "bad.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(UserError, match="could not be read"):
        fuse_lora_file(stage1.pipe, tmp_path / "bad.safetensors")


def _diffusers_lora(path, transformer, seed=1, rank=3):
    """A diffusers-format LoRA file as `swifti2v train stage1-lora` exports it (peft keys, `transformer.` prefix,
    no alpha: scale 1): to_k of block 0 and ffn.net.2 of block 1."""
    from diffusers import WanImageToVideoPipeline

    g = torch.Generator().manual_seed(seed)
    c = transformer.config
    dim, ffn = c.num_attention_heads * c.attention_head_dim, c.ffn_dim
    layers = {"blocks.0.attn1.to_k.lora_A.weight": torch.randn(rank, dim, generator=g) * 0.1,
              "blocks.0.attn1.to_k.lora_B.weight": torch.randn(dim, rank, generator=g) * 0.1,
              "blocks.1.ffn.net.2.lora_A.weight": torch.randn(rank, ffn, generator=g) * 0.1,
              "blocks.1.ffn.net.2.lora_B.weight": torch.randn(dim, rank, generator=g) * 0.1}
    path.mkdir(parents=True, exist_ok=True)
    WanImageToVideoPipeline.save_lora_weights(path, transformer_lora_layers=layers, weight_name="lowres.safetensors",
                                              safe_serialization=True)
    return path / "lowres.safetensors", layers


def test_two_stacked_loras_add_their_scaled_deltas(stage1, tmp_path):
    """The paper's Stage I: a LightX2V-format few-step LoRA (with diff_m) and a diffusers-format low-res LoRA,
    fused in order; every targeted weight moves by the sum of both scaled deltas, nothing else moves."""
    from swifti2v.config import LoraFile
    from swifti2v.models.lora import fuse_loras

    pipe = copy.deepcopy(stage1.pipe)
    before = {k: v.clone() for k, v in pipe.transformer.state_dict().items()}
    raw = _lora(pipe.transformer)
    raw = {k: v for k, v in raw.items() if "bogus" not in k}
    save_file(raw, tmp_path / "fewstep.safetensors")
    lowres, layers = _diffusers_lora(tmp_path / "lowres", pipe.transformer)
    # the same LoRA alone, for the expected few-step deltas
    alone = copy.deepcopy(stage1.pipe)
    fuse_lora_file(alone, tmp_path / "fewstep.safetensors", STRENGTH)
    few = {k: alone.transformer.state_dict()[k] - before[k] for k in before}
    reports = fuse_loras(pipe, [LoraFile(str(tmp_path / "fewstep.safetensors"), STRENGTH),
                                LoraFile(str(lowres), 0.7)])
    after = pipe.transformer.state_dict()
    low = {"blocks.0.attn1.to_k.weight": 0.7 * layers["blocks.0.attn1.to_k.lora_B.weight"]
           @ layers["blocks.0.attn1.to_k.lora_A.weight"],
           "blocks.1.ffn.net.2.weight": 0.7 * layers["blocks.1.ffn.net.2.lora_B.weight"]
           @ layers["blocks.1.ffn.net.2.lora_A.weight"]}
    for key in before:
        expected = few[key] + low.get(key, 0)
        torch.testing.assert_close(after[key] - before[key], expected, atol=1e-5, rtol=1e-4, msg=key)
    assert any(few[k].abs().max() > 0 for k in few) and set(low) <= set(before)
    assert [r["strength"] for r in reports] == [STRENGTH, 0.7] and reports[1]["pairs"] == 2
    assert reports[0]["modulation_deltas"] == 2 and reports[0]["path"].endswith("fewstep.safetensors")


@pytest.fixture(scope="module")
def a14b():
    """A Wan2.2-I2V-A14B-like pipeline: two tiny experts (no CLIP), boundary 0.9."""
    from diffusers import FlowMatchEulerDiscreteScheduler, WanImageToVideoPipeline

    from swifti2v.models import debug

    torch.manual_seed(0)
    expert = lambda: debug._tiny_dit(in_channels=2 * debug.STAGE1_Z + 4, out_channels=debug.STAGE1_Z)
    return WanImageToVideoPipeline(tokenizer=None, text_encoder=None, vae=debug.tiny_vae_21(),
                                   scheduler=FlowMatchEulerDiscreteScheduler(shift=5.0), transformer=expert(),
                                   transformer_2=expert(), boundary_ratio=0.9)


@pytest.mark.parametrize(("target", "changed"), [("high", {"transformer"}), ("low", {"transformer_2"}),
                                                 ("all", {"transformer", "transformer_2"})])
def test_a_targeted_lora_changes_only_its_expert(a14b, tmp_path, target, changed):
    pipe = copy.deepcopy(a14b)
    raw = {k: v for k, v in _lora(pipe.transformer).items() if "img" not in k and "bogus" not in k}
    save_file(raw, tmp_path / "expert.safetensors")
    before = {c: {k: v.clone() for k, v in getattr(pipe, c).state_dict().items()} for c in ("transformer",
                                                                                            "transformer_2")}
    report = fuse_lora_file(pipe, tmp_path / "expert.safetensors", STRENGTH, target)
    for component, weights in before.items():
        moved = {k for k, v in getattr(pipe, component).state_dict().items() if not torch.equal(v, weights[k])}
        assert bool(moved) == (component in changed), (component, target)
    assert sorted(report.experts) == sorted(changed) and report.target == target
    if target == "all":  # the same deltas in both experts
        d1 = pipe.transformer.state_dict()["blocks.0.attn1.to_q.weight"] - before["transformer"][
            "blocks.0.attn1.to_q.weight"]
        d2 = pipe.transformer_2.state_dict()["blocks.0.attn1.to_q.weight"] - before["transformer_2"][
            "blocks.0.attn1.to_q.weight"]
        torch.testing.assert_close(d1, d2)


def test_lora_target_and_match_errors(stage1, tmp_path):
    raw = {k: v for k, v in _lora(stage1.pipe.transformer).items() if "bogus" not in k}
    save_file(raw, tmp_path / "one.safetensors")
    with pytest.raises(UserError, match="has one DiT; drop 'high='"):
        fuse_lora_file(copy.deepcopy(stage1.pipe), tmp_path / "one.safetensors", target="high")
    other = {"diffusion_model.blocks.7.self_attn.q.lora_down.weight": torch.zeros(2, 24),
             "diffusion_model.blocks.7.self_attn.q.lora_up.weight": torch.zeros(24, 2),
             "diffusion_model.blocks.7.diff_m": torch.zeros(1, 6, 24)}  # a deeper model's blocks
    save_file(other, tmp_path / "other.safetensors")
    pipe = copy.deepcopy(stage1.pipe)
    before = {k: v.clone() for k, v in pipe.transformer.state_dict().items()}
    with pytest.raises(UserError, match=r"other.safetensors matched no weight"):
        fuse_lora_file(pipe, tmp_path / "other.safetensors")
    assert all(torch.equal(v, before[k]) for k, v in pipe.transformer.state_dict().items())


def test_a_lora_of_another_model_size_is_a_clear_error(stage1, tmp_path):
    save_file({"diffusion_model.blocks.0.ffn.2.lora_down.weight": torch.zeros(2, 24),  # ffn.2 takes 48 here
               "diffusion_model.blocks.0.ffn.2.lora_up.weight": torch.zeros(24, 2)}, tmp_path / "wide.safetensors")
    pipe = copy.deepcopy(stage1.pipe)
    with pytest.raises(UserError, match=r"wide.safetensors does not fit this Stage I model \(size mismatch"):
        fuse_lora_file(pipe, tmp_path / "wide.safetensors")
    assert not any("lora" in k for k in pipe.transformer.state_dict()), "no adapter left behind"
