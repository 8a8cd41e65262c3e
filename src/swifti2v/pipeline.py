"""The SwiftI2V algorithm, top to bottom: Stage I motion -> hybrid reference -> Stage II CSG -> video.

`generate` and `refine` read like the paper's algorithm box; a `Run` owns what every step shares (the
resolved config, device and dtype, memory placement, models, timer, work directory, progress and
cancellation, where the frames go) and runs each step timed, with its models placed and its result kept.
"""

from __future__ import annotations

import logging
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from swifti2v import media
from swifti2v.config import RunConfig, check_prompt, stage1_size, validate
from swifti2v.errors import Cancelled, UserError
from swifti2v.files import atomic_write_json
from swifti2v.memory import MemoryChoice, check_fits, resolve_memory_mode
from swifti2v.models import parallel, quant
from swifti2v.models.components import Components, check_gguf_files, load_stage1, load_stage2, load_text_encoder
from swifti2v.models.lora import fuse_loras
from swifti2v.models.placement import Placer, get_placement, load_device, steady_heap, trim_heap
from swifti2v.models.speed import check_attention, compile_blocks, set_attention
from swifti2v.models.vae import Shard, WanVAE, decode_tile_major, frame_windows
from swifti2v.outputs import FrameSink, Output, check_paths, write_video
from swifti2v.plan import describe_plan, stage2_plan, window_frames
from swifti2v.reference import clip_windows, hybrid_reference
from swifti2v.runtime import StageTimer, peak_memory, resolve_device, resolve_dtype
from swifti2v.sampling import Segment
from swifti2v.stage1 import generate_motion, generate_motion_context
from swifti2v.stage2 import add_detail
from swifti2v.workdir import WorkDir, WorkOptions, default_path, fingerprint

log = logging.getLogger(__name__)
DEFAULT_WORK = WorkOptions()

Progress = Callable[[str, int, int], None]  # (bar name, done, total)
CancelCheck = Callable[[], bool] | threading.Event  # checked between denoising steps


@dataclass
class Result:
    """What a run made: the video's frames (T, H, W, 3) uint8, the low-res clip Stage II refined, the frame
    rate, the sidecar dict (settings, plan, seconds, memory) and the mp4 written (None: frames only)."""

    frames: np.ndarray | None
    stage1_frames: np.ndarray | None
    fps: int
    info: dict
    path: Path | None


@dataclass
class Setup:
    cfg: RunConfig
    device: torch.device
    dtype: torch.dtype
    memory: MemoryChoice | None = None  # how `--memory-mode auto` chose

    @property
    def split(self) -> bool:
        """A context-parallel run: its processes share every DiT call (and only then talk to each other)."""
        return self.cfg.parallel != "none"

    @property
    def placer(self) -> Placer:
        return Placer(get_placement(self.cfg.memory_mode), self.device, self.dtype)


def setup(cfg: RunConfig, force: bool = False) -> Setup:
    """Resolve the device, dtype and memory mode; refuse, before anything loads, what cannot run or fit
    (`force`: run a job predicted not to fit anyway)."""
    cfg = validate(cfg)
    check_attention(cfg.attention)  # an uninstalled backend fails before anything loads
    device = resolve_device(cfg.device) if cfg.parallel == "none" else parallel.init_parallel(cfg.device)
    quant.check_quant(cfg.quant, device)
    check_gguf_files(cfg)
    cfg, memory = resolve_memory_mode(cfg, device)
    if cfg.parallel != "none" and cfg.memory_mode == "low":  # its block streaming hooks and the split collide
        raise UserError("--parallel runs in --memory-mode fast or balanced (each process holds 1/K of the "
                        "activations, so the low mode's savings are not needed); pass one of them")
    dtype = resolve_dtype(cfg.dtype, device)
    if cfg.parallel == "none":  # a split run holds 1/K of the activations per process: not what is predicted
        check_fits(cfg, device, dtype, force)
    return Setup(cfg, device, dtype, memory)


