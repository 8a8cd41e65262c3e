"""The SwiftI2V algorithm, top to bottom: Stage I motion -> hybrid reference -> Stage II CSG -> video."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from swifti2v import media
from swifti2v.config import RunConfig, stage1_size, validate
from swifti2v.errors import UserError
from swifti2v.files import atomic_write_json
from swifti2v.models.components import Components, load_stage1, load_stage2, load_text_encoder
from swifti2v.models.lora import load_lightx2v_lora
from swifti2v.models.placement import Placer, get_placement, load_device
from swifti2v.models.speed import check_attention, compile_blocks, set_attention
from swifti2v.models.vae import WanVAE, decode_tile_major, frame_windows
from swifti2v.plan import describe_plan, stage2_plan
from swifti2v.reference import decoded_windows, hybrid_reference
from swifti2v.runtime import StageTimer, peak_memory, resolve_device, resolve_dtype
from swifti2v.sampling import Segment
from swifti2v.stage1 import generate_motion
from swifti2v.stage2 import add_detail
from swifti2v.workdir import WorkDir, WorkOptions, default_path, fingerprint

DEFAULT_WORK = WorkOptions()

Progress = Callable[[str, int, int], None]  # (bar name, done, total)


def _no_progress(name: str, done: int, total: int) -> None:
    pass


@dataclass
class Setup:
    cfg: RunConfig
    device: torch.device
    dtype: torch.dtype

    @property
    def placer(self) -> Placer:
        return Placer(get_placement(self.cfg.memory_mode), self.device, self.dtype)


def setup(cfg: RunConfig) -> Setup:
    cfg = validate(cfg)
    check_attention(cfg.attention)  # an uninstalled backend fails before anything loads
    device = resolve_device(cfg.device)
    return Setup(cfg, device, resolve_dtype(cfg.dtype, device))


def resolve_lora(spec: str) -> Path:
    """A local .safetensors path, or 'hub_repo_id:path/in/repo.safetensors'."""
    if Path(spec).exists() or ":" not in spec:
        return Path(spec)
    repo, filename = spec.split(":", 1)
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(repo, filename))
    except Exception as e:
        raise UserError(f"LoRA {spec!r} could not be fetched ({type(e).__name__}); download it and pass "
                        "--lora PATH") from None


def load_components(s: Setup, with_stage1: bool) -> Components:
    """Load every model where the memory mode wants it, then prepare them (`prepare_components`)."""
    c, placement = s.cfg, get_placement(s.cfg.memory_mode)
    text_source = c.stage1.model if with_stage1 else c.stage2.model
    models_on = load_device(placement, s.device, "models")
    comps = Components(
        text=load_text_encoder(text_source, load_device(placement, s.device, "text"), s.dtype),
        stage2=load_stage2(c.stage2.model, c.stage2.checkpoint, c.stage2.mode == "concat", models_on, s.dtype),
        stage1=load_stage1(c.stage1.model, models_on, s.dtype) if with_stage1 else None,
    )
    if with_stage1 and c.stage1.lora:
        report = load_lightx2v_lora(comps.stage1.pipe, resolve_lora(c.stage1.lora), c.stage1.lora_strength)
        comps.lora_summary = report.summary()
    return prepare_components(s, comps)


def prepare_components(s: Setup, comps: Components) -> Components:
    """fp8 storage and block streaming (memory mode), attention backend, torch.compile; once per load."""
    s.placer.prepare(comps)
    for dit in s.placer.dits(comps):
        set_attention(dit, s.cfg.attention)
        if s.cfg.compile:
            compile_blocks(dit)
    return comps


class SegmentWriter:
    """Decode finished blocks in order, one latent block at a time (streaming VAE), and append their frames
    to the video: decode memory is one block's, whatever the segment or clip length."""

    def __init__(self, vae: WanVAE, writer: media.VideoWriter, timer: StageTimer, tile: int | None = None,
                 overlap: int = 4):
        self.decoder, self.writer, self.timer = vae.decoder(tile, overlap), writer, timer
        self.next_block = 0

    def __call__(self, segment: Segment, latents: torch.Tensor) -> None:
        for block in range(self.next_block, segment.blocks[-1] + 1):
            with self.timer("decode"):
                frames = self.decoder(latents[:, :, block : block + 1])
            with self.timer("write"):  # H.264 encoding on the CPU
                self.writer.write(frames)
        self.next_block = segment.blocks[-1] + 1


