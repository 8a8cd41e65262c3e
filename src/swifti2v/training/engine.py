"""The training loop on accelerate: DDP/FSDP via `accelerate launch`, bf16 autocast over fp32 master
weights, gradient accumulation, optional EMA, and resumable by construction.

Checkpoints: `OUT/checkpoints/step-XXXXXXX/` holds `accelerator.save_state` (model, optimizer, LR
schedule, sampler, RNG), the EMA weights (safetensors) and `state.json` (step, batches seen, a per-rank
weight digest); `latest.json` names the newest one, the oldest beyond `keep_checkpoints` are deleted.
`--resume` loads the newest, skips the batches already seen in the epoch (`skip_first_batches`, same
seeded order), and derives each micro-batch's randomness from (seed, batch index, rank): a resumed run
takes the steps an uninterrupted one takes. At the end the task exports what `generate` loads to `OUT/final/`.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import torch
from accelerate import Accelerator, DataLoaderConfiguration
from accelerate.state import AcceleratorState
from accelerate.utils import InitProcessGroupKwargs, ProjectConfiguration, broadcast
from torch.utils.data import DataLoader

from swifti2v.errors import UserError
from swifti2v.files import atomic_write_json
from swifti2v.runtime import peak_memory
from swifti2v.sampling.noise import derive_seed
from swifti2v.training.config import OptimConfig, TrainConfig
from swifti2v.training.tasks import TASKS, Stage1Task, Stage2Task

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v if isinstance(v, (int, float, str, bool)) else str(v)
    return out


class Checkpoints:
    def __init__(self, root: Path, keep: int):
        self.root, self.keep = root, keep

    def latest(self) -> dict | None:
        path = self.root / "latest.json"
        return json.loads(path.read_text()) if path.is_file() else None

    def save(self, acc: Accelerator, state: dict, ema=None) -> Path:
        path = self.root / f"step-{state['step']:07d}"
        acc.save_state(str(path))
        if acc.is_main_process:
            if ema is not None:
                save_ema(ema, path, state)
            atomic_write_json(path / "state.json", state)
            atomic_write_json(self.root / "latest.json", {"dir": path.name, **state})
            done = sorted(p for p in self.root.glob("step-*") if (p / "state.json").is_file())
            for old in done[: -self.keep]:
                shutil.rmtree(old, ignore_errors=True)
        acc.wait_for_everyone()
        return path


def save_ema(ema, path: Path, state: dict) -> None:
    """EMA weights as safetensors (not a pickle), its step in state.json."""
    from safetensors.torch import save_file

    save_file({str(i): p.detach().cpu().contiguous() for i, p in enumerate(ema.shadow_params)},
              str(path / "ema.safetensors"))
    state["ema_step"] = ema.optimization_step


def load_ema(ema, path: Path, state: dict, params: list[torch.Tensor]) -> None:
    """The checkpoint's EMA; one saved without EMA (ema_decay set on --resume) starts it at the resumed weights."""
    from safetensors.torch import load_file

    if not (path / "ema.safetensors").is_file():
        log.info("%s has no EMA weights: the EMA starts from the resumed weights", path.name)
        with torch.no_grad():
            for shadow, p in zip(ema.shadow_params, params, strict=True):
                shadow.copy_(p)
        return
    saved = load_file(str(path / "ema.safetensors"))
    with torch.no_grad():
        for i, p in enumerate(ema.shadow_params):
            p.copy_(saved[str(i)])
    ema.optimization_step = state["ema_step"]


def ema_state_dict(path: Path, names: list[str]) -> dict[str, torch.Tensor]:
    """A checkpoint's EMA weights by parameter name; `names`: the trained parameters' names in the model's
    order (every parameter of a full fine-tune), which is the order the EMA was built in."""
    from safetensors.torch import load_file

    saved = load_file(str(path / "ema.safetensors"))
    if len(saved) != len(names):
        raise ValueError(f"{path}/ema.safetensors holds {len(saved)} tensors for {len(names)} parameter names")
    return {name: saved[str(i)] for i, name in enumerate(names)}


