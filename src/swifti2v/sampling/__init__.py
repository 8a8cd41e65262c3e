"""Pure-torch sampling: schedules, solver steps, the CSG planner and loop. No diffusers import here."""

from swifti2v.sampling.csg import Segment, Window, csg_sample, plan_segments, whole_clip_plan
from swifti2v.sampling.noise import clip_noise, step_noises
from swifti2v.sampling.schedules import flow_sigmas, shift_sigma
from swifti2v.sampling.steps import STEPS, euler_step, renoise_step, sample

__all__ = [
    "STEPS",
    "Segment",
    "Window",
    "clip_noise",
    "csg_sample",
    "euler_step",
    "flow_sigmas",
    "plan_segments",
    "renoise_step",
    "sample",
    "shift_sigma",
    "step_noises",
    "whole_clip_plan",
]
