"""`swifti2v ui`: a web UI (Gradio) over the Python API.

Upload an image (the preview shows the crop that will be used), write a prompt, choose preset, size, frames,
seed, memory mode and Stage II steps; optionally upload a low-res motion video to run Stage II alone
(`refine`). Progress per stage and per segment shows in the page; Cancel stops a run between denoising steps
(its finished segments are kept, nothing appears under the final name); one generation runs at a time and
waiting jobs see their place in the queue. Results: the video, the Stage I low-res clip beside it, a 1:1
crop of bicubic upsampling against the final frame at the same place, the mp4 and its JSON to download, and
a gallery of everything this UI wrote to --out-dir.

Security: binds 127.0.0.1 unless told otherwise (then a warning), optional --auth USER:PASS, uploads size-
limited and read with the CLI's checks, every file written under --out-dir with a name the UI makes.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import gradio as gr
import numpy as np
from PIL import Image

from swifti2v import media
from swifti2v.config import MEMORY_MODES, validate
from swifti2v.errors import Cancelled, UserError
from swifti2v.presets import PRESETS, get_preset, with_overrides
from swifti2v.workdir import WorkOptions, fingerprint

log = logging.getLogger(__name__)
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
CROP = 256  # side of the 1:1 detail comparison


@dataclass(frozen=True)
class UIConfig:
    host: str = "127.0.0.1"
    port: int = 7860
    preset: str = "tiny"
    out_dir: Path = Path("outputs/ui")
    auth: tuple[str, str] | None = None
    max_upload_mb: int = 50

    def __post_init__(self):
        if not 0 < self.port < 65536 or self.max_upload_mb < 1:
            raise UserError(f"--port {self.port} must be 1..65535 and --max-upload-mb at least 1")


def parse_auth(text: str | None) -> tuple[str, str] | None:
    if text is None:
        return None
    user, sep, password = text.partition(":")
    if not sep or not user or not password:
        raise UserError("--auth must be USER:PASS, both non-empty")
    return user, password


def crop_box(height: int, width: int, side: int = CROP) -> tuple[int, int, int, int]:
    """A centred side x side box (left, top, right, bottom), clipped to the frame."""
    h, w = min(side, height), min(side, width)
    top, left = (height - h) // 2, (width - w) // 2
    return left, top, left + w, top + h


def detail_crops(low: np.ndarray, final: np.ndarray) -> tuple[Image.Image, Image.Image]:
    """The same 1:1 region of one frame: the low-res frame upsampled bicubic, and the final frame."""
    height, width = final.shape[:2]
    bicubic = Image.fromarray(low).resize((width, height), Image.Resampling.BICUBIC)
    box = crop_box(height, width)
    return bicubic.crop(box), Image.fromarray(final).crop(box)


class Studio:
    """What the page's handlers share: the loaded pipelines, the output folder, cancel flags per session."""

    def __init__(self, cfg: UIConfig):
        self.cfg = cfg
        self.out_dir = cfg.out_dir.resolve()
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.pipes: dict[tuple[str, str], object] = {}
        self.cancels: dict[str, threading.Event] = {}
        self.busy = threading.Lock()  # one generation at a time, whatever the queue does

    # -- inputs
    @staticmethod
    def read_image(path: str | None) -> Image.Image:
        if not path:
            raise UserError("upload an image first (PNG, JPEG or WebP)")
        try:
            return media.load_image(path)
        except UserError as e:
            raise UserError(str(e).replace("--image ", "the upload ").replace(path, Path(path).name)) from None

    @staticmethod
    def settings(preset: str, height, width, frames, stage2_steps, seed, memory_mode: str):
        """The run config the page asks for, checked with the CLI's messages."""
        values = {"height": height, "width": width, "frames": frames, "stage2_steps": stage2_steps, "seed": seed}
        for name, value in values.items():
            if value is not None and float(value) != int(value):
                raise UserError(f"{name} {value} must be a whole number")
        ints = {k: None if v is None else int(v) for k, v in values.items()}
        return validate(with_overrides(get_preset(preset), memory_mode=memory_mode, **ints))

    def preview(self, path: str | None, preset: str, height, width) -> Image.Image | None:
        if not path:
            return None
        try:
            cfg = self.settings(preset, height, width, None, None, None, "auto")
            return media.fit(self.read_image(path), cfg.video.height, cfg.video.width)
        except UserError as e:
            raise _page_error(e) from None

    # -- the run
    def pipe(self, preset: str, memory_mode: str):
        from swifti2v.api import SwiftI2V

        key = (preset, memory_mode)
        if key not in self.pipes:
            self.pipes[key] = SwiftI2V.from_preset(preset, memory_mode=memory_mode)
        return self.pipes[key]

    def run(self, image_path, motion_path, prompt, preset, height, width, frames, seed, memory_mode, stage2_steps,
            session: str, progress) -> tuple:
        try:
            cfg = self.settings(preset, height, width, frames, stage2_steps, seed, memory_mode)
            image = self.read_image(image_path)
            if not motion_path and not (prompt or "").strip():
                raise UserError("the prompt is empty; describe the motion, e.g. 'the camera pans left'")
            motion = media.read_video(motion_path)[0] if motion_path else None
        except UserError as e:
            raise _page_error(e) from None
        cancel = self.cancels[session] = threading.Event()
        # Outputs get fresh names, so the work directory is named by the settings and inputs: a cancelled
        # run's finished steps are picked up by the next run with the same ones.
        inputs = {"image": Path(image_path), "prompt": prompt or ""}
        if motion is not None:
            inputs["motion"] = Path(motion_path)
        work = WorkOptions(self.out_dir / ".work" / fingerprint(cfg, inputs)[:16])
        stem = f"swifti2v-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
        out = self.out_dir / f"{stem}.mp4"
        v = cfg.video
        call = dict(seed=cfg.seed, height=v.height, width=v.width, out=out, cancel=cancel,
                    progress=lambda name, done, total: progress((done, total), desc=name),
                    stage2_steps=cfg.stage2.schedule.steps, work=work)
        try:
            with self.busy:
                progress(0.0, desc="loading models")
                pipe = self.pipe(preset, cfg.memory_mode)
                if motion is None:
                    result = pipe.generate(image, prompt, frames=v.frames, **call)
                else:
                    result = pipe.refine(image, motion, prompt or "", frames=int(frames) if frames else None, **call)
        except Cancelled:
            return self.cancelled()
        except UserError as e:
            raise _page_error(e) from None
        finally:
            self.cancels.pop(session, None)
        return self.publish(result, stem)

    def cancelled(self):
        message = ("**Cancelled.** Nothing was written under the output's name; finished segments are kept in the "
                   "work directory, so the same settings resume from them.")
        return (message, None, None, None, None, gr.update(), gr.update(), self.gallery())

    def publish(self, result, stem: str) -> tuple:
        """Write the Stage I clip and a thumbnail beside the mp4; everything the page shows."""
        low_path = self.out_dir / f"{stem}.stage1.mp4"
        with media.VideoWriter(low_path, result.fps) as w:
            w.write_uint8(result.stage1_frames)
        middle = len(result.frames) // 2
        Image.fromarray(result.frames[middle]).save(self.out_dir / f"{stem}.jpg", quality=90)
        bicubic, final = detail_crops(result.stage1_frames[middle], result.frames[middle])
        info = result.info
        v = info["config"]["video"]
        secs = sum(info["seconds"].values())
        summary = (f"**Done** in {secs:.1f} s: {v['width']}×{v['height']}, {v['frames']} frames at {v['fps']} fps, "
                   f"seed {info['config']['seed']}, memory mode {info['config']['memory_mode']}. "
                   f"Detail crop: frame {middle}, centre.")
        json_path = result.path.with_suffix(".json")
        return (summary, str(result.path), str(low_path), bicubic, final, str(result.path), str(json_path),
                self.gallery())

    def cancel(self, session: str) -> str:
        event = self.cancels.get(session)
        if event is None:
            return "Nothing is running."
        event.set()
        return "Cancelling after the current step..."

    def gallery(self) -> list[tuple[str, str]]:
        """(thumbnail, caption) of every finished output in out_dir, newest first."""
        items = []
        for meta in sorted(self.out_dir.glob("swifti2v-*.json"), reverse=True):
            thumb = meta.with_suffix(".jpg")
            if not (thumb.is_file() and meta.with_suffix(".mp4").is_file()):
                continue
            try:
                info = json.loads(meta.read_text())
                v, prompt = info["config"]["video"], info["inputs"].get("prompt", "")
                caption = f"{prompt[:40]} · seed {info['config']['seed']} · {v['width']}x{v['height']}x{v['frames']}"
            except (OSError, ValueError, KeyError):
                continue
            items.append((str(thumb), caption))
        return items