def _load_and_encode(s: Setup, prompt: str, components: Components | None, timer: StageTimer,
                     with_stage1: bool) -> tuple[Components, torch.Tensor]:
    with timer("load"):
        comps = components or load_components(s, with_stage1)
    with timer("text"):
        text = comps.text.encode(prompt, s.device)
    return comps, text


def _stage2_to_video(comps: Components, s: Setup, z_ref: torch.Tensor, text: torch.Tensor, out: Path,
                     timer: StageTimer, progress: Progress, work: WorkDir) -> None:
    plan = stage2_plan(s.cfg.stage2, z_ref.shape[2])
    finished = work.segments()  # from an interrupted run of the same command
    progress("stage2 segments", 0, len(plan))
    p = get_placement(s.cfg.memory_mode)
    with media.VideoWriter(out, s.cfg.video.fps) as writer, s.placer.stage(comps, "stage2"):
        streaming = p.decode_order == "segment"
        write_segment = SegmentWriter(comps.stage2.vae, writer, timer, p.decode_tile, p.tile_overlap)

        def on_segment_done(seg: Segment, latents: torch.Tensor) -> None:
            if seg.index not in finished:  # on disk before anything else can fail
                work.save_segment(seg.index, latents[:, :, seg.blocks[0] : seg.blocks[-1] + 1])
            if streaming:
                write_segment(seg, latents)
            progress("stage2 segments", seg.index + 1, len(plan))

        with timer("stage2"):
            latents = add_detail(comps.stage2, z_ref, text, s.cfg.stage2, s.cfg.seed, on_segment=on_segment_done,
                                 on_step=lambda seg, i, n: progress(f"segment {seg.index + 1}/{len(plan)}", i, n),
                                 finished=finished)
        # decode and write are reported on their own
        timer.seconds["stage2"] -= timer.seconds.get("decode", 0.0) + timer.seconds.get("write", 0.0)
        if not streaming:
            with timer("decode"):
                frames = decode_tile_major(comps.stage2.vae, latents, p.decode_tile, p.tile_overlap)
            with timer("write"):
                writer.write(frames)


def _open_work(s: Setup, out: Path, options: WorkOptions, inputs: dict) -> WorkDir:
    return WorkDir(options.path or default_path(out), fingerprint(s.cfg, inputs), options.restart)


def _saved(work: WorkDir, name: str, make: Callable[[], torch.Tensor], device: torch.device) -> torch.Tensor:
    """`name` from the work directory if an earlier run finished it, else made now and saved."""
    found = work.load(name)
    if found is not None:
        return found.to(device)
    made = make()
    work.save(name, made)
    return made


def _finish(work: WorkDir, options: WorkOptions, info: dict) -> dict:
    if not options.keep:
        work.remove()
    return info


def generate(cfg: RunConfig, image_path: str | Path, prompt: str, out: str | Path,
             components: Components | None = None, progress: Progress = _no_progress,
             work: WorkOptions = DEFAULT_WORK) -> dict:
    """Image + prompt -> high-resolution video at `out` (+ `out`.json with settings, plan, timings).

    Finished stages and segments go to a work directory as they finish; the same call after a crash
    resumes from them (workdir.py)."""
    s, out = setup(cfg), Path(out)
    v = s.cfg.video
    image = media.load_image(image_path)
    if not prompt.strip():
        raise UserError("--prompt is empty; describe the motion, e.g. --prompt 'the camera pans left'")
    wd = _open_work(s, out, work, {"image": Path(image_path), "prompt": prompt})
    timer = StageTimer(s.device)
    comps, text = _load_and_encode(s, prompt, components, timer, with_stage1=True)
    # Stage I: the whole clip at low resolution, from the downsampled input image.
    low_h, low_w = stage1_size(v, s.cfg.stage1)
    with timer("stage1"), s.placer.stage(comps, "stage1"):
        z_low = _saved(wd, "stage1", lambda: generate_motion(
            comps.stage1, media.fit(image, low_h, low_w), text, s.cfg.stage1, v, s.cfg.seed, s.device,
            lambda i, n: progress("stage1 steps", i, n)), s.device)
    # Hybrid reference: decode, upsample, frame 0 := the full-resolution image, encode -> z_ref.
    image_hi = media.to_tensor(media.fit(image, v.height, v.width)).to(s.device)
    with timer("reference"), s.placer.stage(comps, "reference"):
        z_ref = _saved(wd, "z_ref", lambda: hybrid_reference(decoded_windows(comps.stage1.vae, z_low), image_hi,
                                                               comps.stage2.vae), s.device)
    # Stage II: detail segment by segment; finished segments are saved, decoded and written as they come.
    _stage2_to_video(comps, s, z_ref, text, out, timer, progress, wd)
    return _finish(wd, work, write_sidecar(out, s, timer, z_ref.shape,
                                           {"image": str(image_path), "prompt": prompt, "lora": comps.lora_summary}))