def checkpoint_transformer(step: Path, like: Path, out: Path, ema: bool = False) -> Path:
    """A training checkpoint (RUN/checkpoints/step-N) as a transformer folder shaped like `like` (its config and
    sidecars): the raw weights of a full fine-tune, or with `ema` the average a run with ema_decay > 0 keeps."""
    import shutil

    from diffusers import WanTransformer3DModel
    from safetensors.torch import save_file

    shutil.copytree(like, out, ignore=shutil.ignore_patterns("*.safetensors", "*.index.json"))
    weights = out / "diffusion_pytorch_model.safetensors"
    if ema:
        model = WanTransformer3DModel.from_config(WanTransformer3DModel.load_config(like))
        save_file(ema_state_dict(step, [n for n, _ in model.named_parameters()]), str(weights))
    else:
        shutil.copyfile(step / "model.safetensors", weights)
    return out


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """The weights of a training checkpoint (RUN/checkpoints/step-N: accelerate's model.safetensors, the raw
    weights) or of a transformer folder (its safetensors shards)."""
    from safetensors.torch import load_file

    folder = Path(path)
    files = ([folder / "model.safetensors"] if (folder / "model.safetensors").is_file()
             else sorted(folder.glob("diffusion_pytorch_model*.safetensors")))
    if not files:
        raise UserError(f"{folder} holds no model.safetensors and no diffusion_pytorch_model*.safetensors")
    return {k: v for f in files for k, v in load_file(str(f)).items()}


def weight_digest(acc: Accelerator, params: list[torch.Tensor]) -> list[list[float]]:
    """Per-rank (sum, sum of squares) of the trained weights: equal on every rank when DDP is in sync."""
    s = torch.zeros(2, dtype=torch.float64, device=acc.device)
    for p in params:
        s[0] += p.detach().double().sum()
        s[1] += p.detach().double().square().sum()
    return acc.gather(s[None]).view(-1, 2).tolist()


def _make_accelerator(cfg: TrainConfig, out: Path) -> Accelerator:
    tracker = None if cfg.tracker == "none" else cfg.tracker
    if tracker is not None and importlib.util.find_spec(tracker) is None:
        extra = "train" if tracker == "tensorboard" else tracker
        raise UserError(f"tracker {tracker} is not installed; `pip install 'swifti2v[{extra}]'` or "
                        "--set tracker=none (metrics.jsonl is written either way)")
    return Accelerator(
        cpu=not torch.cuda.is_available(),  # then torchrun-style launches run DDP over gloo on CPU
        mixed_precision=cfg.mixed_precision,
        gradient_accumulation_steps=cfg.grad_accum,
        log_with=tracker,
        project_config=ProjectConfiguration(project_dir=str(out), logging_dir=str(out / "logs")),
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=cfg.seed),
        # a collective whose peer is gone fails after this, instead of holding the machine
        kwargs_handlers=[InitProcessGroupKwargs(timeout=timedelta(minutes=cfg.dist_timeout_min))],
    )


def train(cfg: TrainConfig, resume: bool = False, progress: Progress | None = None) -> dict:
    """Run (or resume) a training run; returns a summary also written to OUT/summary.json."""
    out = Path(cfg.output_dir)
    ckpts = Checkpoints(out / "checkpoints", cfg.keep_checkpoints)
    latest = ckpts.latest()
    if latest and not resume:
        raise UserError(f"{out} already holds checkpoints (step {latest['step']}); pass --resume to continue "
                        "or choose a new --output-dir")
    if resume and latest is None:
        log.warning("--resume: no checkpoint in %s yet; starting from step 0", out)
    acc = _make_accelerator(cfg, out)
    try:
        return _train(cfg, acc, out, ckpts, latest if resume else None, progress)
    finally:
        _teardown(acc)


def _teardown(acc: Accelerator) -> None:
    """Every rank leaves the same way: trackers closed, then the process group destroyed explicitly, so no
    rank is left in a collective (or in a destructor) that a finished rank no longer joins. accelerate's
    process-wide state goes too, so a later `train` in this process may choose another mixed precision."""
    acc.end_training()  # trackers finish; the default process group is destroyed
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    AcceleratorState._reset_state(reset_partial_state=True)  # private: accelerate has no public reset


