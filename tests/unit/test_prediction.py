"""x0-predicting DiTs (the tiny models): the adapter turns their output into the samplers' velocity."""

import json

import pytest
import torch

from swifti2v.errors import UserError
from swifti2v.models.adapter import WanVelocity
from swifti2v.models.components import read_prediction
from swifti2v.sampling import Window, euler_step
from swifti2v.sampling.csg import plan_segments
from swifti2v.training.objective import training_window, window_loss


def _window(stage2_concat, seed=0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(2, 8, 8, 4, 4, generator=g)
    z_ref = z + 0.3 * torch.randn(z.shape, generator=g)
    noise = torch.randn(z.shape, generator=g)
    segment = plan_segments(8, 3, 1)[1]  # context (0, 3), blocks (4, 5, 6)
    return z, z_ref, noise, segment


def test_x0_model_velocity_and_one_euler_step(stage2_concat):
    z, z_ref, noise, segment = _window(stage2_concat)
    text = torch.zeros(2, 512, 32)
    v_model = WanVelocity(stage2_concat.transformer, text)
    x0_model = WanVelocity(stage2_concat.transformer, text, prediction="x0")
    sigma = torch.tensor([0.0, 0.0, 1.0, 1.0, 1.0])
    window = Window(segment.positions, z_ref[:, :, list(segment.positions)])
    x = torch.cat([z[:, :, list(segment.context)], noise[:, :, list(segment.blocks)]], dim=2)
    raw = v_model(x, sigma, window)  # the DiT's own output
    v = x0_model(x, sigma, window)
    x0 = euler_step(x, v, 1.0, 0.0)[:, :, 2:]  # one step from sigma 1 lands on the prediction
    assert torch.allclose(x0, (window.reference + raw)[:, :, 2:], atol=1e-5)


def test_x0_skip_reads_the_noisy_input_at_low_noise_and_the_guess_at_pure_noise(stage2_concat):
    """"x0-skip": x0 = DiT output + g + k (x - (1 - s) g), k = (1 - s) / ((1 - s)^2 + s^2): the guess g at s = 1,
    the input itself at s = 0, the least-squares blend for a unit-variance departure from g between."""
    z, z_ref, noise, segment = _window(stage2_concat, 2)
    text = torch.zeros(2, 512, 32)
    raw_model = WanVelocity(stage2_concat.transformer, text)
    skip_model = WanVelocity(stage2_concat.transformer, text, prediction="x0-skip")
    window = Window(segment.positions, z_ref[:, :, list(segment.positions)])
    g = window.reference
    for s in (1.0, 0.5, 0.1):
        sigma = torch.tensor([0.0, 0.0, s, s, s])
        x = torch.cat([z[:, :, list(segment.context)], ((1 - s) * z + s * noise)[:, :, list(segment.blocks)]], dim=2)
        x0 = x - sigma.view(1, 1, -1, 1, 1) * skip_model(x, sigma, window)
        k = (1 - s) / ((1 - s) ** 2 + s**2)
        expected = raw_model(x, sigma, window) + g + k * (x - (1 - s) * g)
        assert torch.allclose(x0[:, :, 2:], expected[:, :, 2:], atol=1e-4), s


def test_x0_loss_is_the_x0_mse(stage2_concat):
    z, z_ref, noise, segment = _window(stage2_concat, 1)
    text = torch.zeros(2, 512, 32)
    model = WanVelocity(stage2_concat.transformer, text, prediction="x0")
    sigma = torch.tensor([0.3, 0.8])
    tw = training_window(z, z_ref, segment, sigma, noise)
    v = model(tw.x, tw.frame_sigmas, tw.window)[:, :, tw.n_context :]
    s = sigma.view(-1, 1, 1, 1, 1)
    x0_hat = tw.x[:, :, tw.n_context :] - s * v
    expected = (x0_hat - z[:, :, list(segment.blocks)]).pow(2).mean()
    assert torch.allclose(window_loss(model, tw), expected, rtol=1e-4)


def test_prediction_file(tmp_path):
    assert read_prediction(tmp_path) == "velocity"
    (tmp_path / "swifti2v.json").write_text(json.dumps({"prediction": "x0", "training": {}}))
    assert read_prediction(tmp_path) == "x0"
    (tmp_path / "swifti2v.json").write_text(json.dumps({"prediction": "x0-skip"}))
    assert read_prediction(tmp_path) == "x0-skip"
    (tmp_path / "swifti2v.json").write_text(json.dumps({"prediction": "eps"}))
    with pytest.raises(UserError, match="eps"):
        read_prediction(tmp_path)
