"""Both stages against a reference this project did not write.

Stage I against diffusers' own `WanImageToVideoPipeline` (Wan2.1-I2V with a CLIP image encoder, and the Wan2.2 A14B
expert pair with `boundary_ratio` 0.9) on the tiny random folders of conftest.py, with the same initial noise, the
same sigmas (the pipeline's scheduler is handed the project's), the same text embeddings and no CFG. The re-noise
sampler is diffusers' `stochastic_sampling` scheduler fed the project's per-step noise. Final latents must agree to
float32 precision — including schedules where a sigma equals the A14B boundary exactly, where the expert is chosen
by timestep (sigma x 1000 >= 900, ties to the high-noise one).

Stage II's `refine` mode against diffusers' TI2V-5B image-to-video path (`WanImageToVideoPipeline` with
`expand_timesteps`, the first frame's latent clean at timestep 0, no image encoder) where the two compute the same
thing: one window covering the clip (`--no-csg`), started from the same SDEdit latents, on the same sigmas. What
differs by design, and is therefore set equal here: diffusers starts from pure noise at sigma 1 (refine re-noises
z_ref to start_sigma; the test hands diffusers refine's starting latents and schedule), diffusers conditions on the
input image alone (refine's later blocks see z_ref only through that start), and diffusers encodes the first
frame itself (refine's anchor is z_ref's block 0, the same encoder on the same image); CSG's segments (several
windows) have no diffusers counterpart.
"""

from __future__ import annotations

import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler, WanImageToVideoPipeline, WanPipeline
from diffusers.schedulers import scheduling_flow_match_euler_discrete as flow_match

from swifti2v import media
from swifti2v.config import ScheduleConfig, Stage1Config, Stage2Config, VideoConfig
from swifti2v.media import fit, load_image
from swifti2v.models import debug
from swifti2v.models.adapter import high_noise
from swifti2v.models.components import load_stage1, load_stage2
from swifti2v.reference import hybrid_reference
from swifti2v.sampling import clip_noise, flow_sigmas, step_noises
from swifti2v.sampling.noise import BlockNoise, block_step_noises
from swifti2v.stage1 import generate_motion
from swifti2v.stage2 import add_detail

CPU = torch.device("cpu")
SEED = 7




class ProjectSigmas(FlowMatchEulerDiscreteScheduler):
    """diffusers' flow-match scheduler given the project's (already shifted) sigmas; the pipeline asks for
    `num_inference_steps` only."""

    sigmas_to_use: list[float] = []

    def set_timesteps(self, num_inference_steps=None, device=None, **kwargs):
        super().set_timesteps(sigmas=self.sigmas_to_use, device=device)


def diffusers_pipeline(folder, schedule: ScheduleConfig, noises, monkeypatch) -> WanImageToVideoPipeline:
    """The folder's pipeline as diffusers loads it, its scheduler on the project's sigmas, and the re-noise
    sampler's fresh noise taken from `noises` (the project's per-step noise) in order."""
    pipe = WanImageToVideoPipeline.from_pretrained(folder, torch_dtype=torch.float32)
    sigmas = flow_sigmas(schedule.steps, schedule.shift, schedule.start_sigma)
    pipe.scheduler = ProjectSigmas(shift=1.0, stochastic_sampling=schedule.sampler == "renoise")
    pipe.scheduler.sigmas_to_use = sigmas[:-1].tolist()  # it appends the final 0 itself
    noises = iter(noises or [])
    monkeypatch.setattr(flow_match, "randn_tensor", lambda *a, **k: next(noises))
    return pipe


def diffusers_text(folder) -> torch.Tensor:
    """diffusers' own prompt embeddings (no CFG), handed to both sides."""
    loaded = WanImageToVideoPipeline.from_pretrained(folder, torch_dtype=torch.float32)
    helper = WanPipeline(tokenizer=loaded.tokenizer, text_encoder=loaded.text_encoder, vae=None, scheduler=None)
    text, _ = helper.encode_prompt("the camera pans left", do_classifier_free_guidance=False,
                                   max_sequence_length=512, device=CPU)
    return text