def _page_error(e: UserError):
    return gr.Error(str(e), print_exception=False)


def build(studio: Studio):
    """The page: the settings on the left, the results on the right, the gallery below."""
    with gr.Blocks(title="swifti2v") as page:
        gr.Markdown("# swifti2v\nOne image and a prompt → a high-resolution video (SwiftI2V: low-res motion, "
                    "then detail segment by segment).")
        with gr.Row():
            with gr.Column():
                ins = _settings(studio)
            with gr.Column():
                outs = _results()
        outs.gallery = gr.Gallery(value=studio.gallery, label="Outputs of this UI", columns=6, rows=1, height=220,
                                  object_fit="contain", preview=False, elem_id="gallery")
        _wire(studio, ins, outs)
    return page


def _settings(studio: Studio) -> SimpleNamespace:
    base = get_preset(studio.cfg.preset)
    w = SimpleNamespace()
    w.image = gr.File(label="Input image", type="filepath", elem_id="image-upload")
    w.preview = gr.Image(label="Crop that will be used", interactive=False, elem_id="preview", height=240)
    w.prompt = gr.Textbox(label="Prompt", value="the camera pans left", elem_id="prompt")
    w.motion = gr.File(label="Optional low-res motion video (runs Stage II alone: refine)",
                       type="filepath", elem_id="motion-upload")
    with gr.Row():
        w.preset = gr.Dropdown(list(PRESETS), value=studio.cfg.preset, label="Preset", elem_id="preset")
        w.memory = gr.Dropdown(["auto", *MEMORY_MODES], value="auto", label="Memory mode")
    with gr.Row():
        w.height = gr.Number(base.video.height, label="Height", precision=0, elem_id="height")
        w.width = gr.Number(base.video.width, label="Width", precision=0, elem_id="width")
        w.frames = gr.Number(base.video.frames, label="Frames (4k+1, any length)", precision=0, elem_id="frames")
    with gr.Row():
        w.seed = gr.Number(0, label="Seed", precision=0, elem_id="seed")
        w.dice = gr.Button("Random seed", elem_id="random-seed")
        w.steps = gr.Number(base.stage2.schedule.steps, label="Stage II steps", precision=0,
                            elem_id="stage2-steps")
    with gr.Row():
        w.go = gr.Button("Generate", variant="primary", elem_id="generate")
        w.stop = gr.Button("Cancel", variant="stop", elem_id="cancel")
    return w


