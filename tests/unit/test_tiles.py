"""Spatial tiles of a Stage II window: the cover, the blend weights, and that a tiled call agrees with a whole one."""

from __future__ import annotations

import pytest
import torch

from swifti2v.errors import UserError
from swifti2v.presets import get_preset, with_overrides
from swifti2v.sampling.csg import Window
from swifti2v.sampling.tiles import spans, tiled, weights


@pytest.mark.parametrize(("length", "tile", "overlap", "align"), [(36, 32, 8, 1), (64, 32, 8, 1), (160, 64, 16, 2),
                                                                  (88, 64, 16, 2), (45, 20, 5, 1)])
def test_spans_cover_the_length_in_equal_aligned_overlapping_tiles(length, tile, overlap, align):
    cuts = spans(length, tile, overlap, align)
    assert cuts[0][0] == 0 and cuts[-1][1] == length
    assert len({b - a for a, b in cuts}) == 1 and cuts[0][1] - cuts[0][0] <= tile
    assert all(a % align == 0 and b % align == 0 for a, b in cuts)
    neighbours = zip(cuts, cuts[1:], strict=False)
    assert all(b0 - a1 >= overlap - align for (_, b0), (a1, _) in neighbours)  # they overlap


def test_a_tile_as_large_as_the_frame_is_one_span():
    assert spans(36, 36, 9) == spans(36, 0, 0) == [(0, 36)]


def test_blend_weights_sum_to_one_and_ramp_across_overlaps():
    cuts = spans(64, 32, 8)
    total = torch.zeros(64)
    for (a, b), w in zip(cuts, weights(64, cuts), strict=True):
        total[a:b] += w
        assert (w > 0).all()
    torch.testing.assert_close(total, torch.ones(64))
    first = weights(64, cuts)[0]
    assert first[0] == 1 and first[-1] < first[-2] < 1  # falls across its overlap with the next tile


def test_a_tiled_call_of_a_local_model_equals_the_whole_window():
    """A model whose output at a pixel depends on that pixel alone gives the same velocity in tiles."""
    def local(x, sigma, window):
        return 2 * x + window.reference * sigma.view(1, 1, -1, 1, 1)

    x, ref, sigma = torch.randn(1, 4, 3, 36, 64), torch.randn(1, 4, 3, 36, 64), torch.tensor([0.0, 0.5, 1.0])
    window = Window((0, 1, 2), ref)
    torch.testing.assert_close(tiled(local, (22, 26), (6, 6))(x, sigma, window), local(x, sigma, window))


def test_tiles_see_crops_of_the_reference_and_the_whole_frame_runs_once():
    seen = []

    def record(x, sigma, window):
        seen.append((tuple(x.shape[-2:]), tuple(window.reference.shape[-2:])))
        return x

    x = torch.zeros(1, 2, 1, 36, 64)
    tiled(record, (22, 36), (8, 8))(x, torch.zeros(1), Window((0,), x))
    assert len(seen) == 4 and all(a == b for a, b in seen)
    seen.clear()
    tiled(record, (36, 64), (9, 16))(x, torch.zeros(1), Window((0,), x))
    assert seen == [((36, 64), (36, 64))]


def test_a_tile_smaller_than_four_patches_is_refused():
    from swifti2v.config import validate

    with pytest.raises(UserError, match="--stage2-tile 16"):
        validate(with_overrides(get_preset("tiny"), stage2_tile=16))
    with pytest.raises(UserError, match="--parallel"):
        validate(with_overrides(get_preset("tiny"), stage2_tile=256, parallel="ulysses"))


def test_the_plan_counts_tiles_and_the_largest_dit_call():
    from swifti2v.config import validate
    from swifti2v.plan import describe_plan

    whole = describe_plan(validate(with_overrides(get_preset("tiny"), stage2_tile=0)))
    tiles = describe_plan(validate(with_overrides(get_preset("tiny"), stage2_tile=256)))
    assert whole["stage2_tiles"] == 1 and whole["largest_call_tokens"] == whole["largest_window_tokens"] == 11520
    assert tiles["stage2_tiles"] == 6 and tiles["largest_call_tokens"] == 5 * 22 * 27  # 2 rows x 3 columns
