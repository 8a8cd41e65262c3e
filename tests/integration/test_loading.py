"""The real loading path (diffusers-format folders, as on the Hub) on tiny models saved to disk."""

from dataclasses import replace

import pytest
import torch
from diffusers import WanPipeline

from swifti2v import pipeline
from swifti2v.config import ScheduleConfig
from swifti2v.errors import UserError
from swifti2v.media import fit, load_image, probe_video
from swifti2v.models import debug
from swifti2v.models.components import load_stage1, load_stage2, load_text_encoder
from swifti2v.presets import get_preset, with_overrides
from swifti2v.stage1 import generate_motion

CPU = torch.device("cpu")




def test_components_load_from_folders(wan_folders):
    s1 = load_stage1(str(wan_folders / "i2v"), CPU, torch.float32)
    assert s1.transformer.config.image_dim == 16 and s1.pipe.image_encoder is not None
    assert s1.transformer_2 is None and s1.boundary_sigma is None
    assert s1.vae.z_dim == debug.STAGE1_Z and s1.vae.spatial == 8
    pair = load_stage1(str(wan_folders / "a14b"), CPU, torch.float32)
    assert pair.transformer_2 is not None and pair.boundary_sigma == 0.9 and pair.pipe.image_encoder is None
    s2 = load_stage2(str(wan_folders / "ti2v"), None, False, CPU, torch.float32)
    assert not s2.concat and s2.vae.spatial == 16 and s2.vae.z_dim == debug.STAGE2_Z
    text = load_text_encoder(str(wan_folders / "ti2v"), CPU, torch.float32)
    emb = text.encode("a red square moves up", CPU)
    assert emb.shape == (1, 512, debug.TEXT_DIM)
    assert emb[0, 30:].abs().sum() == 0, "padded to 512 tokens with zeros past the prompt"
    helper = WanPipeline(tokenizer=text.tokenizer, text_encoder=text.model, vae=None, scheduler=None)
    for prompt in ("a red square moves up", "", "  the camera &amp; pans   left "):
        ref, _ = helper.encode_prompt(prompt, do_classifier_free_guidance=False, max_sequence_length=512,
                                      device=CPU)
        torch.testing.assert_close(text.encode(prompt, CPU), ref.float(), atol=1e-5, rtol=1e-5)


def test_two_expert_stage1_switches_at_the_boundary(wan_folders, image_file):
    pair = load_stage1(str(wan_folders / "a14b"), CPU, torch.float32)
    calls = []
    for name, model in (("high", pair.transformer), ("low", pair.transformer_2)):
        model.register_forward_pre_hook(lambda *a, name=name: calls.append(name))
    cfg = get_preset("debug-random")
    image = fit(load_image(image_file), 32, 64)
    z = generate_motion(pair, image, torch.zeros(1, 512, debug.TEXT_DIM), cfg.stage1, cfg.video, 0, CPU)
    assert z.shape == (1, debug.STAGE1_Z, cfg.video.num_blocks, 4, 8)
    # LightX2V sigmas [1, .9375, .833, .625] against boundary 0.9
    assert calls == ["high", "high", "low", "low"]


def test_generate_with_folder_models_in_refine_mode(wan_folders, image_file, tmp_path):
    cfg = get_preset("debug-random")
    cfg = replace(cfg, stage1=replace(cfg.stage1, model=str(wan_folders / "i2v")),
                  stage2=replace(cfg.stage2, mode="refine", model=str(wan_folders / "ti2v"),
                                 schedule=ScheduleConfig(steps=3, shift=3.0, start_sigma=0.6)))
    info = pipeline.generate(cfg, image_file, "the camera pans left", tmp_path / "v.mp4").info
    meta = probe_video(tmp_path / "v.mp4")
    assert (meta["frames"], meta["height"], meta["width"]) == (25, 128, 256)
    assert info["config"]["stage2"]["mode"] == "refine"