def load_components(s: Setup, with_stage1: bool) -> Components:
    """Load every model where the memory mode wants it, then prepare them (`prepare_components`)."""
    t0 = time.perf_counter()
    c, placement = s.cfg, get_placement(s.cfg.memory_mode)
    text_source = c.stage1.model if with_stage1 else c.stage2.model
    models_on = load_device(placement, s.device, "models")
    comps = Components(
        text=load_text_encoder(text_source, load_device(placement, s.device, "text"), s.dtype),
        stage2=load_stage2(c.stage2.model, c.stage2.checkpoint, c.stage2.mode == "concat", models_on, s.dtype,
                           weights=c.stage2.weights),
        stage1=load_stage1(c.stage1.model, models_on, s.dtype, c.stage1.weights) if with_stage1 else None,
    )
    if with_stage1:
        comps.lora_reports = fuse_loras(comps.stage1.pipe, c.stage1.loras)
    if c.quant != "none":  # after the LoRAs: the fused weights are what gets quantized
        for dit in s.placer.dits(comps):
            if quant.storage(dit) is None:
                quant.quantize_dit(dit, c.quant)
    prepare_components(s, comps)
    comps.load_seconds, comps.memory_choice = time.perf_counter() - t0, s.memory
    return comps


def prepare_components(s: Setup, comps: Components) -> Components:
    """fp8 storage and block streaming (memory mode), attention backend, context parallelism,
    torch.compile; once per load."""
    s.placer.prepare(comps)
    for dit in s.placer.dits(comps):
        set_attention(dit, s.cfg.attention)
        if s.split and not parallel.is_parallel(dit):
            parallel.check_parallel(s.cfg.parallel, torch.distributed.get_world_size(),
                                    dit.config.num_attention_heads, s.cfg.attention, s.device)
            parallel.context_parallel(dit, s.cfg.parallel, torch.distributed.get_world_size())
        if s.cfg.compile:
            compile_blocks(dit)
    return comps


class SegmentWriter:
    """Decode finished blocks in order, one latent block at a time (streaming VAE), and hand their frames
    to the sink: decode memory is one block's, whatever the segment or clip length."""

    def __init__(self, vae: WanVAE, sink: FrameSink, timer: StageTimer, tile: int | None = None, overlap: int = 4,
                 shard: Shard | None = None):
        self.decoder, self.sink, self.timer = vae.decoder(tile, overlap, shard), sink, timer

    def __call__(self, blocks: torch.Tensor) -> None:
        """The clip's next latent blocks (1, z, n, h, w), the anchor first."""
        for j in range(blocks.shape[2]):
            with self.timer("decode"):
                frames = self.decoder(blocks[:, :, j : j + 1])
            with self.timer("write"):  # H.264 encoding on the CPU
                self.sink.write(frames)


def as_output(out: str | Path | Output | None) -> Output:
    return out if isinstance(out, Output) else Output(None if out is None else Path(out))


def _source_key(source, images: Sequence[Image.Image]) -> Path | bytes:
    """How an image or video input enters the work fingerprint: a file by its bytes (a path), an in-memory
    one by its pixels."""
    if isinstance(source, str | Path):
        return Path(source)
    return b"".join(f"{im.size}".encode() + im.tobytes() for im in images)


