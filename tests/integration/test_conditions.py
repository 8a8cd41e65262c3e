"""Stage-transition conditions: shapes, the anchor block, determinism, the kinds relate as documented."""

from __future__ import annotations

import pytest
import torch

from conftest import write_clip
from swifti2v.data.videos import load_clip
from swifti2v.training.conditions import ConditionModels, condition_reference
from swifti2v.training.config import ConditionConfig


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = write_clip(tmp_path_factory.mktemp("c") / "a.mp4", 25, 128, 256, seed=3)
    return load_clip(path, 25, 1, 128, 256)[None]


@pytest.fixture(scope="module")
def models(stage1, stage2_concat):
    return ConditionModels(stage2_concat.vae, stage1)


def _ref(clip, text, models, seed=0, **kw):
    return condition_reference(clip, text, ConditionConfig(**kw), models, torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def emb(text):
    return text.encode("the camera pans left", "cpu")


@pytest.mark.parametrize("kind", ["stage1", "degrade", "downsample"])
def test_shape_anchor_and_determinism(clip, emb, models, kind):
    a = _ref(clip, emb, models, kind=kind)
    assert a.shape == (1, 8, 7, 8, 16)
    # Block 0 is the real first frame at full resolution, encoded alone by the causal VAE.
    assert torch.equal(a[:, :, :1], models.stage2_vae.encode(clip[:, :, :1]))
    assert torch.equal(a, _ref(clip, emb, models, kind=kind))
    if kind != "downsample":
        assert not torch.equal(a, _ref(clip, emb, models, seed=1, kind=kind))


def test_degrade_without_degradation_is_the_clean_downsample(clip, emb, models):
    clean = _ref(clip, emb, models, kind="downsample")
    assert torch.equal(_ref(clip, emb, models, kind="degrade", blur=0.0, noise=0.0, jpeg_quality=100), clean)
    assert not torch.equal(_ref(clip, emb, models, kind="degrade"), clean)
    assert torch.equal(_ref(clip, emb, models, kind="degrade", strength=(0.0, 0.0)), clean)


def test_degrade_strength_range_mixes_mild_and_full_degradation(clip, emb, models):
    clean = _ref(clip, emb, models, kind="downsample")
    full = (_ref(clip, emb, models, kind="degrade") - clean).pow(2).mean()
    mixed = [(_ref(clip, emb, models, seed=s, kind="degrade", strength=(0.0, 1.0)) - clean).pow(2).mean()
             for s in range(6)]
    assert min(mixed) < 0.5 * full  # some clips barely degraded
    assert len({round(float(m), 8) for m in mixed}) == 6  # each clip its own strength


def test_stage1_sigma_range_is_used(clip, emb, models):
    """At sigma 0 Stage I has nothing to re-generate: the condition is the Stage I VAE round trip."""
    zero = _ref(clip, emb, models, kind="stage1", sigma_min=0.0, sigma_max=0.0)
    assert torch.equal(zero, _ref(clip, emb, models, seed=5, kind="stage1", sigma_min=0.0, sigma_max=0.0))
    assert not torch.equal(zero, _ref(clip, emb, models, kind="stage1", sigma_min=0.5, sigma_max=0.5))


def test_stage1_oracle_share_mixes_in_the_clean_downsample(clip, emb, models):
    clean = _ref(clip, emb, models, kind="downsample")
    assert torch.equal(_ref(clip, emb, models, kind="stage1", oracle_share=1.0), clean)
    mixed = [torch.equal(_ref(clip, emb, models, seed=s, kind="stage1", oracle_share=0.5), clean) for s in range(8)]
    assert 0 < sum(mixed) < 8  # per clip, some oracle and some Stage I's own