def test_a14b_stage1_runs_with_a_lora_per_expert(wan_folders, image_file, tmp_path):
    """The wan22-2k-refine layout on tiny wan_folders: a LoRA for each expert of the pair, named as the preset
    names LightX2V's, and a third for both; the sidecar reports which expert each went to."""
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(0)
    for name in ("high_noise", "low_noise", "both"):
        save_file({"diffusion_model.blocks.0.self_attn.q.lora_down.weight": torch.randn(2, 24, generator=g),
                   "diffusion_model.blocks.0.self_attn.q.lora_up.weight": torch.randn(24, 2, generator=g),
                   "diffusion_model.blocks.1.diff_m": torch.randn(1, 6, 24, generator=g)},
                  tmp_path / f"{name}.safetensors")
    cfg = get_preset("debug-random")
    cfg = replace(cfg, video=replace(cfg.video, frames=9), stage1=replace(cfg.stage1, model=str(wan_folders / "a14b")),
                  stage2=replace(cfg.stage2, mode="refine", model=str(wan_folders / "ti2v"),
                                 schedule=ScheduleConfig(steps=2, shift=3.0, start_sigma=0.6)))
    cfg = with_overrides(cfg, lora=[f"high={tmp_path / 'high_noise.safetensors'}",
                                    f"low={tmp_path / 'low_noise.safetensors'}@0.5",
                                    str(tmp_path / "both.safetensors")])
    info = pipeline.generate(cfg, image_file, "the camera pans left", tmp_path / "v.mp4").info
    reports = info["inputs"]["loras"]
    assert [(r["target"], r["experts"], r["strength"]) for r in reports] == [
        ("high", ["transformer"], 1.0), ("low", ["transformer_2"], 0.5), ("all", ["transformer", "transformer_2"], 1.0)]
    for r in reports:  # counted per expert a LoRA went into
        assert r["pairs"] == r["modulation_deltas"] == len(r["experts"]) and not r["unmatched"]


def test_missing_model_folder_is_a_user_error(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # no network retries in tests
    with pytest.raises(UserError, match="local folder"):
        load_stage2("no-such-org/no-such-model", None, False, CPU, torch.float32)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="could not be loaded"):
        load_stage1(str(tmp_path / "empty"), CPU, torch.float32)


def test_concat_checkpoint_errors(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_stage2("debug-random", str(tmp_path / "nope"), True, CPU, torch.float32)
    (tmp_path / "ck").mkdir()
    with pytest.raises(UserError, match="config.json"):
        load_stage2("debug-random", str(tmp_path / "ck"), True, CPU, torch.float32)
    (tmp_path / "ck" / "config.json").write_text("{}")
    (tmp_path / "ck" / "diffusion_pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(UserError, match="safetensors"):
        load_stage2("debug-random", str(tmp_path / "ck"), True, CPU, torch.float32)
    torch.manual_seed(0)
    debug.tiny_stage2_transformer().save_pretrained(tmp_path / "base")  # in_channels = z: not a refiner
    with pytest.raises(UserError, match="in_channels=8"):
        load_stage2("debug-random", str(tmp_path / "base"), True, CPU, torch.float32)


def test_generate_with_stacked_stage1_loras_reports_each(image_file, tmp_path):
    from safetensors.torch import save_file

    dim = 24  # tiny Stage I DiT: 2 heads x 12
    g = torch.Generator().manual_seed(0)
    fewstep = {
        "diffusion_model.blocks.0.self_attn.q.lora_down.weight": torch.randn(2, dim, generator=g),
        "diffusion_model.blocks.0.self_attn.q.lora_up.weight": torch.randn(dim, 2, generator=g),
        "diffusion_model.blocks.1.diff_m": torch.randn(1, 6, dim, generator=g),
    }
    save_file(fewstep, tmp_path / "fewstep.safetensors")
    save_file({"transformer.blocks.1.attn1.to_v.lora_A.weight": torch.randn(2, dim, generator=g),
               "transformer.blocks.1.attn1.to_v.lora_B.weight": torch.randn(dim, 2, generator=g)},
              tmp_path / "lowres.safetensors")
    cfg = get_preset("debug-random")
    cfg = with_overrides(replace(cfg, video=replace(cfg.video, frames=9)),
                         lora=[str(tmp_path / "fewstep.safetensors"), f"{tmp_path / 'lowres.safetensors'}@0.5"])
    info = pipeline.generate(cfg, image_file, "a red square moves up", tmp_path / "l.mp4").info
    few, low = info["inputs"]["loras"]  # in order, each with its own report
    assert few["path"].endswith("fewstep.safetensors") and few["strength"] == 1.0 and few["target"] == "all"
    assert (few["pairs"], few["modulation_deltas"], few["unmatched"]) == (1, 1, [])
    assert low["path"].endswith("lowres.safetensors") and low["strength"] == 0.5 and low["pairs"] == 1
    assert [x["strength"] for x in info["config"]["stage1"]["loras"]] == [1.0, 0.5]
    plain = pipeline.generate(with_overrides(cfg, lora="none"), image_file, "a red square moves up",
                              tmp_path / "p.mp4").info
    assert plain["inputs"]["loras"] == [] and not plain["config"]["stage1"]["loras"]