def _train(cfg: TrainConfig, acc: Accelerator, out: Path, ckpts: Checkpoints, latest: dict | None,
           progress: Progress | None) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    task = TASKS[cfg.task](cfg, acc.device)
    params = [p for p in task.model.parameters() if p.requires_grad]
    log.info("%s: %d trainable tensors, %.2fM parameters, %d clips, %d process(es)", cfg.task, len(params),
             sum(p.numel() for p in params) / 1e6, len(task.dataset), acc.num_processes)
    o = cfg.optim
    optimizer = torch.optim.AdamW(params, lr=o.lr, betas=o.betas, weight_decay=o.weight_decay)
    schedule = _lr_schedule(optimizer, o)
    loader = DataLoader(task.dataset, batch_size=cfg.batch_size, shuffle=True, drop_last=True,
                        collate_fn=task.collate, num_workers=cfg.data.num_workers)
    if len(loader) // acc.num_processes < 1:
        raise UserError(f"{len(task.dataset)} clips give no full batch of {cfg.batch_size} per process on "
                        f"{acc.num_processes} process(es); lower batch_size or add clips")
    model, optimizer, loader, schedule = acc.prepare(task.model, optimizer, loader, schedule)
    params = [p for p in model.parameters() if p.requires_grad]  # FSDP replaces them
    ema = None
    if cfg.ema_decay:
        from diffusers.training_utils import EMAModel

        ema = EMAModel(params, decay=cfg.ema_decay, min_decay=0.0 if cfg.ema_warmup else cfg.ema_decay)
        if not cfg.ema_warmup:  # diffusers' first update copies the weights (decay 0) whatever min_decay says
            ema.optimization_step = 1
        ema.to(acc.device)
    step = 0
    if latest is not None:
        acc.load_state(str(ckpts.root / latest["dir"]))
        step = latest["step"]
        if ema is not None:
            load_ema(ema, ckpts.root / latest["dir"], latest, params)
        log.info("resumed from %s at step %d", latest["dir"], step)
    if acc.is_main_process:
        atomic_write_json(out / "run.json", {"training": cfg.to_dict(), "processes": acc.num_processes,
                                        "distributed": str(acc.distributed_type.value),
                                        "data": None if task.report is None else vars(task.report)})
    if cfg.tracker != "none":
        acc.init_trackers("swifti2v", config=_flat(cfg.to_dict()))
    run = TrainRun(cfg, acc, task, model, optimizer, schedule, loader, params, ema, ckpts, out,
                   progress if acc.is_main_process else None, step=step, batch_index=step * cfg.grad_accum)
    result = _loop(run)
    acc.wait_for_everyone()  # the last collective: every rank reaches the teardown together
    return result


