"""The RoPE-position and per-token-timestep seams against stock diffusers."""

import copy

import torch
from diffusers.models.transformers.transformer_wan import WanRotaryPosEmbed

from swifti2v.models.adapter import WanVelocity, frame_timesteps, token_timesteps
from swifti2v.models.debug import tiny_stage2_transformer
from swifti2v.models.rope import PositionalRotaryPosEmbed, install_positional_rope, rope_positions
from swifti2v.sampling import Window


def _model_and_stock():
    torch.manual_seed(0)
    model = tiny_stage2_transformer()
    return model, copy.deepcopy(model)


def _forward(model, x, t, text):
    with torch.no_grad():
        return model(hidden_states=x, timestep=t, encoder_hidden_states=text, return_dict=False)[0]


def test_rope_without_positions_is_bit_identical_to_stock():
    model, stock = _model_and_stock()
    install_positional_rope(model)
    assert isinstance(model.rope, PositionalRotaryPosEmbed) and type(stock.rope) is WanRotaryPosEmbed
    assert model.state_dict().keys() == stock.state_dict().keys()
    x, text, t = torch.randn(1, 8, 5, 8, 8), torch.randn(1, 7, 32), torch.tensor([500.0])
    for a, b in zip(model.rope(x), stock.rope(x), strict=True):
        assert torch.equal(a, b)
    assert torch.equal(_forward(model, x, t, text), _forward(stock, x, t, text))
    with rope_positions(model, range(5)):  # explicit 0..F-1 is the stock table too
        for a, b in zip(model.rope(x), stock.rope(x), strict=True):
            assert torch.equal(a, b)
        assert torch.equal(_forward(model, x, t, text), _forward(stock, x, t, text))


def test_rope_positions_gather_global_indices():
    model, _ = _model_and_stock()
    install_positional_rope(model)
    x = torch.randn(1, 8, 4, 8, 8)
    long = torch.randn(1, 8, 10, 8, 8)
    full_cos, full_sin = model.rope(long)
    hw = 4 * 4
    positions = [0, 6, 7, 8]
    with rope_positions(model, positions):
        cos, sin = model.rope(x)
    for i, p in enumerate(positions):
        torch.testing.assert_close(cos[:, i * hw : (i + 1) * hw], full_cos[:, p * hw : (p + 1) * hw], rtol=0, atol=0)
        torch.testing.assert_close(sin[:, i * hw : (i + 1) * hw], full_sin[:, p * hw : (p + 1) * hw], rtol=0, atol=0)
    assert model.rope.positions is None, "the context manager restores the default"


def test_rope_positions_change_the_output_but_only_relatively():
    model, _ = _model_and_stock()
    v = WanVelocity(model, torch.randn(1, 7, 32))
    x, s = torch.randn(1, 8, 3, 8, 8), torch.tensor([0.0, 0.7, 0.7])
    base = v(x, s, Window((0, 1, 2)))
    assert not torch.allclose(base, v(x, s, Window((0, 5, 6))), atol=1e-5), "a gap in positions matters"
    torch.testing.assert_close(base, v(x, s, Window((3, 4, 5))), atol=1e-5, rtol=1e-4)  # RoPE is relative


def test_uniform_per_token_timesteps_equal_scalar_timestep():
    model, _ = _model_and_stock()
    x, text = torch.randn(1, 8, 3, 8, 8), torch.randn(1, 7, 32)
    scalar = _forward(model, x, torch.tensor([700.0]), text)
    per_token = _forward(model, x, torch.full((1, 3 * 16), 700.0), text)
    torch.testing.assert_close(scalar, per_token, atol=1e-5, rtol=1e-5)


def test_frame_timesteps_layout():
    t = frame_timesteps(torch.tensor([0.0, 0.5, 0.5]), batch=2)
    assert torch.equal(t, torch.tensor([[0.0, 500.0, 500.0]] * 2))
    tokens = token_timesteps(t, tokens_per_frame=4)
    assert tokens.shape == (2, 12)
    assert tokens[0, :4].eq(0).all() and tokens[0, 4:].eq(500).all()
    assert frame_timesteps(torch.tensor([0.25, 0.25]), 1).shape == (1,)


def test_clean_context_tokens_get_timestep_zero():
    """A context frame at t=0 sees the same modulation as a whole clean clip at t=0."""
    model, _ = _model_and_stock()
    v = WanVelocity(model, torch.randn(1, 7, 32))
    x = torch.randn(1, 8, 3, 8, 8)
    mixed = v(x, torch.tensor([0.0, 0.9, 0.9]))
    noisier = v(x, torch.tensor([0.9, 0.9, 0.9]))
    assert not torch.allclose(mixed, noisier, atol=1e-5)
