"""The recipe's module entry points: the tiny workshop (training/tiny.py) on a tiny folder, and the probes
(recipes/tiny/probes) as importable modules with `main(argv)`."""

import importlib
import json
from pathlib import Path

import pytest
import torch
from diffusers import WanTransformer3DModel
from safetensors.torch import load_file

from swifti2v.errors import UserError
from swifti2v.models import debug
from swifti2v.training import tiny

PROBES = ("stage1_direction", "stage1_overfit", "checkpoint_gain", "codec_check", "curves", "gains", "default_job",
          "train_speed")


@pytest.mark.parametrize("name", PROBES)
def test_every_probe_is_a_module_with_a_main(name, capsys):
    probe = importlib.import_module(f"recipes.tiny.probes.{name}")
    with pytest.raises(SystemExit) as done:
        probe.main(["--help"])
    assert done.value.code == 0 and f"recipes.tiny.probes.{name}" in capsys.readouterr().out


def test_a_malformed_schedule_is_refused_before_anything_loads(capsys):
    from recipes.tiny.probes import stage1_direction

    with pytest.raises(SystemExit) as done:
        stage1_direction.main(["shipped", "--schedule", "8,3"])
    assert done.value.code == 2 and "give STEPS,SHIFT,SAMPLER" in capsys.readouterr().err
    assert torch.is_grad_enabled(), "a probe leaves no global state behind"


def test_the_default_job_probe_reads_a_pan_chained_over_every_8th_frame():
    """A camera moving up 4 px a frame over a textured, hilly still: 128 px in 33 frames at 288x512, as the default
    job's pans; the chained phase correlations add up to it (a still clip reads 0: the notebook of 2026-12-07)."""
    from recipes.tiny.probes.default_job import chained_shift

    from swifti2v.data.synthetic import pixel_grid, sample_at

    y, x = torch.meshgrid(torch.arange(900.0), torch.arange(512.0), indexing="ij")
    still = torch.stack([torch.sin(x / 3) * torch.cos(y / 3), torch.sin(x / 7 + y / 11), y / 450 - 1])  # textured
    still = still * (y > 450 + 40 * torch.sin(x / 40)).float() + (y <= 450 + 40 * torch.sin(x / 40)).float() * 0.5
    grid = pixel_grid(288, 512)
    path = torch.stack([grid + torch.tensor([0.0, 400.0 - 4 * t]) for t in range(33)])  # the view moves up
    video = sample_at(still, path)
    dx, dy = chained_shift(video)
    assert abs(dx) < 4 and 120 < dy < 136  # the content moves down the frame by 128 px


