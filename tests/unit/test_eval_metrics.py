"""`swifti2v eval`'s metrics on synthetic clips with known answers."""

import math

import pytest
import torch

from swifti2v.data.bank import heldout_photo_clip
from swifti2v.data.synthetic import heldout_clip
from swifti2v.eval import metrics as m
from swifti2v.media import upsample

pytest.importorskip("cv2")


@pytest.fixture(scope="module")
def photo():
    """A held-out camera clip over a photograph, 144x256x17, and its 1/4-size low-res clip."""
    return heldout_photo_clip(0, 144, 256, 17)


def _pan(shift: tuple[int, int], frames: int = 9) -> torch.Tensor:
    """A still texture whose content moves by `shift` (dx, dy) pixels per frame (periodic borders)."""
    still = heldout_photo_clip(1, 144, 256, 5).frames[:, 0]
    return torch.stack([torch.roll(still, (shift[1] * t, shift[0] * t), dims=(1, 2)) for t in range(frames)], dim=1)


def test_a_static_clip_has_no_flicker_and_no_motion(photo):
    still = photo.frames[:, :1].expand(-1, 9, -1, -1).contiguous()
    assert m.flicker(still).abs().max() == 0
    flows, scale = m.optical_flow(still)
    assert flows.abs().max() < 1e-3 and m.motion_magnitude(flows, scale, 144).max() < 1e-2
    assert m.warp_errors(still, flows).max() < 1e-3
    assert m.camera_motion(flows, scale, (144, 256))["word"] == "static"


@pytest.mark.parametrize(("shift", "word"), [((3, 0), "pan left"), ((-2, 0), "pan right"), ((0, 3), "pan up"),
                                             ((0, -2), "pan down"), ((2, 2), "pan up and to the left")])
def test_a_known_pan_gives_its_flow_and_direction_word(shift, word):
    clip = _pan(shift)
    flows, scale = m.optical_flow(clip)
    mean = flows.mean(dim=(0, 1, 2)) / scale
    assert abs(float(mean[0]) - shift[0]) < 0.15 and abs(float(mean[1]) - shift[1]) < 0.15
    cam = m.camera_motion(flows, scale, clip.shape[-2:])
    assert cam["word"] == word
    assert abs(cam["camera_shift_x"] - 8 * shift[0]) < 1 and abs(cam["camera_shift_y"] - 8 * shift[1]) < 1
    assert m.phase_correlation(clip[:, 0], clip[:, 1]) == pytest.approx(shift, abs=0.1)
    assert m.motion_matches(cam["word"], m.prompt_motion(f"the camera {word.replace('pan', 'pans')} slowly"))


def test_zoom_and_rotation_words_follow_the_training_captions():
    """The synthetic clips' captions define what zoom and rotation words mean; the measurement agrees."""
    seen = set()
    for i in range(12):
        clip = heldout_clip(10_000 + i, "camera", 144, 256, 17)
        named = m.prompt_motion(clip.caption)
        if clip.motion == "pan":
            continue
        flows, scale = m.optical_flow(clip.frames)
        assert m.motion_matches(m.camera_motion(flows, scale, (144, 256))["word"], named), clip.caption
        seen.add(named)
    assert len(seen) >= 3, seen


def test_prompt_motion_words():
    assert m.prompt_motion("The camera pans left over the hills") == "pan left"
    assert m.prompt_motion("panning up and to the right") == "pan up and to the right"
    assert m.prompt_motion("slow zoom: the camera zooms out") == "zoom out"
    assert m.prompt_motion("it rotates anti-clockwise") == "rotate counterclockwise"
    assert m.prompt_motion("a rotating turntable") == "rotate"
    assert m.prompt_motion("a cat sleeps") is None
    assert m.motion_matches("rotate clockwise", "rotate") and not m.motion_matches("pan left", "pan right")