def reference_latents(folder, image, text, schedule: ScheduleConfig, video: VideoConfig, monkeypatch):
    """diffusers' pipeline, output_type="latent", on the project's noise, sigmas and (re-noise) step noise."""
    shape = (1, debug.STAGE1_Z, video.num_blocks, image.height // 8, image.width // 8)
    pipe = diffusers_pipeline(folder, schedule, step_noises(SEED, "stage1", shape, schedule.steps, schedule.sampler),
                              monkeypatch)
    experts = []
    for name, model in (("high", pipe.transformer), ("low", pipe.transformer_2)):
        if model is not None:
            model.register_forward_pre_hook(lambda *a, name=name: experts.append(name))
    out = pipe(image=image, prompt_embeds=text, height=image.height, width=image.width, num_frames=video.frames,
               num_inference_steps=schedule.steps, guidance_scale=1.0, latents=clip_noise(SEED, "stage1", shape),
               output_type="latent").frames
    return out, experts


def project_latents(folder, image, text, schedule: ScheduleConfig, video: VideoConfig):
    stage1 = load_stage1(str(folder), CPU, torch.float32)
    experts = []
    for name, model in (("high", stage1.transformer), ("low", stage1.transformer_2)):
        if model is not None:
            model.register_forward_pre_hook(lambda *a, name=name: experts.append(name))
    z = generate_motion(stage1, image, text, Stage1Config(model=str(folder), schedule=schedule), video, SEED, CPU)
    return z, experts


CASES = {  # name: (folder, sampler, steps, shift, height, width, frames)
    "i2v euler shift 3": ("i2v", "euler", 4, 3.0, 64, 64, 17),
    "i2v renoise shift 5": ("i2v", "renoise", 4, 5.0, 32, 64, 9),
    "a14b euler shift 5": ("a14b", "euler", 4, 5.0, 64, 64, 17),
    "a14b renoise shift 5": ("a14b", "renoise", 4, 5.0, 32, 64, 9),
    "a14b euler shift 3, a sigma on the boundary": ("a14b", "euler", 4, 3.0, 64, 64, 17),
    "a14b renoise shift 3 x 8 steps, on the boundary": ("a14b", "renoise", 8, 3.0, 32, 64, 9),
    "a14b euler shift 5 x 14 steps, on the boundary": ("a14b", "euler", 14, 5.0, 32, 64, 9),
}


@pytest.mark.parametrize("case", list(CASES))
def test_stage1_equals_diffusers_wan_i2v_pipeline(wan_folders, image_file, case, monkeypatch):
    folder, sampler, steps, shift, height, width, frames = CASES[case]
    schedule = ScheduleConfig(steps=steps, shift=shift, sampler=sampler)
    video = VideoConfig(height=height * 4, width=width * 4, frames=frames)
    image = fit(load_image(image_file), height, width)
    text = diffusers_text(wan_folders / folder)
    ours, our_experts = project_latents(wan_folders / folder, image, text, schedule, video)
    theirs, their_experts = reference_latents(wan_folders / folder, image, text, schedule, video, monkeypatch)
    assert our_experts == their_experts
    assert ours.shape == theirs.shape
    torch.testing.assert_close(ours, theirs.float(), atol=1e-5, rtol=0)


def test_the_boundary_ties_go_to_the_high_noise_expert():
    tie = float(flow_sigmas(4, 3.0)[1])  # 3 x 0.75 / 2.5 in float32: 0.89999998, timestep 900.0
    assert tie < 0.9 and high_noise(tie, 0.9)
    assert high_noise(0.9375, 0.9) and not high_noise(0.8333, 0.9)
    assert [high_noise(float(s), 0.9) for s in flow_sigmas(14, 5.0)[:-1]].count(True) == 6  # 1 ... 0.9 (5/14)


def a_z_ref(stage2, image, frames: int) -> torch.Tensor:
    """refine's z_ref for `image` and a small pan made from it: low-res windows upsampled, frame 0 := the image."""
    full = media.to_tensor(image)  # (1, 3, H, W)
    clip = torch.stack([torch.roll(full, shifts=2 * t, dims=-1)[0] for t in range(frames)], dim=1)[None]
    low = media.downsample(clip, 4)
    windows = [low[:, :, :1], *[low[:, :, s:s + 4] for s in range(1, frames, 4)]]
    return hybrid_reference(windows, full, stage2.vae)


REFINE_CASES = {  # name: (sampler, steps, shift, start_sigma, height, width, frames)
    "euler, 3 steps from 0.6": ("euler", 3, 3.0, 0.6, 64, 64, 9),
    "renoise, 4 steps from 0.8": ("renoise", 4, 5.0, 0.8, 64, 128, 17),
}


@pytest.mark.parametrize("case", list(REFINE_CASES))
def test_refine_in_one_window_equals_diffusers_ti2v(wan_folders, image_file, case, monkeypatch):
    sampler, steps, shift, start, height, width, frames = REFINE_CASES[case]
    schedule = ScheduleConfig(steps=steps, shift=shift, sampler=sampler, start_sigma=start)
    image = fit(load_image(image_file), height, width)
    text = diffusers_text(wan_folders / "ti2v")
    stage2 = load_stage2(str(wan_folders / "ti2v"), None, False, CPU, torch.float32)
    z_ref = a_z_ref(stage2, image, frames)
    cfg = Stage2Config(mode="refine", model=str(wan_folders / "ti2v"), schedule=schedule, csg=False)
    ours = add_detail(stage2, z_ref, text, cfg, SEED)

    shape, every = tuple(z_ref.shape), range(z_ref.shape[2])  # Stage II draws its noise block by block
    start_latents = (1 - start) * z_ref + start * BlockNoise(SEED, "stage2", shape).blocks(every)  # SDEdit start
    fresh = [n.blocks(every) for n in block_step_noises(SEED, "stage2", shape, steps, sampler) or []]
    pipe = diffusers_pipeline(wan_folders / "ti2v", schedule, fresh, monkeypatch)
    theirs = pipe(image=image, prompt_embeds=text, height=height, width=width, num_frames=frames,
                  num_inference_steps=steps, guidance_scale=1.0, latents=start_latents, output_type="latent").frames
    assert ours.shape == theirs.shape
    torch.testing.assert_close(ours[:, :, :1], theirs[:, :, :1].float(), atol=1e-5, rtol=0)  # the anchor
    torch.testing.assert_close(ours, theirs.float(), atol=1e-5, rtol=0)
