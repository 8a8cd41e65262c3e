"""Training config: defaults, file + flags + --set precedence, clear errors."""

from __future__ import annotations

import json

import pytest
import torch

from swifti2v.errors import UserError
from swifti2v.training.config import TrainConfig, load_train_config
from swifti2v.training.objective import sample_train_sigmas


def test_file_then_flags_then_set(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('max_steps = 7\n[data]\nfolder = "a"\nframes = 9\n[optim]\nlr = 2e-4\n')
    cfg = load_train_config(f, ["optim.lr=1e-3", "lora.targets=[\"to_q\"]", "condition.kind=degrade"],
                            {"data.folder": "b", "max_steps": None})
    assert (cfg.data.folder, cfg.data.frames, cfg.max_steps) == ("b", 9, 7)
    assert cfg.optim.lr == 1e-3 and cfg.lora.targets == ("to_q",) and cfg.condition.kind == "degrade"
    assert cfg.data.height == TrainConfig().data.height


def test_json_config_round_trip(tmp_path):
    cfg = load_train_config(None, [], {"data.folder": "x"})
    f = tmp_path / "c.json"
    f.write_text(json.dumps(cfg.to_dict()))
    assert load_train_config(f) == cfg


@pytest.mark.parametrize(("override", "match"), [
    ("optim.lrr=1", "unknown config key optim.lrr"),
    ("condition.kind=magic", "condition.kind='magic' is not one of"),
    ("data.frames=24", "data.frames 24 is not 4k\\+1"),
    ("data.height=100", "data.height 100 must be a positive multiple of 32"),
    ("max_steps=0", "max_steps 0 must be at least 1"),
    ("max_steps=ten", "max_steps='ten' must be int"),
    ("condition.sigma_min=0.9", "sigma range"),
    ("condition.strength=[1,0]", "condition.strength"),
    ('data.motions=["pan","dolly"]', "data.motions \\['pan', 'dolly'\\] must list distinct motions"),
    ("data.motions=[]", "data.motions"),
    ("reference_neighbors=1.5", "reference_neighbors 1.5 must be in \\[0, 1\\]"),
    ("optim.decay_steps=-5", "optim.decay_steps -5 must be >= 0"),
    ("oops", "not KEY=VALUE"),
])
def test_bad_values_name_the_key(override, match):
    with pytest.raises(UserError, match=match):
        load_train_config(None, [override], {"data.folder": "x"})


def test_needs_data_and_lora_rank_for_stage1():
    with pytest.raises(UserError, match="no training data"):
        load_train_config(None, [])
    with pytest.raises(UserError, match="lora.rank"):
        load_train_config(None, [], {"data.folder": "x", "task": "stage1-lora"})


@pytest.mark.parametrize("kind", ["logit_normal", "shifted_uniform"])
def test_training_sigmas_in_range_and_shift_raises_them(kind):
    g = torch.Generator().manual_seed(0)
    s = sample_train_sigmas(4000, kind, g)
    s3 = sample_train_sigmas(4000, kind, torch.Generator().manual_seed(0), shift=3.0)
    assert float(s.min()) > 0 and float(s.max()) < 1
    assert float(s3.mean()) > float(s.mean()) + 0.1
    assert abs(float(s.mean()) - 0.5) < 0.03


def test_shipped_configs_parse():
    from pathlib import Path

    configs = sorted(Path(__file__).parents[2].joinpath("configs", "train").glob("*.toml"))
    assert len(configs) >= 3
    for f in configs:
        load_train_config(f, [], {"data.folder": "x"})


@pytest.mark.parametrize("decay", [0, 100])
def test_the_learning_rate_warms_up_then_holds_or_anneals_to_zero(decay):
    from swifti2v.training.config import OptimConfig
    from swifti2v.training.engine import _lr_schedule

    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=2e-4)
    schedule = _lr_schedule(optimizer, OptimConfig(lr=2e-4, warmup_steps=20, decay_steps=decay))
    lrs = []
    for _ in range(200):
        lrs.append(schedule.get_last_lr()[0])
        optimizer.step()
        schedule.step()
    assert lrs[0] == pytest.approx(1e-5) and lrs[19] == pytest.approx(2e-4)  # (step + 1) / warm-up
    if not decay:
        assert lrs[19:] == [pytest.approx(2e-4)] * 181
        return
    assert lrs[70] == pytest.approx(1e-4)  # half-way down the cosine
    assert all(a >= b for a, b in zip(lrs[19:], lrs[20:], strict=False)) and lrs[120:] == [0.0] * 80
