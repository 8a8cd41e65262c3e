import copy

import torch
from diffusers import WanTransformer3DModel

from swifti2v.models.adapter import WanVelocity, widen_patch_embedding
from swifti2v.models.components import load_stage2, save_concat_checkpoint
from swifti2v.models.debug import tiny_stage2_transformer
from swifti2v.sampling import Window


def test_widened_equals_base_at_init_and_round_trips(tmp_path):
    torch.manual_seed(0)
    base = tiny_stage2_transformer()
    wide = widen_patch_embedding(copy.deepcopy(base), 8)
    assert wide.config.in_channels == 16 and wide.config.out_channels == 8
    text = torch.randn(1, 7, 32)
    x, z_ref = torch.randn(1, 8, 3, 8, 8), torch.randn(1, 8, 3, 8, 8)
    s = torch.tensor([0.0, 0.8, 0.8])
    v_base = WanVelocity(base, text)(x, s, Window((0, 1, 2)))
    v_wide = WanVelocity(wide, text)(x, s, Window((0, 1, 2), z_ref))
    assert torch.equal(v_base, v_wide), "new channels are zero: the refiner starts as the base model"

    with torch.no_grad():
        wide.patch_embedding.weight[:, 8:].normal_()  # as if trained
    save_concat_checkpoint(wide, tmp_path / "ckpt", {"preset": "test"})
    assert (tmp_path / "ckpt" / "diffusion_pytorch_model.safetensors").is_file()
    loaded = WanTransformer3DModel.from_pretrained(tmp_path / "ckpt")
    assert loaded.config.in_channels == 16 and loaded.config.out_channels == 8
    for (k, a), (k2, b) in zip(wide.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(a, b), k
    comps = load_stage2("debug-random", str(tmp_path / "ckpt"), True, torch.device("cpu"), torch.float32)
    assert comps.concat and torch.equal(comps.transformer.patch_embedding.weight, wide.patch_embedding.weight)