class Run(Setup):
    """One `generate` or `refine` call, the one context its steps share: the setup (resolved config, device,
    dtype, placement), the models, the work directory, the outputs, progress and cancel, the stage timer, and
    whether the caller keeps the frames; and the one way a step is run."""

    def __init__(self, s: Setup, comps: Components, work: WorkDir, output: Output, progress: Progress | None,
                 cancel: CancelCheck | None, keep_frames: bool, timer: StageTimer):
        super().__init__(s.cfg, s.device, s.dtype, s.memory)
        self.comps, self.work, self.output, self.timer = comps, work, output, timer
        self.placement = get_placement(s.cfg.memory_mode)
        self._progress, self._cancel, self.keep_frames = progress, cancel, keep_frames
        self.low_frames: list[np.ndarray] = []  # the low-res clip as Stage II saw it (for the caller or its mp4)
        self.keep_low_frames = keep_frames or output.stage1 is not None
        self.stage1_report: dict | None = None  # the Stage I part another process ran (stages="stage2")
        self.frames: np.ndarray | None = None

    @classmethod
    def start(cls, cfg: RunConfig, output: Output, inputs: dict, components: Components | None,
              progress: Progress | None, work: WorkOptions, cancel: CancelCheck | None, keep_frames: bool,
              with_stage1: bool, force: bool = False) -> Run:
        """Resolve the config, check every output path, open the work directory, then load (or take) the
        models: a bad path fails before anything loads."""
        s = setup(cfg, force)
        if s.device.type == "cpu":
            steady_heap()  # the resident set follows what is alive, window after window
        check_paths(output, work.path)
        key = fingerprint(s.cfg, inputs)
        path = work.path or (default_path(output.video) if output.video is not None
                             else Path(tempfile.gettempdir()) / f"swifti2v-{key[:16]}.work")
        # --parallel: rank 0 writes the outputs and the work directory; the others read it (the same
        # resume decisions) and keep their frames in memory only
        # (another process group, e.g. batch --pipeline's, is not this run's business)
        writer = not s.split or parallel.rank() == 0
        wd = WorkDir(path, key, work.restart, writer=writer)
        if s.split:
            parallel.barrier()  # a --restart has discarded the folder before anyone reads it
        if not writer:
            output, progress = Output(None), None
        timer = StageTimer(s.device)
        if components is None:
            with timer("load"):
                components = load_components(s, with_stage1)
        return cls(s, components, wd, output, progress, cancel, keep_frames, timer)

    # -- progress and cancellation
    def report(self, name: str, done: int, total: int) -> None:
        """Progress of a bar; then the cancel check (between denoising steps and segments)."""
        if self._progress is not None:
            self._progress(name, done, total)
        cancel = self._cancel
        if cancel is not None and (cancel.is_set() if isinstance(cancel, threading.Event) else cancel()):
            raise Cancelled(f"cancelled during {name} ({done}/{total}); finished stages and segments are kept in "
                            f"{self.work.path}: the same call resumes from them")

    # -- steps
    def step(self, name: str, make: Callable[[], torch.Tensor], *, models: str | None = None,
             saved: str | None = None) -> torch.Tensor:
        """Step `name`, timed, with the models of stage `models` on the device while it runs. With `saved`,
        its result goes to the work directory, and one an interrupted run left there is taken instead."""
        with self.timer(name):
            found = None if saved is None else self.work.load(saved)
            if found is not None:
                return found.to(self.device)
            with self.placer.stage(self.comps, models) if models else nullcontext():
                made = make()
            if saved is not None:
                self.work.save(saved, made)
            return made

    def encode_text(self, prompt: str) -> torch.Tensor:
        return self.step("text", lambda: self.comps.text.encode(prompt, self.device), saved="text")

    def hand_over(self, inputs: dict) -> Result:
        """End of `generate(stages="stage1")`: what Stage II's process needs is in the work directory, with
        what this part reports (its seconds, the LoRAs' match reports) for the sidecar."""
        seconds = {k: round(t, 3) for k, t in self.timer.seconds.items()}
        self.work.save_json("stage1", {"seconds": seconds, "loras": inputs["loras"], "device": str(self.device)})
        return Result(None, None, self.cfg.video.fps, {"stages": "stage1", "work": str(self.work.path),
                                                        "seconds": seconds}, None)

    def handed_over(self, inputs: dict) -> tuple[torch.Tensor, dict]:
        """Start of `generate(stages="stage2")`: z_ref from the work directory, and the Stage I part's report."""
        z_ref = self.work.load("z_ref")
        report = self.work.load_json("stage1")
        if z_ref is None or report is None:
            raise UserError(f"no finished Stage I part in {self.work.path}; run generate with stages='stage1' "
                            "(or 'all') for this job first")
        self.stage1_report = report
        return z_ref.to(self.device), {**inputs, "loras": report["loras"]}

    def image_at_output_size(self, image: Image.Image) -> torch.Tensor:
        v = self.cfg.video
        return media.to_tensor(media.fit(image, v.height, v.width)).to(self.device)

    def keep_low(self, windows: Iterable[torch.Tensor]) -> Iterator[torch.Tensor]:
        """Pass the low-res windows through, keeping their frames (uint8) when the caller wants them."""
        for window in windows:
            if self.keep_low_frames:
                self.low_frames.append(media.to_uint8(window))
            yield window

    def keep_low_again(self, windows: Callable[[], Iterable[torch.Tensor]], models: str) -> None:
        """The low-res clip's frames for the caller when z_ref came from the work directory (so its windows
        were not seen on the way)."""
        if self.keep_low_frames and not self.low_frames:
            with self.placer.stage(self.comps, models):
                for _ in self.keep_low(windows()):
                    pass

    def stage2_to_video(self, z_ref: torch.Tensor, text: torch.Tensor) -> None:
        """Stage II segment by segment; each finished segment is saved, then decoded and written (or, in the
        low memory mode, the clip is decoded tile by tile at the end)."""
        plan = stage2_plan(self.cfg.stage2, z_ref.shape[2])
        finished = self.work.segments()  # from an interrupted run of the same call
        p, n = self.placement, len(plan)
        self.report("stage2 segments", 0, n)
        with FrameSink(self.output, self.cfg.video.fps, self.keep_frames) as sink, self.timer("stage2"), \
                self.placer.stage(self.comps, "stage2"):
            shard = parallel.decode_shard() if self.split else None  # tiles over the processes
            write = (SegmentWriter(self.comps.stage2.vae, sink, self.timer, p.decode_tile, p.tile_overlap, shard)
                     if p.decode_order == "segment" else None)
            if write is not None:
                write(z_ref[:, :, :1])  # the anchor: the input image's own latent

            def on_segment(seg: Segment, blocks: torch.Tensor) -> None:
                if self.device.type == "cpu":
                    trim_heap()  # the window's freed activations: else fragments pile up segment after segment
                if seg.index not in finished:  # on disk before anything else can fail
                    self.work.save_segment(seg.index, blocks)
                if write is not None:
                    write(blocks)
                self.report("stage2 segments", seg.index + 1, n)

            latents = add_detail(self.comps.stage2, z_ref, text, self.cfg.stage2, self.cfg.seed, on_segment=on_segment,
                                 on_step=lambda seg, i, k: self.report(f"segment {seg.index + 1}/{n}", i, k),
                                 finished=finished, keep_all=write is None)
            if write is None:
                with self.timer("decode"):
                    frames = decode_tile_major(self.comps.stage2.vae, latents, p.decode_tile, p.tile_overlap)
                with self.timer("write"):
                    sink.write(frames)
        self.frames = sink.frames()

    def finish(self, latent_shape: Sequence[int], inputs: dict, work: WorkOptions) -> Result:
        """The low-res clip's mp4 (when asked), the sidecar (written beside the mp4), the work directory removed
        unless kept, the result."""
        low = np.concatenate(self.low_frames) if self.low_frames else None
        if self.output.stage1 is not None and low is not None:
            write_video(self.output.stage1, low, self.cfg.video.fps, self.output.crf)
        info = sidecar(self, latent_shape, inputs)
        if self.output.video is not None:
            atomic_write_json(self.output.video.with_suffix(".json"), info)
        if self.split:
            parallel.barrier()  # every process has read what it needed from the work directory
        if not work.keep:
            self.work.remove()
        return Result(self.frames, low if self.keep_frames else None, self.cfg.video.fps, info, self.output.video)


