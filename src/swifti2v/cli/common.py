"""What every command shares: the one-line error parser, the generate/batch options, progress bars, results."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from swifti2v.config import (
    ATTENTION_BACKENDS,
    EXTENDS,
    MEMORY_MODES,
    PARALLEL_KINDS,
    QUANTS,
    SAMPLERS,
    STAGE2_MODES,
    RunConfig,
)
from swifti2v.errors import UserError
from swifti2v.media import DEFAULT_FPS
from swifti2v.outputs import DEFAULT_CRF
from swifti2v.presets import DEFAULT_PRESET, OVERRIDES, check_weights, get_preset, with_overrides

EXIT_USER_ERROR = 2


def one_line(message: str) -> str:
    """The message with its line breaks escaped, whatever a path or an argument holds."""
    return message.replace("\n", "\\n").replace("\r", "\\r")


class Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, no usage dump
        self.exit(EXIT_USER_ERROR, f"swifti2v: error: {one_line(message)} (see `{self.prog} --help`)\n")


def video_options(p: argparse.ArgumentParser, frames_help: str, stage1: bool = True) -> None:
    g = p.add_argument_group("video")
    g.add_argument("--preset", default=DEFAULT_PRESET,
                   help=f"named settings (default {DEFAULT_PRESET}); list them with `swifti2v presets`")
    g.add_argument("--height", type=int, help="output height in pixels, a multiple of 32 (default: preset's)")
    g.add_argument("--width", type=int, help="output width in pixels, a multiple of 32 (default: preset's)")
    g.add_argument("--frames", type=int, help=frames_help)
    if stage1:
        g.add_argument("--extend", choices=EXTENDS,
                       help="how Stage I makes a clip longer than its window (81 frames for Wan, 33 for tiny): "
                       "last-frame (default: each next window is an I2V run from the previous one's last frame, "
                       "colours matched; every finished window is kept for resuming) or context (overlapping windows "
                       "denoised together at every step, overlaps blended; see docs/results.md)")
    g.add_argument("--segment-blocks", type=int, metavar="M",
                   help="CSG: noisy latent blocks denoised per segment (default 3); larger than the clip = one window")
    g.add_argument("--neighbor-blocks", type=int, metavar="N",
                   help="CSG: previously generated blocks kept as clean context (default 1)")
    g.add_argument("--no-csg", action="store_true",
                   help="run Stage II over the whole clip in one window (the end-to-end baseline)")


def stage2_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("Stage II")
    g.add_argument("--mode", choices=STAGE2_MODES,
                   help="concat: trained refiner (2x input channels); refine: stock TI2V-5B, zero-shot")
    g.add_argument("--stage2", metavar="PATH",
                   help="trained concat checkpoint (a diffusers transformer folder with config.json + safetensors)")
    g.add_argument("--stage2-weights", metavar="PATH.gguf",
                   help="a GGUF file of the Stage II DiT (e.g. Wan2.2-TI2V-5B-Q8_0.gguf) in place of its safetensors "
                   "weights; kept quantized, de-quantized layer by layer (checked against the model first)")
    g.add_argument("--stage2-steps", type=int, help="Stage II denoising steps (default: preset's)")
    g.add_argument("--stage2-sampler", choices=SAMPLERS, help="Stage II solver step (default: preset's)")
    g.add_argument("--stage2-tile", type=int, metavar="PX",
                   help="show Stage II each window in overlapping spatial tiles of at most PX pixels a side, blended "
                   "(faster; the tiny preset's default is measured in docs/benchmarks.md); 0: whole frames")
    g.add_argument("--start-sigma", type=float,
                   help="noise level Stage II starts from, in (0, 1]; below 1 re-noises z_ref (refine mode)")


def run_options(p: argparse.ArgumentParser, batch: bool = False) -> None:
    """Stage II, output and run options; `batch` leaves out the per-clip output paths, --parallel and resuming."""
    stage2_options(p)
    o = p.add_argument_group("output and run")
    if not batch:
        o.add_argument("--out", required=True,
                       help="output .mp4 path; a .json with settings and timings is written beside it (checked "
                       "before anything loads)")
    o.add_argument("--crf", type=int, default=DEFAULT_CRF, help=f"H.264 quality, 0 (lossless) to 51 (default "
                   f"{DEFAULT_CRF}, visually lossless; +6 about halves the file)")
    if not batch:
        o.add_argument("--png-dir", metavar="DIR", help="also write every frame as a lossless PNG into DIR "
                       "(frame_00000.png, ...; replaced as a whole when complete)")
    o.add_argument("--fps", type=int, help=f"frame rate of the mp4 (default: preset's, {DEFAULT_FPS} for Wan presets)")
    o.add_argument("--seed", type=int, help="random seed (default 0); the same seed gives the same video")
    o.add_argument("--device", help="auto (default), cpu or cuda[:N]")
    o.add_argument("--dtype", choices=("auto", "bf16", "fp16", "fp32"),
                   help="DiT compute dtype (auto: bf16 on GPU, fp32 on CPU)")
    o.add_argument("--memory-mode", choices=("auto", *MEMORY_MODES),
                   help="auto (default): the fastest mode whose predicted peak fits the free GPU memory (balanced on "
                   "CPU); fast: everything on the GPU; balanced: text encoder on CPU, one stage on the GPU "
                   "at a time, tiled decode; low: + fp8 weights, Stage I streamed block by block, tile-by-tile "
                   "decode at the end (2K on 24 GB cards); see docs/benchmarks.md")
    o.add_argument("--quant", choices=(*QUANTS, "auto"),
                   help="store the DiTs not given as GGUF quantized, by torchao, after the LoRAs are fused: int8 "
                   "(weight-only, any device) or fp8 (fp8 weights and activations: GPUs with fp8 units, compute "
                   "capability 8.9+); default none (bf16). Combines with every --memory-mode; auto: with "
                   "--memory-mode auto, the fastest mode x storage predicted to fit (fp8, bf16, then int8)")
    o.add_argument("--attention", choices=ATTENTION_BACKENDS,
                   help="attention kernel: sdpa (default, PyTorch), flash, flash3, sage, flex (when installed)")
    o.add_argument("--compile", action="store_true", default=None,
                   help="torch.compile the DiT blocks (one graph for every CSG window; pays off on long runs)")
    o.add_argument("--force", action="store_true", help="run even when the run's predicted peak memory exceeds "
                   "what its device has free (without it such a run is refused before anything loads, naming a "
                   "setting that fits)")
    o.add_argument("-q", "--quiet", action="store_true", help="no progress bars or info logs")
    if batch:
        return
    o.add_argument("--parallel", choices=PARALLEL_KINDS, help="split every DiT call of this one clip over the "
                   "processes of `torchrun --nproc_per_node K -m swifti2v generate ...` by sequence: ulysses "
                   "(all-to-all over attention heads; K must divide the head count) or ring (K/V passed around; "
                   "needs --attention flash or sage). Rank 0 writes the video and JSON")
    w = p.add_argument_group("resuming")
    w.add_argument("--work-dir", metavar="DIR", help="where finished stages and segments are kept while the run goes "
                   "(default: .OUT.work beside the output); re-running the same command resumes from it")
    w.add_argument("--restart", action="store_true",
                   help="discard a work directory left by a different config or input instead of refusing")
    w.add_argument("--keep-work", action="store_true", help="keep the work directory after success")


def resolve_config(args: argparse.Namespace) -> RunConfig:
    """The preset with the command line's overrides applied."""
    if getattr(args, "lora_strength", None) is not None:
        raise UserError(f"--lora-strength is gone: give each LoRA its strength, --lora PATH@{args.lora_strength:g}")
    cfg = with_overrides(get_preset(args.preset), **{name: getattr(args, name, None) for name in OVERRIDES})
    if args.command in ("generate", "refine", "batch"):
        check_weights(cfg)
    return cfg


