"""The Python API: load the models once, generate many videos.

    from swifti2v import SwiftI2V
    pipe = SwiftI2V.from_preset("tiny")                      # or "wan-2k-refine", device="cuda", ...
    result = pipe.generate("photo.jpg", "the camera pans left", seed=3, out="clip.mp4")
    result.frames.shape                                       # (33, 288, 512, 3) uint8
    result = pipe.generate(result.frames[-1], "the camera zooms in")   # no loading the second time

The CLI, `batch` and the web UI all run through this class.
"""

from __future__ import annotations

from pathlib import Path

from swifti2v import pipeline
from swifti2v.config import RunConfig
from swifti2v.errors import UserError
from swifti2v.media import ImageSource
from swifti2v.models.components import Components
from swifti2v.outputs import DEFAULT_CRF, Output
from swifti2v.pipeline import CancelCheck, MotionSource, Progress, Result
from swifti2v.presets import MODEL_OVERRIDES, check_weights, get_preset, with_overrides
from swifti2v.workdir import WorkOptions


class SwiftI2V:
    """A loaded pipeline: `generate(image, prompt)` and `refine(image, motion)` reuse its models.

    `cfg` is the run configuration the calls start from (a preset with overrides); a call may change the
    video (size, frames, fps), the seed and the sampling settings, not the models (make a new SwiftI2V)."""

    def __init__(self, cfg: RunConfig, components: Components | None = None, with_stage1: bool = True,
                 force: bool = False):
        """Load the models of `cfg` (or take `components`). `with_stage1=False` loads Stage II alone: then
        only `refine` runs. A run predicted not to fit its device's free memory is refused before anything
        loads (UserError naming what would fit); `force=True` runs such runs anyway, here and in every call."""
        check_weights(cfg)
        self.force = force
        self.setup = pipeline.setup(cfg, force)
        self.cfg = self.setup.cfg  # memory mode resolved
        self.components = components or pipeline.load_components(self.setup, with_stage1)

    @classmethod
    def from_preset(cls, name: str = "tiny", device: str = "auto", memory_mode: str = "auto",
                    with_stage1: bool = True, force: bool = False, **overrides) -> SwiftI2V:
        """Load preset `name` (see `swifti2v presets`) with settings by their CLI names, e.g. frames=81,
        stage2="path/to/checkpoint", lora="none", dtype="bf16", attention="flash". `lora`: one --lora value or a
        list, added after the preset's LoRAs in order (e.g. lora=["lowres.safetensors@0.8"]; "none" clears)."""
        return cls(with_overrides(get_preset(name), device=device, memory_mode=memory_mode, **overrides),
                   with_stage1=with_stage1, force=force)

    def _config(self, overrides: dict) -> RunConfig:
        fixed = sorted(k for k, v in overrides.items() if k in MODEL_OVERRIDES and v is not None)
        if fixed:
            raise UserError(f"{fixed[0]} is fixed once the models are loaded; pass it to SwiftI2V.from_preset")
        return with_overrides(self.cfg, **overrides)

    def generate(self, image: ImageSource, prompt: str, *, seed: int | None = None, frames: int | None = None,
                 height: int | None = None, width: int | None = None, out: str | Path | None = None,
                 crf: int = DEFAULT_CRF, png_dir: str | Path | None = None, stage1_out: str | Path | None = None,
                 progress: Progress | None = None, cancel: CancelCheck | None = None,
                 work: WorkOptions = pipeline.DEFAULT_WORK, keep_frames: bool = True, stages: str = "all",
                 **overrides) -> Result:
        """Image (path, PIL image or (H, W, 3) uint8 array) + prompt -> video. With `out`, also an mp4 and
        its JSON there (PNG frames in `png_dir`; the low-res clip Stage II refined in `stage1_out`, an mp4).
        `progress(bar, done, total)` is called per step and segment; `cancel` (a threading.Event or a callable)
        is checked between them and raises Cancelled (finished segments are kept: the same call resumes).
        `keep_frames=False` leaves `result.frames` None (a long 2K clip written to `out` need not sit in memory
        too). `work`: where finished steps are kept. `stages`: "stage1" stops after the hybrid reference (kept in
        the work directory), "stage2" makes the video from what a "stage1" call left there (a pipeline loaded
        with_stage1=False can run it)."""
        if self.components.stage1 is None and stages != "stage2":
            raise UserError("this SwiftI2V was loaded without Stage I (with_stage1=False); only refine and "
                            "generate(stages='stage2') run")
        cfg = self._config(dict(seed=seed, frames=frames, height=height, width=width, **overrides))
        return pipeline.generate(cfg, image, prompt, _output(out, crf, png_dir, stage1_out), components=self.components,
                                 progress=progress, work=work, cancel=cancel, keep_frames=keep_frames, stages=stages,
                                 force=self.force)

    def refine(self, image: ImageSource, motion: MotionSource, prompt: str = "", *, seed: int | None = None,
               frames: int | None = None, height: int | None = None, width: int | None = None,
               out: str | Path | None = None, crf: int = DEFAULT_CRF, png_dir: str | Path | None = None,
               progress: Progress | None = None, cancel: CancelCheck | None = None,
               work: WorkOptions = pipeline.DEFAULT_WORK, keep_frames: bool = True, **overrides) -> Result:
        """Stage II alone: `motion` (a video path or a list of frames) gives the motion at low resolution,
        `image` the full-resolution first frame. `frames=None`: the longest 4k+1 prefix of the motion."""
        cfg = self._config(dict(seed=seed, height=height, width=width, **overrides))
        return pipeline.refine(cfg, image, motion, prompt, _output(out, crf, png_dir), frames=frames,
                               components=self.components, progress=progress, work=work, cancel=cancel,
                               keep_frames=keep_frames, force=self.force)


def _output(out: str | Path | None, crf: int, png_dir: str | Path | None, stage1: str | Path | None = None) -> Output:
    path = lambda p: None if p is None else Path(p)  # noqa: E731
    return Output(path(out), crf, path(png_dir), path(stage1))
