"""Training windows are the windows inference runs: same layout, positions, reference and timesteps."""

from __future__ import annotations

import pytest
import torch

from swifti2v.models.adapter import WanVelocity, frame_timesteps, token_timesteps
from swifti2v.sampling import euler_step, plan_segments
from swifti2v.sampling.csg import sample_segment
from swifti2v.training.objective import pick_segment, training_window


def _inference_call(z, z_ref, noise, sigma, segment):
    """What sample_segment hands the model for one step from `sigma`, with `z` as the finished blocks."""
    calls = []

    def model_fn(x, frame_sigmas, window):
        calls.append((x.clone(), frame_sigmas.clone(), window))
        return torch.zeros_like(x)

    sample_segment(model_fn, z, z_ref, noise, torch.tensor([sigma, 0.0]), segment, concat_reference=True,
                   step=euler_step)
    return calls[0]


@pytest.mark.parametrize(("blocks", "m", "n"), [(7, 3, 1), (21, 3, 1), (9, 2, 2), (6, 3, 0), (5, 8, 1)])
def test_every_training_window_equals_the_inference_window(blocks, m, n):
    g = torch.Generator().manual_seed(blocks)
    z, noise = torch.randn(1, 4, blocks, 2, 3, generator=g), torch.randn(1, 4, blocks, 2, 3, generator=g)
    # Inference starts the noisy blocks from z_ref (refine) or noise; with z_ref's noisy blocks set to the
    # ground truth both paths noise the same x0, so whole windows can be compared bit for bit.
    z_ref = z.clone()
    sigma = 0.37
    for segment in plan_segments(blocks, m, n):
        tw = training_window(z, z_ref, segment, torch.tensor([sigma]), noise)
        x, frame_sigmas, window = _inference_call(z, z_ref, noise, sigma, segment)
        assert torch.equal(tw.x, x)
        assert torch.equal(tw.frame_sigmas[0], frame_sigmas)
        assert tw.window.positions == window.positions == segment.positions
        assert torch.equal(tw.window.reference, window.reference)
        assert torch.equal(frame_timesteps(tw.frame_sigmas, 1), frame_timesteps(frame_sigmas, 1))
        assert tw.n_context == 1 + len(segment.neighbors)
        assert torch.allclose(tw.target, noise[:, :, list(segment.blocks)] - z[:, :, list(segment.blocks)])


def test_reference_neighbors_are_the_inference_window_after_a_stage2_that_added_nothing():
    """A swapped sample's window is the one inference builds when the finished blocks are their z_ref blocks
    (a Stage II that added no detail); the anchor stays the truth, the other sample is unchanged."""
    g = torch.Generator().manual_seed(0)
    z, z_ref, noise = (torch.randn(2, 4, 7, 2, 3, generator=g) for _ in range(3))
    segment = plan_segments(7, 3, 1)[1]
    z_ref[:, :, list(segment.blocks)] = z[:, :, list(segment.blocks)]  # as above: the same x0 either way
    tw = training_window(z, z_ref, segment, torch.tensor([0.4, 0.4]), noise, torch.tensor([True, False]))
    finished = z.clone()
    finished[:, :, list(segment.neighbors)] = z_ref[:, :, list(segment.neighbors)]
    for b, done in ((0, finished), (1, z)):
        x, _, window = _inference_call(done[b : b + 1], z_ref[b : b + 1], noise[b : b + 1], 0.4, segment)
        assert torch.equal(tw.x[b : b + 1], x) and torch.equal(tw.window.reference[b : b + 1], window.reference)
    assert torch.equal(tw.x[0, :, 0], z[0, :, 0]), "the anchor is the input image's block either way"
    n0 = plan_segments(7, 3, 0)[1]  # no neighbours: nothing to swap
    assert torch.equal(training_window(z, z_ref, n0, torch.tensor([0.4, 0.4]), noise, torch.tensor([True, True])).x,
                       training_window(z, z_ref, n0, torch.tensor([0.4, 0.4]), noise).x)


def test_segments_drawn_for_training_are_exactly_the_inference_plan():
    g = torch.Generator().manual_seed(0)
    drawn = {pick_segment(21, 3, 1, g) for _ in range(300)}
    assert drawn == set(plan_segments(21, 3, 1))


def test_per_sample_sigmas_become_per_token_timesteps():
    fs = torch.tensor([[0.0, 0.0, 0.5, 0.5], [0.0, 0.0, 0.2, 0.2]])
    t = token_timesteps(frame_timesteps(fs, 2), 3)
    assert t.shape == (2, 12)
    assert torch.equal(t[1], torch.tensor([0.0] * 6 + [200.0] * 6))
    same = frame_timesteps(torch.tensor([[0.5] * 4, [0.2] * 4]), 2)
    assert torch.equal(same, torch.tensor([500.0, 200.0]))


def test_model_sees_the_same_window_through_the_adapter(stage2_concat, text):
    """The velocity the trainer computes for a window equals the one CSG computes for it."""
    dit = stage2_concat.transformer
    emb = text.encode("a prompt", "cpu")
    g = torch.Generator().manual_seed(1)
    z = torch.randn(1, 8, 7, 8, 16, generator=g)
    noise = torch.randn(z.shape, generator=g)
    segment = plan_segments(7, 3, 1)[1]
    tw = training_window(z, z, segment, torch.tensor([0.6]), noise)
    velocity = WanVelocity(dit, emb)
    x, frame_sigmas, window = _inference_call(z, z, noise, 0.6, segment)
    assert torch.equal(velocity(tw.x, tw.frame_sigmas, tw.window), velocity(x, frame_sigmas, window))