def test_curves_draw_the_runs_it_finds(tmp_path, capsys):
    from recipes.tiny.probes import curves

    for run, losses in (("stage1", [0.5, 0.3]), ("stage2", [0.2, 0.1])):
        (tmp_path / run).mkdir()
        rows = [{"step": 100 * (i + 1), "loss": v} for i, v in enumerate(losses)]
        (tmp_path / run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert curves.main([str(tmp_path), "--png", str(tmp_path / "c.png")]) == 0
    table = capsys.readouterr().out
    assert "| step | stage1 | stage2 |" in table and "| 200 | 0.300 | 0.100 |" in table
    assert (tmp_path / "c.png").stat().st_size > 0


def _base(root: Path) -> Path:
    """A model folder as build-base writes one (transformer, codec-free), from the debug components."""
    for stage in ("stage1", "stage2"):
        debug.tiny_stage2_transformer().save_pretrained(root / stage / "transformer")
        debug.tiny_text_encoder().save_pretrained(root / stage / "text_encoder")
    return root


def test_the_workshop_zeroes_a_head_composes_and_assembles(tmp_path, capsys):
    base = _base(tmp_path / "base")
    trained = tmp_path / "trained"
    debug.tiny_stage2_transformer().save_pretrained(trained)
    tiny.main(["zero-head", str(trained)])
    model = WanTransformer3DModel.from_pretrained(trained)
    assert model.proj_out.weight.abs().sum() == 0 and model.proj_out.bias.abs().sum() == 0
    tiny.main(["compose", str(base / "stage1"), str(trained), str(tmp_path / "composed")])
    assert (tmp_path / "composed" / "text_encoder").is_dir()
    shards = sorted((tmp_path / "composed" / "transformer").glob("diffusion_pytorch_model*.safetensors"))
    weights = {k: v for f in shards for k, v in load_file(str(f)).items()}
    assert torch.equal(weights["proj_out.weight"], model.proj_out.weight)
    tiny.main(["assemble", "--base", str(base), "--stage1", str(trained), "--stage2", str(trained),
               "--out", str(tmp_path / "bundle")])
    assert {p.name for p in (tmp_path / "bundle").iterdir()} == {"stage1", "stage2"}
    assert not (tmp_path / "bundle.tmp").exists()


def test_export_turns_a_training_checkpoint_into_a_transformer_folder(tmp_path):
    from safetensors.torch import save_file

    like, step = tmp_path / "like", tmp_path / "run" / "checkpoints" / "step-0000002"
    model = debug.tiny_stage2_transformer()
    model.save_pretrained(like)
    step.mkdir(parents=True)
    trained = {k: v + 1 for k, v in model.state_dict().items()}
    save_file(trained, str(step / "model.safetensors"))
    tiny.main(["export", str(step), str(like), str(tmp_path / "out")])
    loaded = WanTransformer3DModel.from_pretrained(tmp_path / "out")
    assert torch.equal(loaded.proj_out.weight, trained["proj_out.weight"])


def test_the_gpu_script_runs_its_whole_path_at_two_steps_on_cpu(tmp_path):
    """recipes/tiny/gpu.sh, as the test tier can afford it: both stages 2 steps on tiny data, then gains.json with
    the direction count and the Stage II gains beside the bundle's, and a candidate bundle."""
    import os
    import sys

    from conftest import run_process

    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "STEPS": "2", "S1_BATCH": "1", "S2_BATCH": "1", "S2_SIZE": "64", "PRECISION": "no",
           "NUM_WORKERS": "0", "DIRECTION_CLIPS": "1", "PHOTO_CLIPS": "1", "GAIN_SIZE": "64 64",
           "EXTRA": "--set data.bank=4", "PYTHON": sys.executable, "SWIFTI2V": f"{sys.executable} -m swifti2v"}
    r = run_process(["bash", "recipes/tiny/gpu.sh", str(tmp_path / "run")], cwd=root, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    gains = json.loads((tmp_path / "run" / "gains.json").read_text())
    assert set(gains["stage1"]) == {"bundled", "new"} and gains["stage1"]["new"]["clips"] == 1
    for key in ("stage1", "direction_only", "reach", "shifted_copy_db"):
        assert key in gains["stage1"]["new"]
    assert set(gains["stage2"]["new"]) == {"photo_gain_db", "anchor_gain_last_third_db", "worst_clip_gain_db"}
    for run in ("stage1", "stage2"):
        assert json.loads((tmp_path / "run" / run / "run.json").read_text())
    assert {p.name for p in (tmp_path / "run" / "bundle").iterdir()} == {"stage1", "stage2"}


def test_deepen_inserts_silent_blocks_that_change_nothing(tmp_path):
    model = debug.tiny_stage2_transformer().eval()
    with torch.no_grad():  # a trained model's writers are not zero: make the source's blocks all count
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    model.save_pretrained(tmp_path / "src")
    (tmp_path / "src" / "swifti2v.json").write_text('{"prediction": "x0"}')
    tiny.main(["deepen", str(tmp_path / "src"), str(tmp_path / "deep"), "--after", "0", "1"])
    deep = WanTransformer3DModel.from_pretrained(tmp_path / "deep").eval()
    assert len(deep.blocks) == len(model.blocks) + 2 and (tmp_path / "deep" / "swifti2v.json").is_file()
    assert deep.blocks[1].ffn.net[2].weight.abs().sum() == 0 and torch.equal(deep.blocks[2].attn1.to_q.weight,
                                                                               model.blocks[1].attn1.to_q.weight)
    c = model.config
    x = torch.randn(1, c.in_channels, 3, 4, 4)
    text = torch.randn(1, 8, c.text_dim)
    t = torch.tensor([500.0])
    with torch.no_grad():
        want = model(hidden_states=x, timestep=t, encoder_hidden_states=text, return_dict=False)[0]
        got = deep(hidden_states=x, timestep=t, encoder_hidden_states=text, return_dict=False)[0]
    assert torch.allclose(got, want, atol=1e-5) and want.abs().mean() > 0
    with pytest.raises(UserError, match="distinct block indices"):
        tiny.deepen(model, [0, 0])