def _results() -> SimpleNamespace:
    w = SimpleNamespace()
    w.status = gr.Markdown("", elem_id="status")
    with gr.Row():
        w.video = gr.Video(label="Result", elem_id="result-video", autoplay=False)
        w.low = gr.Video(label="Stage I low-res clip", elem_id="stage1-video")
    with gr.Row():
        w.crop_bicubic = gr.Image(label="Bicubic upsampling (1:1 crop)", elem_id="crop-bicubic")
        w.crop_final = gr.Image(label="SwiftI2V (same crop)", elem_id="crop-final")
    with gr.Row():
        w.get_mp4 = gr.DownloadButton("Download mp4", elem_id="download-mp4")
        w.get_json = gr.DownloadButton("Download JSON", elem_id="download-json")
    return w


def _wire(studio: Studio, i: SimpleNamespace, o: SimpleNamespace) -> None:
    """The events: preset defaults, the crop preview, a random seed, generate (one at a time), cancel."""
    def on_preset(name):
        cfg = get_preset(name)
        return cfg.video.height, cfg.video.width, cfg.video.frames, cfg.stage2.schedule.steps

    def on_run(image_path, motion_path, text, preset_name, h, w, f, s, mode, k, request: gr.Request,
               progress=gr.Progress()):  # noqa: B008 (Gradio injects it)
        return studio.run(image_path, motion_path, text, preset_name, h, w, f, s, mode, k,
                          request.session_hash, progress)

    def on_cancel(request: gr.Request):
        return studio.cancel(request.session_hash)

    i.preset.change(on_preset, i.preset, [i.height, i.width, i.frames, i.steps], queue=False)
    for trigger in (i.image.upload, i.height.submit, i.width.submit):
        trigger(studio.preview, [i.image, i.preset, i.height, i.width], i.preview, concurrency_limit=None,
                concurrency_id="preview")  # queued (errors show as messages), never behind a generation
    i.dice.click(lambda: random.randrange(2**31), None, i.seed, queue=False)
    i.go.click(on_run, [i.image, i.motion, i.prompt, i.preset, i.height, i.width, i.frames, i.seed, i.memory, i.steps],
               [o.status, o.video, o.low, o.crop_bicubic, o.crop_final, o.get_mp4, o.get_json, o.gallery],
               concurrency_limit=1, concurrency_id="gpu")
    i.stop.click(on_cancel, None, o.status, queue=False)


def serve(cfg: UIConfig) -> None:
    """Start the UI (blocks until interrupted)."""
    if cfg.host not in LOCAL_HOSTS:
        log.warning("serving on %s: anyone who can reach this machine can run generations on it; pass --auth "
                    "USER:PASS", cfg.host)
    studio = Studio(cfg)
    page = build(studio)
    page.queue(default_concurrency_limit=1, max_size=32)
    theme = gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                              font_mono=["ui-monospace", "monospace"])  # no web fonts: works offline
    page.launch(server_name=cfg.host, server_port=cfg.port, auth=cfg.auth, max_file_size=f"{cfg.max_upload_mb}mb",
                allowed_paths=[str(studio.out_dir)], show_error=True, quiet=False, theme=theme,
                footer_links=["gradio"], ssr_mode=False)
