import torch
from diffusers import FlowMatchEulerDiscreteScheduler

from swifti2v.sampling import clip_noise, euler_step, flow_sigmas, renoise_step, sample, shift_sigma


def test_lightx2v_schedule_values():
    sigmas = flow_sigmas(4, 5.0)
    expected = shift_sigma(torch.tensor([1.0, 0.75, 0.5, 0.25, 0.0]), 5.0).float()
    torch.testing.assert_close(sigmas, expected)
    torch.testing.assert_close(sigmas[:4], torch.tensor([1.0, 0.9375, 0.8333333, 0.625]))


def test_start_sigma_is_exact_and_descending():
    for shift in (1.0, 3.0, 5.0):
        for start in (0.3, 0.6, 1.0):
            s = flow_sigmas(7, shift, start)
            assert len(s) == 8 and abs(float(s[0]) - start) < 1e-6 and float(s[-1]) == 0.0
            assert bool((s[1:] < s[:-1]).all())


def test_schedule_matches_diffusers_scheduler():
    """Our owned schedule equals FlowMatchEulerDiscreteScheduler(shift=5) given the same unshifted sigmas."""
    sched = FlowMatchEulerDiscreteScheduler(shift=5.0)
    sched.set_timesteps(sigmas=[1.0, 0.75, 0.5, 0.25])
    torch.testing.assert_close(sched.sigmas.float(), flow_sigmas(4, 5.0))


def test_euler_and_renoise_match_diffusers_steps():
    x, v = torch.randn(1, 4, 3, 4, 4), torch.randn(1, 4, 3, 4, 4)
    sigmas = flow_sigmas(4, 5.0)
    sched = FlowMatchEulerDiscreteScheduler(shift=5.0)
    sched.set_timesteps(sigmas=[1.0, 0.75, 0.5, 0.25])
    ours = euler_step(x, v, float(sigmas[0]), float(sigmas[1]))
    theirs = sched.step(v, sched.timesteps[0], x, return_dict=False)[0]
    torch.testing.assert_close(ours, theirs)

    stoch = FlowMatchEulerDiscreteScheduler(shift=5.0, stochastic_sampling=True)
    stoch.set_timesteps(sigmas=[1.0, 0.75, 0.5, 0.25])
    g = torch.Generator().manual_seed(3)
    theirs = stoch.step(v, stoch.timesteps[0], x, generator=g, return_dict=False)[0]
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(renoise_step(x, v, float(sigmas[0]), float(sigmas[1]), noise), theirs)


def test_sampler_recovers_x0_for_exact_velocity():
    x0, eps = torch.randn(2, 3), torch.randn(2, 3)
    out = sample(lambda x, s: eps - x0, eps, flow_sigmas(5, 3.0), euler_step)
    torch.testing.assert_close(out, x0)


def test_clip_noise_is_reproducible_and_stream_separated():
    a = clip_noise(7, "stage2", (1, 2, 3, 4, 5))
    assert torch.equal(a, clip_noise(7, "stage2", (1, 2, 3, 4, 5)))
    assert not torch.equal(a, clip_noise(7, "stage1", (1, 2, 3, 4, 5)))
    assert not torch.equal(a, clip_noise(8, "stage2", (1, 2, 3, 4, 5)))