STAGES = ("all", "stage1", "stage2")  # generate in one call, or in two by two processes (batch --pipeline)


def generate(cfg: RunConfig, image: media.ImageSource, prompt: str, out: str | Path | Output | None,
             components: Components | None = None, progress: Progress | None = None,
             work: WorkOptions = DEFAULT_WORK, cancel: CancelCheck | None = None, keep_frames: bool = False,
             stages: str = "all", force: bool = False) -> Result:
    """Image + prompt -> high-resolution video at `out` (+ `out`.json with settings, plan, timings).

    Finished stages and segments go to a work directory as they finish; the same call after a crash or a
    cancel resumes from them (workdir.py). The two halves, `motion` (-> z_ref) and `detail` (-> video), run one
    after the other; `stages="stage1"` runs the first alone, leaving the text embedding, Stage I's latents and
    z_ref in the work directory; `stages="stage2"` takes them from there (its models need no Stage I) and runs
    the second: the two halves of one job on two GPUs (batch --pipeline)."""
    if stages not in STAGES:
        raise ValueError(f"stages must be one of {STAGES}, not {stages!r}")
    picture = media.as_image(image)
    check_prompt(prompt)
    run = Run.start(cfg, as_output(out), {"image": _source_key(image, [picture]), "prompt": prompt}, components,
                    progress, work, cancel, keep_frames and stages != "stage1", with_stage1=stages != "stage2",
                    force=force)
    inputs = {"image": _describe(image), "prompt": prompt, "loras": run.comps.lora_reports}
    if stages == "stage2":
        z_ref, inputs = run.handed_over(inputs)  # checked before anything is computed
    text = run.encode_text(prompt)
    if stages != "stage2":
        z_ref = motion(run, picture, text)
        if stages == "stage1":
            return run.hand_over(inputs)
    detail(run, z_ref, text)
    return run.finish(z_ref.shape, inputs, work)