def _lr_schedule(optimizer: torch.optim.Optimizer, o: OptimConfig) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up, then a constant lr or (decay_steps > 0) a cosine down to 0 that stays there."""
    def factor(step: int) -> float:
        warm = min(1.0, (step + 1) / max(1, o.warmup_steps))
        if not o.decay_steps:
            return warm
        done = min(1.0, max(0, step - o.warmup_steps) / o.decay_steps)
        return warm * 0.5 * (1.0 + math.cos(math.pi * done))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


@dataclass
class TrainRun:
    """One training run on this process: what the loop, its logs and its checkpoints share."""

    cfg: TrainConfig
    acc: Accelerator
    task: Stage2Task | Stage1Task
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.LRScheduler
    loader: DataLoader
    params: list[torch.Tensor]
    ema: object | None  # diffusers EMAModel
    ckpts: Checkpoints
    out: Path
    progress: Progress | None
    step: int = 0  # optimizer steps taken
    batch_index: int = 0  # micro-batches consumed (per process): where the seeded data order stands
    last_loss: float = math.nan
    t0: float = field(default_factory=time.perf_counter)
    window: list[torch.Tensor] = field(default_factory=list)  # micro-batch losses since the last log line
    window_start: float = field(default_factory=time.perf_counter)

    def batches(self):
        """The rest of the current epoch, in the seeded order (the part a resumed run already saw skipped)."""
        epoch, offset = divmod(self.batch_index, len(self.loader))
        self.loader.set_epoch(epoch)
        return self.acc.skip_first_batches(self.loader, offset) if offset else self.loader

    def micro_step(self, batch) -> None:
        """Forward and backward on one micro-batch; the optimizer steps when accumulation completes. Its
        randomness comes from (seed, batch index, rank), so a resumed run draws what an uninterrupted one does."""
        cfg, acc = self.cfg, self.acc
        g = torch.Generator().manual_seed(derive_seed(cfg.seed, f"train/{self.batch_index}/{acc.process_index}"))
        # autocast here, not only in the prepared model's forward: the per-frame modulated forward (a single
        # process's path) calls the DiT's parts directly and would otherwise run in fp32 whatever mixed_precision says
        with acc.accumulate(self.model):
            with acc.autocast():
                loss = self.task.loss(self.model, batch, g)
            acc.backward(loss)
            if acc.sync_gradients and cfg.optim.grad_clip > 0:
                acc.clip_grad_norm_(self.params, cfg.optim.grad_clip)
            self.optimizer.step()
            self.schedule.step()
            self.optimizer.zero_grad(set_to_none=True)
        self.batch_index += 1
        self.window.append(loss.detach())

    def after_step(self) -> None:
        """An optimizer step is done: EMA, the log line when due, progress."""
        self.step += 1
        if self.ema is not None:
            self.ema.step(self.params)
        if self.step % self.cfg.log_every == 0 or self.step == self.cfg.max_steps:
            self.log_window()
        self.report()

    def log_window(self) -> None:
        cfg, acc = self.cfg, self.acc
        self.last_loss = float(acc.reduce(torch.stack(self.window).mean(), reduction="mean"))
        now = time.perf_counter()
        samples = len(self.window) * cfg.batch_size * acc.num_processes
        record = {"step": self.step, "loss": self.last_loss, "lr": self.schedule.get_last_lr()[0],
                  "samples_per_s": samples / (now - self.window_start), "elapsed_s": now - self.t0}
        acc.log({k: v for k, v in record.items() if k != "step"}, step=self.step)
        if acc.is_main_process:
            with (self.out / "metrics.jsonl").open("a") as f:
                f.write(json.dumps(record) + "\n")
        self.window, self.window_start = [], now

    def report(self) -> None:
        if self.progress:
            self.progress("train steps", self.step, self.cfg.max_steps)

    def checkpoint(self) -> None:
        self.ckpts.save(self.acc, {"step": self.step, "batches": self.batch_index, "loss": self.last_loss,
                                   "ranks": weight_digest(self.acc, self.params)}, self.ema)


def _loop(run: TrainRun) -> dict:
    """Optimizer steps until max_steps or max_minutes, checkpointing every save_every; then the export."""
    cfg = run.cfg
    run.report()
    while run.step < cfg.max_steps:
        for batch in run.batches():
            run.micro_step(batch)
            if not run.acc.sync_gradients:
                continue
            run.after_step()
            out_of_time = _out_of_time(run.acc, cfg, run.t0)
            if run.step % cfg.save_every == 0 or run.step == cfg.max_steps or out_of_time:
                run.checkpoint()
            if out_of_time:
                log.info("max_minutes %.1f reached at step %d; --resume continues", cfg.max_minutes, run.step)
            if run.step >= cfg.max_steps or out_of_time:
                return _finish(run)
    return _finish(run)


def _out_of_time(acc: Accelerator, cfg: TrainConfig, t0: float) -> bool:
    """Every rank stops at the same step: rank 0's clock decides."""
    if not cfg.max_minutes:
        return False
    late = torch.tensor([float(time.perf_counter() - t0 > 60 * cfg.max_minutes)], device=acc.device)
    if acc.num_processes > 1:
        late = broadcast(late, from_process=0)
    return bool(late.item())


def _finish(run: TrainRun) -> dict:
    """Export what `generate` loads to OUT/final (EMA weights when kept), and the run's summary."""
    cfg, acc, params, ema, out, step = run.cfg, run.acc, run.params, run.ema, run.out, run.step
    seconds, last_loss = time.perf_counter() - run.t0, run.last_loss
    if ema is not None:
        ema.store(params)
        ema.copy_to(params)
    state = acc.get_state_dict(run.model)
    digest = weight_digest(acc, params)
    final = out / "final"
    if acc.is_main_process:
        tmp = out / ".final.partial"
        shutil.rmtree(tmp, ignore_errors=True)
        run.task.export(state, tmp)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
    acc.wait_for_everyone()
    summary = {"task": cfg.task, "steps": step, "final_loss": last_loss, "seconds": round(seconds, 2),
               "export": str(final), "processes": acc.num_processes, "ranks": digest,
               "ranks_agree": all(d == digest[0] for d in digest),
               "memory": {k: round(v, 3) for k, v in peak_memory(acc.device).items()}}
    if acc.is_main_process:
        atomic_write_json(out / "summary.json", summary)
    if not summary["ranks_agree"]:
        log.warning("ranks disagree on the weights: %s", digest)
    return summary