def int_list(flag: str, text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(x) for x in text.split(","))
    except ValueError:
        raise UserError(f"{flag} {text!r} must be comma-separated integers, e.g. 1,2,4") from None
    if not values or min(values) < 1:
        raise UserError(f"{flag} {text!r}: every value must be at least 1")
    return values


def write_result(out_arg: str, result, table: str, show: bool = True) -> Path:
    """OUT.json and OUT.md (atomic), and the table on stdout."""
    from swifti2v.files import atomic_write_json, atomic_write_text

    out = Path(out_arg)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out.with_suffix(".json"), result)
    atomic_write_text(out.with_suffix(".md"), table)
    if show:
        print(table, end="")
    return out


def quiet_libraries() -> None:
    """Imported only once the command line has been checked (they take seconds): a typo fails at once."""
    import logging

    # torchao, when installed, is imported by diffusers: its notices about kernels built for other GPUs and
    # diffusers' about torchao classes it no longer finds are not the user's concern either, nor diffusers'
    # note that a GGUF file's time embedder is de-quantized to fp32 (as Wan keeps it)
    for name in ("torchao", "torch.utils._pytree", "diffusers.quantizers.torchao.torchao_quantizer",
                 "diffusers.quantizers.gguf.gguf_quantizer"):
        logging.getLogger(name).setLevel(logging.ERROR)
    import transformers  # its import-time notices (e.g. about torchvision) are not the user's concern

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()  # its per-load "Loading weights" bars
    import diffusers

    diffusers.utils.logging.disable_progress_bar()  # its "Loading checkpoint shards" bars (we show our own)


def is_rank0() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


class TqdmProgress:
    """One bar per stage / segment, created on first use and closed when done."""

    def __init__(self, enabled: bool):
        self.enabled, self.bars = enabled, {}

    def __call__(self, name: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        from tqdm.auto import tqdm

        bar = self.bars.get(name)
        if bar is None:
            bar = self.bars[name] = tqdm(total=total, desc=name, leave=name.startswith("stage"), unit="step"
                                         if "step" in name or "/" in name else "seg")
        bar.update(done - bar.n)
        if done >= total > 0:
            bar.close()
            self.bars.pop(name)


def progress(args: argparse.Namespace) -> TqdmProgress:
    return TqdmProgress(enabled=not getattr(args, "quiet", False))