def choose_frames(available: int, requested: int | None) -> int:
    """The clip length for `refine`: the requested 4k+1, or the longest 4k+1 the motion video holds."""
    if available < 5:
        raise UserError(f"--motion has {available} frames; at least 5 are needed")
    frames = requested if requested is not None else (available - 1) // 4 * 4 + 1
    if frames > available:
        raise UserError(f"--frames {frames} but --motion has only {available} frames; use --frames "
                        f"{(available - 1) // 4 * 4 + 1} or less")
    return frames


def refine(cfg: RunConfig, image_path: str | Path, motion_path: str | Path, prompt: str, out: str | Path,
           frames: int | None = None, components: Components | None = None,
           progress: Progress = _no_progress, work: WorkOptions = DEFAULT_WORK) -> dict:
    """Stage II alone on a low-res video from any source, anchored on the high-res image.

    `frames=None` takes the longest 4k+1 prefix of the motion video.
    """
    image = media.load_image(image_path)
    motion, _ = media.read_video(motion_path)
    cfg = replace(cfg, video=replace(cfg.video, frames=choose_frames(len(motion), frames)))
    s, out = setup(cfg), Path(out)
    v = s.cfg.video
    wd = _open_work(s, out, work, {"image": Path(image_path), "motion": Path(motion_path), "prompt": prompt})
    timer = StageTimer(s.device)
    comps, text = _load_and_encode(s, prompt, components, timer, with_stage1=False)
    low_h, low_w = stage1_size(v, s.cfg.stage1)
    windows: Iterable[torch.Tensor] = frame_windows(media.iter_frames(motion[: v.frames], low_h, low_w))
    image_hi = media.to_tensor(media.fit(image, v.height, v.width)).to(s.device)
    with timer("reference"), s.placer.stage(comps, "reference"):
        z_ref = _saved(wd, "z_ref", lambda: hybrid_reference(windows, image_hi, comps.stage2.vae), s.device)
    _stage2_to_video(comps, s, z_ref, text, out, timer, progress, wd)
    return _finish(wd, work, write_sidecar(out, s, timer, z_ref.shape,
                                           {"image": str(image_path), "motion": str(motion_path), "prompt": prompt}))


def write_sidecar(out: Path, s: Setup, timer: StageTimer, latent_shape, inputs: dict) -> dict:
    """OUT.json: resolved config, inputs, segment plan, seconds per stage, peak memory (atomic write)."""
    memory = peak_memory(s.device)
    if timer.peaks_gib:  # the timer resets CUDA's peak counter per stage: the run's peak is the largest
        memory["peak_allocated_gib"] = max(memory["peak_allocated_gib"], *timer.peaks_gib.values())
    info = {
        "output": out.name,
        "inputs": inputs,
        "config": s.cfg.to_dict(),
        "device": str(s.device),
        "dtype": str(s.dtype).removeprefix("torch."),
        "latent_shape": list(latent_shape),
        "plan": describe_plan(s.cfg),
        "seconds": {k: round(t, 3) for k, t in timer.seconds.items()},
        "memory": {k: round(x, 3) for k, x in memory.items()},
        "stage_peak_gib": {k: round(x, 3) for k, x in timer.peaks_gib.items()},  # CUDA only
    }
    atomic_write_json(out.with_suffix(".json"), info)
    return info