def motion(run: Run, picture: Image.Image, text: torch.Tensor) -> torch.Tensor:
    """The first half: Stage I makes the clip at low resolution from the downsampled input image, in windows of
    its native length (`--extend last-frame`: each next one from the previous one's last frame, every finished one
    saved; `context`: overlapping windows denoised together); the hybrid reference (decode, upsample, frame 0 :=
    the full-resolution image, encode) turns it into z_ref."""
    c, s1, v = run.comps, run.cfg.stage1, run.cfg.video
    image = media.fit(picture, *stage1_size(v, s1))
    if s1.extend == "context" and v.frames > s1.window:  # all windows at once: one saved step
        z_low = [run.step("stage1", lambda: generate_motion_context(
            c.stage1, image, text, s1, v, run.cfg.seed, run.device, lambda i, n: run.report("stage1 steps", i, n)),
            models="stage1", saved="stage1")]
    else:
        z_low = continued_windows(run, image, text)
    z_ref = run.step("reference", lambda: hybrid_reference(run.keep_low(clip_windows(c.stage1.vae, z_low)),
                                                           run.image_at_output_size(picture), c.stage2.vae),
                     models="reference", saved="z_ref")
    run.keep_low_again(lambda: clip_windows(c.stage1.vae, z_low), models="reference")
    return z_ref


def continued_windows(run: Run, image: Image.Image, text: torch.Tensor) -> list[torch.Tensor]:
    """Stage I window by window (`--extend last-frame`): each next one an I2V run from the clip's last frame so
    far; each finished one a saved step (`stage1`, `stage1-window1`, ...)."""
    c, s1, v = run.comps, run.cfg.stage1, run.cfg.video
    sizes = window_frames(v.frames, s1.window)
    z_low: list[torch.Tensor] = []
    for k, frames in enumerate(sizes):
        if k:  # the previous window's last frame, colours matched along the clip so far
            with run.placer.stage(c, "stage1"):
                image = last_frame(c.stage1.vae, z_low)
        z_low.append(run.step("stage1", lambda k=k, frames=frames, image=image: generate_motion(
            c.stage1, image, text, s1, v, run.cfg.seed, run.device,
            lambda i, n: run.report("stage1 steps", k * s1.schedule.steps + i, len(sizes) * s1.schedule.steps),
            frames=frames, window=k), models="stage1", saved="stage1" if k == 0 else f"stage1-window{k}"))
    return z_low


def last_frame(vae, z_low: list[torch.Tensor]) -> Image.Image:
    """The low-res clip's last frame so far (every window decoded again: a few low-res blocks each)."""
    *_, last = clip_windows(vae, z_low)
    return Image.fromarray(media.to_uint8(last[:, :, -1:])[0])


def detail(run: Run, z_ref: torch.Tensor, text: torch.Tensor) -> None:
    """The second half: Stage II adds the detail segment by segment; finished segments are saved, decoded and
    written as they come."""
    run.stage2_to_video(z_ref, text)


def choose_frames(available: int, requested: int | None) -> int:
    """The clip length for `refine`: the requested 4k+1, or the longest 4k+1 the motion video holds."""
    if available < 5:
        raise UserError(f"--motion has {available} frames; at least 5 are needed")
    frames = requested if requested is not None else (available - 1) // 4 * 4 + 1
    if frames > available:
        raise UserError(f"--frames {frames} but --motion has only {available} frames; use --frames "
                        f"{(available - 1) // 4 * 4 + 1} or less")
    return frames


MotionSource = str | Path | Sequence[Image.Image | np.ndarray]


def read_motion(motion: MotionSource) -> list[Image.Image]:
    if isinstance(motion, str | Path):
        return media.read_video(motion)[0]
    return [media.as_image(frame) for frame in motion]


