"""Per-frame timestep modulation equals diffusers' per-token path, and saves its memory."""

import copy

import pytest
import torch
from diffusers.models.transformers.transformer_wan import WanTransformerBlock

from swifti2v.models.adapter import WanVelocity, frame_timesteps, token_timesteps
from swifti2v.models.debug import tiny_stage1_transformer, tiny_stage2_transformer
from swifti2v.models.modulation import FrameModulatedBlock, frame_modulated_forward, install_frame_modulation
from swifti2v.sampling import Window


def _stock(model, x, t, text, image=None):
    return model(hidden_states=x, timestep=t, encoder_hidden_states=text, encoder_hidden_states_image=image,
                 return_dict=False)[0]


@pytest.mark.parametrize("stage", ["stage1", "stage2"])
def test_per_frame_forward_equals_stock_per_token(stage):
    torch.manual_seed(0)
    model = tiny_stage1_transformer() if stage == "stage1" else tiny_stage2_transformer()
    stock = copy.deepcopy(model)
    c = model.config.in_channels
    x, text = torch.randn(2, c, 5, 8, 12), torch.randn(2, 7, 32)
    image = torch.randn(2, 4, 16) if stage == "stage1" else None
    t = frame_timesteps(torch.tensor([[0.0, 0.0, 0.7, 0.7, 0.7], [0.0, 0.3, 0.3, 0.3, 0.3]]), 2)
    with torch.no_grad():
        ours = frame_modulated_forward(model, x, t, text, image)
        ref = _stock(stock, x, token_timesteps(t, 4 * 6), text, image)
        uniform = frame_modulated_forward(model, x, torch.full((2, 5), 300.0), text, image)
        uniform_ref = _stock(stock, x, torch.tensor([300.0, 300.0]), text, image)
    torch.testing.assert_close(ours, ref, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(uniform, uniform_ref, atol=1e-6, rtol=1e-6)
    assert all(type(b) is FrameModulatedBlock for b in model.blocks)
    assert model.state_dict().keys() == stock.state_dict().keys()


def test_swapped_blocks_run_the_stock_paths_unchanged():
    torch.manual_seed(1)
    model = tiny_stage2_transformer()
    stock = copy.deepcopy(model)
    install_frame_modulation(model)
    install_frame_modulation(model)  # idempotent
    x, text = torch.randn(1, 8, 3, 8, 8), torch.randn(1, 7, 32)
    per_token = token_timesteps(torch.tensor([[0.0, 500.0, 500.0]]), 16)
    with torch.no_grad():
        for t in (torch.tensor([500.0]), per_token):
            assert torch.equal(_stock(model, x, t, text), _stock(stock, x, t, text))
    assert type(stock.blocks[0]) is WanTransformerBlock


def test_adapter_uses_per_frame_modulation_for_mixed_windows():
    """CSG windows (clean context + noisy blocks) go through the per-frame path, same velocity."""
    torch.manual_seed(2)
    model = tiny_stage2_transformer()
    stock = copy.deepcopy(model)
    text, x = torch.randn(1, 7, 32), torch.randn(1, 8, 4, 8, 8)
    sigmas, window = torch.tensor([0.0, 0.0, 0.8, 0.8]), Window((0, 3, 4, 5))
    calls = []
    hook = model.condition_embedder.register_forward_hook(lambda m, a, kw: calls.append(a[0].shape))
    with torch.no_grad():
        ours = WanVelocity(model, text)(x, sigmas, window)
        ref = WanVelocity(stock, text, runner=stock)(x, sigmas, window)  # a runner keeps the stock path
    hook.remove()
    torch.testing.assert_close(ours, ref, atol=1e-6, rtol=1e-6)
    assert calls == [torch.Size([4])], "timesteps embedded once per frame, not per token"
