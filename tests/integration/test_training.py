"""Training end to end on the debug-random models: checkpoints `generate` loads, loss going down,
exact resume, on-the-fly == cached data, two DDP processes in sync, a Stage I LoRA `--lora` loads."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import free_port, run_cli, run_process
from swifti2v.models.components import DEBUG_RANDOM, load_stage1, load_stage2
from swifti2v.models.lora import fuse_lora_file
from swifti2v.training.config import load_train_config
from swifti2v.training.engine import checkpoint_transformer, ema_state_dict, train
from swifti2v.training.prepare import prepare_data

FAST = ["mixed_precision=\"no\"", "tracker=none", "optim.lr=3e-3", "data.cache_dtype=fp32"]


def _cfg(out, *overrides, **flags):
    flags = {"output_dir": str(out), **{k.replace("__", "."): v for k, v in flags.items()}}
    return load_train_config(None, [*FAST, *overrides], flags)


@pytest.fixture(scope="session")
def cache(video_folder, tmp_path_factory):
    path = tmp_path_factory.mktemp("cache")
    prepare_data(_cfg(path / "unused", data__folder=str(video_folder), data__cache=str(path)))
    return path


def _weights(run: Path) -> dict[str, torch.Tensor]:
    latest = json.loads((run / "checkpoints" / "latest.json").read_text())
    return load_file(str(run / "checkpoints" / latest["dir"] / "model.safetensors"))


def test_stage2_checkpoint_is_what_generate_loads(cache, tmp_path, image_file):
    from swifti2v import pipeline
    from swifti2v.presets import get_preset

    run = tmp_path / "run"
    info = train(_cfg(run, "save_every=1", "keep_checkpoints=2", "tracker=tensorboard", data__cache=str(cache),
                      max_steps=3))
    assert list((run / "logs").rglob("events.out.tfevents.*"))
    assert info["steps"] == 3 and info["ranks_agree"]
    assert sorted(p.name for p in (run / "checkpoints").glob("step-*")) == ["step-0000002", "step-0000003"]
    assert json.loads((run / "final" / "swifti2v.json").read_text())["training"]["max_steps"] == 3
    loaded = load_stage2(DEBUG_RANDOM, str(run / "final"), True, torch.device("cpu"), torch.float32).transformer
    trained = _weights(run)
    for name, p in loaded.state_dict().items():
        assert torch.allclose(p, trained[name].to(torch.bfloat16).float()), name  # exported as bf16
    base = load_stage2(DEBUG_RANDOM, None, True, torch.device("cpu"), torch.float32).transformer
    assert not torch.equal(base.patch_embedding.weight, loaded.patch_embedding.weight)
    cfg = get_preset("debug-random")
    cfg = replace(cfg, stage2=replace(cfg.stage2, checkpoint=str(run / "final")))
    out = pipeline.generate(cfg, image_file, "the camera pans left", tmp_path / "v.mp4").info
    assert (tmp_path / "v.mp4").is_file() and out["config"]["stage2"]["checkpoint"] == str(run / "final")


def test_loss_decreases_on_a_tiny_overfit_set(cache, tmp_path):
    train(_cfg(tmp_path / "run", "log_every=10", "save_every=100", data__cache=str(cache), max_steps=60))
    losses = [json.loads(line)["loss"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(losses) == 6
    assert losses[-1] < 0.75 * losses[0], losses


def test_resume_reaches_the_uninterrupted_weights(cache, tmp_path):
    common = ["grad_accum=2", "ema_decay=0.9", "save_every=3", "log_every=1"]
    train(_cfg(tmp_path / "a", *common, data__cache=str(cache), max_steps=7))
    train(_cfg(tmp_path / "b", *common, data__cache=str(cache), max_steps=3))
    summary = train(_cfg(tmp_path / "b", *common, data__cache=str(cache), max_steps=7), resume=True)
    assert summary["steps"] == 7
    a, b = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    for name in a:
        assert torch.allclose(a[name], b[name], rtol=1e-5, atol=1e-6), name
    ema_a = load_file(str(tmp_path / "a" / "checkpoints" / "step-0000007" / "ema.safetensors"))
    ema_b = load_file(str(tmp_path / "b" / "checkpoints" / "step-0000007" / "ema.safetensors"))
    assert all(torch.allclose(ema_a[k], ema_b[k], rtol=1e-5, atol=1e-6) for k in ema_a)
    la = [json.loads(x)["loss"] for x in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    lb = [json.loads(x)["loss"] for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert la == pytest.approx(lb, rel=1e-5)  # same batches, same noise, step for step


def test_ema_added_on_resume_is_what_the_export_holds(cache, tmp_path):
    run = tmp_path / "run"
    train(_cfg(run, "save_every=3", data__cache=str(cache), max_steps=3))
    train(_cfg(run, "save_every=5", "ema_decay=0.9", data__cache=str(cache), max_steps=5), resume=True)
    names = [n for n, _ in load_stage2(DEBUG_RANDOM, None, True, torch.device("cpu"), torch.float32)
             .transformer.named_parameters()]
    ema = ema_state_dict(run / "checkpoints" / "step-0000005", names)
    exported = load_stage2(DEBUG_RANDOM, str(run / "final"), True, torch.device("cpu"), torch.float32).transformer
    for name, p in exported.named_parameters():
        assert torch.allclose(p, ema[name].to(torch.bfloat16).float()), name
    raw, start = _weights(run), load_file(str(run / "checkpoints" / "step-0000003" / "model.safetensors"))
    moved = [n for n in names if not torch.equal(raw[n], start[n])]
    assert moved and all(not torch.equal(ema[n], raw[n]) for n in moved)  # the average lags the last step
    step = run / "checkpoints" / "step-0000005"
    for average, want in ((True, ema), (False, raw)):  # the checkpoint as a folder `--stage2` loads, either way
        folder = checkpoint_transformer(step, run / "final", tmp_path / f"folder-{average}", ema=average)
        loaded = load_stage2(DEBUG_RANDOM, str(folder), True, torch.device("cpu"), torch.float32).transformer
        assert all(torch.equal(p, want[n].float()) for n, p in loaded.named_parameters())


def test_max_minutes_stops_with_a_checkpoint_and_an_export_then_resume_continues(cache, tmp_path):
    run = tmp_path / "timed"
    info = train(_cfg(run, "max_minutes=1e-9", data__cache=str(cache), max_steps=5))
    assert info["steps"] == 1 and (run / "final" / "config.json").is_file()
    assert json.loads((run / "checkpoints" / "latest.json").read_text())["step"] == 1
    assert train(_cfg(run, data__cache=str(cache), max_steps=3), resume=True)["steps"] == 3


def test_on_the_fly_conditions_equal_the_cache(video_folder, cache, tmp_path):
    train(_cfg(tmp_path / "fly", data__folder=str(video_folder), max_steps=2))
    train(_cfg(tmp_path / "cached", data__cache=str(cache), max_steps=2))
    a, b = _weights(tmp_path / "fly"), _weights(tmp_path / "cached")
    assert all(torch.allclose(a[k], b[k], rtol=1e-5, atol=1e-6) for k in a)


def test_ema_without_warmup_averages_from_the_first_step(cache, tmp_path):
    """ema_decay=0.99 over 3 steps: diffusers' warm-up makes the EMA nearly the last raw weights (its decay
    starts at 0); without the warm-up it keeps 0.99^3 of the start, as a run continued from trained weights wants."""
    start = dict(load_stage2(DEBUG_RANDOM, None, True, torch.device("cpu"), torch.float32, widen=True)
                 .transformer.named_parameters())
    names = list(start)
    far = {}
    for warmup in (True, False):
        run = tmp_path / f"warmup-{warmup}"
        train(_cfg(run, "ema_decay=0.99", f"ema_warmup={str(warmup).lower()}", data__cache=str(cache), max_steps=3))
        raw, ema = _weights(run), ema_state_dict(run / "checkpoints" / "step-0000003", names)
        moved = sum((raw[k] - start[k]).square().sum() for k in names)
        far[warmup] = float(sum((ema[k] - start[k]).square().sum() for k in names) / moved)
    assert far[True] > 0.3 and far[False] < 0.01, far


def test_bf16_reaches_the_dit_and_spares_the_frozen_codec(video_folder, tmp_path, monkeypatch):
    """mixed_precision=bf16: the DiT's matmuls run in bf16 on the single-process path too (its per-frame modulated
    forward calls the DiT's parts, not the prepared model's autocast forward); the codec and text encoder that make
    the targets and references stay in their own dtype."""
    from swifti2v.training.tasks import Stage2Task

    def record(seen: list, out):
        seen.extend(out if isinstance(out, tuple) else [out])
        return out

    linears, latents = [], []
    linear, encode = torch.nn.Linear.forward, Stage2Task.latents
    monkeypatch.setattr(torch.nn.Linear, "forward", lambda self, x: record(linears, linear(self, x)))
    monkeypatch.setattr(Stage2Task, "latents", lambda self, batch: record(latents, encode(self, batch)))
    train(_cfg(tmp_path / "run", 'mixed_precision="bf16"', data__folder=str(video_folder), max_steps=1))
    assert torch.bfloat16 in {t.dtype for t in linears}
    assert len(latents) == 3 and {t.dtype for t in latents} == {torch.float32}


def test_two_processes_agree_on_the_weights(cache, tmp_path):
    run = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--main_process_port", str(free_port()), "--mixed_precision", "no",
           "--dynamo_backend", "no", "-m", "swifti2v", "train", "stage2", "--cache", str(cache), "--output-dir",
           str(run), "--max-steps", "3", "-q", "--set", "dist_timeout_min=2", *[a for s in FAST for a in ("--set", s)]]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = run_process(cmd, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["processes"] == 2 and len(summary["ranks"]) == 2 and summary["ranks_agree"]
    assert proc.stdout.count("trained 3 steps") == 1  # rank 0 reports


def test_stage1_lora_is_what_generate_lora_loads(video_folder, tmp_path):
    run = tmp_path / "lora"
    train(_cfg(run, "lora.rank=4", task="stage1-lora", data__folder=str(video_folder), max_steps=2))
    lora_file = run / "final" / "pytorch_lora_weights.safetensors"
    keys = load_file(str(lora_file))
    assert keys and all(k.startswith("transformer.") and ".lora_" in k for k in keys)
    s1 = load_stage1(DEBUG_RANDOM, torch.device("cpu"), torch.float32)
    before = s1.transformer.blocks[0].attn1.to_q.weight.clone()
    report = fuse_lora_file(s1.pipe, lora_file)
    assert report.pairs == len(keys) // 2 and not report.unmatched
    assert not torch.equal(before, s1.transformer.blocks[0].attn1.to_q.weight)


def test_stage1_lora_over_a_fused_base_lora_reproduces_the_trained_weights(tmp_path):
    """The paper's low-res LoRA trained with the few-step LoRA already fused (model.base_loras): stacking the
    same base LoRA and the exported one on a fresh Stage I gives exactly the weights training ended with."""
    from safetensors.torch import save_file

    from swifti2v.config import LoraFile
    from swifti2v.models.lora import fuse_loras

    g = torch.Generator().manual_seed(0)
    base = tmp_path / "fewstep.safetensors"  # LightX2V format, with a modulation delta
    save_file({"diffusion_model.blocks.0.self_attn.q.lora_down.weight": torch.randn(2, 24, generator=g),
               "diffusion_model.blocks.0.self_attn.q.lora_up.weight": torch.randn(24, 2, generator=g),
               "diffusion_model.blocks.1.diff_m": torch.randn(1, 6, 24, generator=g)}, base)
    run = tmp_path / "lowres"
    train(_cfg(run, "lora.rank=4", "export_dtype=fp32", "data.synthetic=4", f'model.base_loras=["{base}@0.5"]',
               task="stage1-lora", max_steps=2))
    ckpt = _weights(run)  # the model as training left it: fused base weights + the trained adapter
    trained = {}
    for key, value in ckpt.items():
        if ".lora_" in key:
            continue
        name = key.replace(".base_layer.", ".")
        if ".base_layer.weight" in key:
            module = key.removesuffix(".base_layer.weight")
            value = value + ckpt[f"{module}.lora_B.default.weight"] @ ckpt[f"{module}.lora_A.default.weight"]
        trained[name] = value
    fresh = load_stage1(DEBUG_RANDOM, torch.device("cpu"), torch.float32)
    pristine = {k: v.clone() for k, v in fresh.transformer.state_dict().items()}
    reports = fuse_loras(fresh.pipe, [LoraFile(str(base), 0.5),
                                      LoraFile(str(run / "final" / "pytorch_lora_weights.safetensors"))])
    stacked = fresh.transformer.state_dict()
    assert set(stacked) == set(trained) and reports[1]["pairs"] > 0
    for key, value in stacked.items():
        torch.testing.assert_close(value, trained[key], atol=1e-5, rtol=1e-5, msg=key)
    assert not torch.equal(pristine["blocks.1.scale_shift_table"], trained["blocks.1.scale_shift_table"])
    info = json.loads((run / "final" / "swifti2v.json").read_text())
    assert info["training"]["model"]["base_loras"] == [f"{base}@0.5"]  # the export says what it sits on


def test_training_cli_errors_are_one_line(video_folder, tmp_path, cache, capsys):
    def run(*args):
        return run_cli(capsys, *args)

    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.mp4").write_bytes(b"x")
    (bad / "metadata.jsonl").write_text('{"file": "a.mp4"}\n')
    for args, message in [
        (("train", "stage2", "--data", str(bad), "--output-dir", str(tmp_path / "o")), "a.mp4 has no caption"),
        (("train", "stage2", "--data", str(video_folder), "--set", "optim.lrr=1"), "unknown config key optim.lrr"),
        (("prepare-data", "--data", str(video_folder)), "needs both --data FOLDER and --cache DIR"),
        (("train", "stage2", "--cache", str(tmp_path)), "no index.json"),
    ]:
        proc = run(*args)
        assert proc.returncode == 2, (args, proc.stderr[-2000:])
        assert message in proc.stderr and "Traceback" not in proc.stderr
    out = tmp_path / "twice"
    common = ("train", "stage2", "--cache", str(cache), "--output-dir", str(out), "--max-steps", "1", "-q",
              *[a for s in FAST for a in ("--set", s)])
    assert run(*common).returncode == 0
    again = run(*common)
    assert again.returncode == 2 and "pass --resume" in again.stderr


def test_stage2_lora_exports_a_merged_folder(cache, tmp_path):
    run = tmp_path / "lora2"
    train(_cfg(run, "lora.rank=4", "export_dtype=fp32", data__cache=str(cache), max_steps=2))
    loaded = load_stage2(DEBUG_RANDOM, str(run / "final"), True, torch.device("cpu"), torch.float32).transformer
    base = load_stage2(DEBUG_RANDOM, None, True, torch.device("cpu"), torch.float32).transformer
    names = set(loaded.state_dict())
    assert names == set(base.state_dict())  # plain weights: the adapter is merged, not carried
    assert not torch.equal(loaded.blocks[0].attn1.to_q.weight, base.blocks[0].attn1.to_q.weight)
    assert not torch.equal(loaded.patch_embedding.weight, base.patch_embedding.weight)
    assert torch.equal(loaded.blocks[0].norm2.weight, base.blocks[0].norm2.weight)  # not a LoRA target
