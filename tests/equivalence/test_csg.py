"""CSG against the end-to-end baseline, on the debug-random Stage II model."""

import pytest
import torch

from swifti2v.config import ScheduleConfig, Stage2Config
from swifti2v.stage2 import add_detail

BLOCKS = 8


def _cfg(**kw):
    base = dict(mode="concat", model="debug-random", schedule=ScheduleConfig(steps=3, shift=3.0))
    return Stage2Config(**{**base, **kw})


@pytest.fixture(scope="module")
def inputs():
    g = torch.Generator().manual_seed(0)
    z_ref = torch.randn(1, 8, BLOCKS, 4, 6, generator=g)
    text = torch.randn(1, 512, 32, generator=g)
    return z_ref, text


@pytest.mark.parametrize("sampler", ["euler", "renoise"])
@pytest.mark.parametrize("mode", ["concat", "refine"])
def test_one_window_equals_no_csg(inputs, stage2_concat, stage2_refine, mode, sampler):
    z_ref, text = inputs
    comps = stage2_concat if mode == "concat" else stage2_refine
    sch = ScheduleConfig(steps=3, shift=3.0, sampler=sampler, start_sigma=1.0 if mode == "concat" else 0.6)
    one = add_detail(comps, z_ref, text, _cfg(mode=mode, schedule=sch, segment_blocks=BLOCKS, neighbor_blocks=0), 5)
    e2e = add_detail(comps, z_ref, text, _cfg(mode=mode, schedule=sch, csg=False), 5)
    assert torch.equal(one, e2e)
    csg = add_detail(comps, z_ref, text, _cfg(mode=mode, schedule=sch), 5)
    assert torch.equal(csg[:, :, 0], z_ref[:, :, 0]), "the anchor is the input image's latent"
    assert (csg - e2e).abs().max() > 1e-4, "the windows really run"


def test_largest_transformer_call_is_bounded_by_the_window(inputs, stage2_concat):
    z_ref, text = inputs
    seen = []
    model = stage2_concat.transformer
    p_t, p_h, p_w = model.config.patch_size
    hook = model.patch_embedding.register_forward_pre_hook(  # every forward path embeds the window first
        lambda mod, args: seen.append(args[0].shape[2] // p_t * (args[0].shape[3] // p_h) * (args[0].shape[4] // p_w))
    )
    try:
        for m, n in [(3, 1), (2, 2), (1, 0)]:
            seen.clear()
            add_detail(stage2_concat, z_ref, text, _cfg(segment_blocks=m, neighbor_blocks=n), 0)
            per_block = (4 // p_h) * (6 // p_w)
            assert max(seen) <= (1 + n + m) * per_block
            assert max(seen) == (1 + n + m) * per_block  # a long clip reaches the bound
        seen.clear()
        add_detail(stage2_concat, z_ref, text, _cfg(csg=False), 0)
        assert max(seen) == BLOCKS * per_block
    finally:
        hook.remove()


def test_csg_is_reproducible(inputs, stage2_concat):
    z_ref, text = inputs
    a = add_detail(stage2_concat, z_ref, text, _cfg(), 3)
    assert torch.equal(a, add_detail(stage2_concat, z_ref, text, _cfg(), 3))
    assert not torch.equal(a, add_detail(stage2_concat, z_ref, text, _cfg(), 4))


def test_streamed_csg_hands_over_the_same_blocks_and_keeps_only_the_window(inputs, stage2_concat):
    """keep_all=False (the pipeline's streaming decode): every segment's blocks equal the whole-clip run's, and
    no more finished blocks are held than the next windows read (anchor + N neighbours)."""
    from swifti2v.plan import stage2_plan
    from swifti2v.sampling.csg import still_needed

    z_ref, text = inputs
    sch = ScheduleConfig(steps=2, shift=3.0, sampler="renoise")
    whole = add_detail(stage2_concat, z_ref, text, _cfg(schedule=sch), 3)
    parts = []
    assert add_detail(stage2_concat, z_ref, text, _cfg(schedule=sch), 3, keep_all=False,
                      on_segment=lambda seg, blocks: parts.append((seg.blocks, blocks))) is None
    assert torch.equal(torch.cat([z_ref[:, :, :1], *[b for _, b in parts]], dim=2), whole)
    plan = stage2_plan(_cfg(), BLOCKS)
    assert [s.blocks for s in plan] == [b for b, _ in parts]
    made = {0}
    for segment, needed in zip(plan, still_needed(plan), strict=True):
        made |= set(segment.blocks)
        assert len(needed & made) <= 1 + _cfg().neighbor_blocks  # what stays held after this segment


def test_a_blocks_noise_does_not_depend_on_the_clip_length():
    from swifti2v.sampling.noise import BlockNoise

    short, long = BlockNoise(0, "stage2", (1, 4, 5, 2, 3)), BlockNoise(0, "stage2", (1, 4, 50, 2, 3))
    assert torch.equal(short.blocks([1, 2, 4]), long.blocks([1, 2, 4]))
    assert not torch.equal(short.blocks([1]), short.blocks([2]))


def test_the_no_anchor_ablation_streams_too(inputs, stage2_concat):
    """Without the anchor and neighbours a window has no clean context at all: streamed or not, the same blocks."""
    z_ref, text = inputs
    cfg = _cfg(anchor=False, neighbor_blocks=0)
    whole = add_detail(stage2_concat, z_ref, text, cfg, 3)
    parts = []
    add_detail(stage2_concat, z_ref, text, cfg, 3, keep_all=False, on_segment=lambda seg, blocks: parts.append(blocks))
    assert torch.equal(torch.cat(parts, dim=2), whole[:, :, 1:])