def refine(cfg: RunConfig, image: media.ImageSource, motion: MotionSource, prompt: str,
           out: str | Path | Output | None, frames: int | None = None, components: Components | None = None,
           progress: Progress | None = None, work: WorkOptions = DEFAULT_WORK, cancel: CancelCheck | None = None,
           keep_frames: bool = False, force: bool = False) -> Result:
    """Stage II alone on a low-res video from any source, anchored on the high-res image.

    `frames=None` takes the longest 4k+1 prefix of the motion video.
    """
    picture, clip = media.as_image(image), read_motion(motion)
    cfg = replace(cfg, video=replace(cfg.video, frames=choose_frames(len(clip), frames)))
    used = clip[: cfg.video.frames]
    keys = {"image": _source_key(image, [picture]), "motion": _source_key(motion, used), "prompt": prompt}
    run = Run.start(cfg, as_output(out), keys, components, progress, work, cancel, keep_frames, with_stage1=False,
                    force=force)
    text = run.encode_text(prompt)
    low_h, low_w = stage1_size(run.cfg.video, run.cfg.stage1)
    windows = lambda: frame_windows(media.iter_frames(used, low_h, low_w))  # noqa: E731
    z_ref = run.step("reference", lambda: hybrid_reference(run.keep_low(windows()), run.image_at_output_size(picture),
                                                           run.comps.stage2.vae), models="reference", saved="z_ref")
    run.keep_low_again(windows, models="reference")
    detail(run, z_ref, text)
    return run.finish(z_ref.shape, {"image": _describe(image), "motion": _describe(motion), "prompt": prompt}, work)


def _describe(source) -> str:
    """An input as the sidecar names it: its path, or what was handed over in memory."""
    if isinstance(source, str | Path):
        return str(source)
    if isinstance(source, Image.Image):
        return f"<PIL image {source.width}x{source.height}>"
    if isinstance(source, np.ndarray):
        return f"<array {'x'.join(map(str, source.shape))}>"
    return f"<{len(source)} frames>"


def dit_weights(comps: Components) -> dict:
    """How each DiT's weights are stored ("gguf Q4_K", "int8", "fp8", or the load dtype) and their GiB."""
    dits = {"stage2": comps.stage2.transformer}
    if comps.stage1 is not None:
        dits["stage1"] = comps.stage1.transformer
        if comps.stage1.transformer_2 is not None:
            dits["stage1_low_noise"] = comps.stage1.transformer_2
    return {name: {"storage": quant.storage(dit) or str(dit.dtype).removeprefix("torch."),
                   "gib": round(quant.stored_bytes(dit) / 2**30, 4)} for name, dit in dits.items()}


def sidecar(run: Run, latent_shape: Sequence[int], inputs: dict) -> dict:
    """OUT.json: resolved config, inputs, outputs, segment plan, seconds per stage, peak memory."""
    timer, s = run.timer, run
    choice = s.memory or run.comps.memory_choice  # made when the models were loaded
    memory = peak_memory(s.device)
    key = "peak_allocated_gib" if "peak_allocated_gib" in memory else "peak_rss_gib"
    memory[key] = max(memory[key], timer.run_peak_gib)  # the timer resets the counter per stage
    return {
        "output": None if run.output.video is None else run.output.video.name,
        "outputs": run.output.to_dict(),
        "inputs": inputs,
        "config": s.cfg.to_dict(),
        "device": str(s.device),
        "dtype": str(s.dtype).removeprefix("torch."),
        "memory_mode_choice": None if choice is None else choice.to_dict(),
        "dit_weights": dit_weights(run.comps),
        "latent_shape": list(latent_shape),
        "plan": describe_plan(s.cfg),
        "seconds": {**{k: round(t, 3) for k, t in timer.seconds.items()},  # "load" only when this run loaded
                    **{k: t for k, t in (run.stage1_report or {}).get("seconds", {}).items() if k != "load"}},
        "stage1_device": (run.stage1_report or {}).get("device", str(s.device)),
        "models_load_seconds": round(run.comps.load_seconds, 3),
        "memory": {k: round(x, 3) for k, x in memory.items()},
        "memory_per_process": [{k: round(x, 3) for k, x in m.items()}
                               for m in (parallel.gather(memory) if s.split else [memory])],
        "stage_peak_gib": {k: round(x, 3) for k, x in timer.peaks_gib.items()},  # CUDA: allocated; CPU: RSS
    }