def test_a_luma_pulse_every_4_frames_is_found_at_period_4_only(photo):
    clean = m.luma(photo.frames).mean(dim=(1, 2))
    pulsed = photo.frames.clone()
    pulsed[:, 1::4] = (pulsed[:, 1::4] + 1) * 1.05 - 1  # +5% brightness on the first frame of every block
    series = m.luma(pulsed).mean(dim=(1, 2))
    strength, repeat = m.pulse(series, 4)
    assert 0.04 < strength < 0.06 and repeat > 0.8
    clean_strength, clean_repeat = m.pulse(clean, 4)
    assert clean_strength < 0.005
    assert m.pulse(series, 8, inner=4)[0] < 0.005  # the block pulse does not count again at a longer period
    seg = clean.clone()
    seg[1::8] *= 1.05  # a pulse at an 8-frame segment period
    assert m.pulse(seg, 8, inner=4)[0] > 0.04
    assert all(math.isnan(x) for x in m.pulse(series[:6], 4))  # too short to tell


def test_detail_retention_tells_upsampling_from_real_detail(photo):
    bicubic = upsample(photo.low[None], 144, 256)[0]
    bicubic[:, 0] = photo.frames[:, 0]  # the hybrid reference: frame 0 is the sharp input
    kept, upsampled = m.detail_retention(photo.frames, 4), m.detail_retention(bicubic, 4)
    assert kept[0] == upsampled[0] == 1
    assert kept[1:].min() > 0.8 and upsampled[1:].max() < 0.2
    aligned_kept, psnr_kept = m.aligned_to_first(photo.frames, 4)
    aligned_up, psnr_up = m.aligned_to_first(bicubic, 4)
    assert aligned_kept[1:].nanmean() > 0.8 and aligned_up[1:].nanmean() < 0.2
    assert psnr_kept[1:].nanmean() > psnr_up[1:].nanmean()


def test_a_pan_into_flat_content_does_not_fake_a_detail_loss():
    """Half texture, half flat: panning toward the flat half lowers whole-frame detail, not the aligned one."""
    tex = heldout_photo_clip(2, 144, 512, 5).frames[:, 0]
    tex = tex * torch.linspace(6, -6, 512).sigmoid()  # the texture fades to flat grey (no edge) past the middle
    clip = torch.stack([tex[:, :, 4 * t:4 * t + 256] for t in range(33)], dim=1)  # content moves left 4 px/frame
    whole, (aligned, _) = m.detail_retention(clip, 4), m.aligned_to_first(clip, 4)
    assert whole[-1] < 0.75 and abs(float(aligned[-1]) - 1) < 0.1


def test_warp_error_sees_broken_motion():
    clip = _pan((2, 0))
    broken = clip.clone()
    broken[:, 4] = torch.roll(broken[:, 4], 9, dims=2)  # one frame jumps
    flows, _ = m.optical_flow(clip)
    bflows, _ = m.optical_flow(broken)
    assert m.warp_errors(clip, flows).mean() < 3
    assert m.flicker(broken)[3] > 2 * m.flicker(clip)[3]


def test_join_scores_see_a_brightness_jump_and_a_stopped_pan_at_a_join():
    """A steady 1-px pan: every join measure near 1 and no drift; a +20-level step at frame 5: the join score and
    its brightness step go up and the drift is the step; the pan stopping at frame 5: the motion measure."""
    pan = _pan((1, 0), frames=11)
    flows, scale = m.optical_flow(pan)
    steady = m.join_scores(pan, [5], flows, scale)
    assert steady["join_score"] == pytest.approx(1.0, abs=0.15) and steady["join_motion"] < 1.2
    assert steady["colour_drift"] < 1.0 and steady["join_luma_step"] < 1.5
    jumped = pan.clone()
    jumped[:, 5:] += 20 / 127.5
    flows, scale = m.optical_flow(jumped)
    jump = m.join_scores(jumped, [5], flows, scale)
    assert jump["join_score"] > 1.5 and jump["join_luma_step"] > 5
    assert jump["luma_drift"] == pytest.approx(20, abs=2.0)
    stopped = torch.cat([pan[:, :5], pan[:, 4:5].expand(-1, 6, -1, -1)], dim=1)
    flows, scale = m.optical_flow(stopped)
    assert m.join_scores(stopped, [6], flows, scale)["join_motion"] > 5
    assert m.join_scores(pan, [], flows, scale) == {}
