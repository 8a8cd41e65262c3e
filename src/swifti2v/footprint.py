"""What a run needs, from the model configs alone (no weights, no GPU): the memory predictor.

Weights per component and memory mode (bf16, fp8 storage, block streaming; models/placement.py), the
activation peak of each stage's largest DiT call traced on the meta device (models/counting.py), the VAEs'
streaming caches and working sets, and from those the peak accelerator memory per memory mode.
`--memory-mode auto` (memory.py) picks a mode from `predicted_peaks`; `swifti2v bench cost` (bench/cost.py)
reports the same numbers with FLOPs and predicted seconds beside them.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable

import torch

from swifti2v.config import QUANTS, RunConfig, stage1_size, validate
from swifti2v.errors import UserError
from swifti2v.models import specs
from swifti2v.models.components import IN_CODE, concat_checkpoint_dir
from swifti2v.models.counting import DiTCall, measured_flops, trace_peak, tracing
from swifti2v.models.modulation import frame_modulated_forward
from swifti2v.models.placement import PLACEMENTS
from swifti2v.models.vae import WanVAE, _tiles
from swifti2v.plan import stage1_windows, stage2_plan
from swifti2v.presets import resolve

GIB = 2**30
BF16 = torch.bfloat16
META = torch.device("meta")


def _dit_config(source: str, stage: str) -> dict:
    if source in IN_CODE:
        from swifti2v.models import debug

        if stage == "stage1":
            return dict(debug.tiny_stage1_transformer().config)
        build = debug.tiny_stage2_transformer if source == "debug-random" else debug.bench_stage2_transformer
        return dict(build().config)
    return specs.transformer_config(resolve(source))


def _vae_config(source: str, stage: str) -> dict | None:
    """None for a fixed codec (no weights, ~no cost)."""
    if source in IN_CODE:
        from swifti2v.models import debug

        if stage == "stage2" and source != "debug-random":
            return None
        vae = debug.tiny_vae_21() if stage == "stage1" else debug.tiny_vae_22()
        return {k: v for k, v in dict(vae.config).items() if not k.startswith("_")}
    cfg = specs.vae_config(resolve(source))
    return None if cfg.get("_class_name") == "PixelCodec" else {k: v for k, v in cfg.items()
                                                                 if not k.startswith("_")}


def model_configs(cfg: RunConfig) -> dict:
    s1, s2 = cfg.stage1, cfg.stage2
    stage2 = (specs.transformer_config(str(concat_checkpoint_dir(s2.checkpoint)), subfolder="") if s2.checkpoint
              else _dit_config(s2.model, "stage2"))
    vae2 = _vae_config(s2.model, "stage2")
    z2 = (vae2 or {}).get("z_dim") or stage2.get("out_channels") or stage2["in_channels"]
    if s2.mode == "concat" and stage2["in_channels"] == z2:
        stage2 = {**stage2, "in_channels": 2 * z2}  # widened refiner
    return {"stage1": _dit_config(s1.model, "stage1"), "stage2": stage2,
            "vae1": _vae_config(s1.model, "stage1"), "vae2": vae2,
            **_encoder_configs(s1.model)}


def _encoder_configs(source: str) -> dict:
    """The text encoder's and CLIP's configs: a folder's (or the Hub cache's) own, else umt5-xxl's and ViT-H/14's
    (a Wan Hub id not downloaded yet); none for the models built in code or bundled (~no weights)."""
    if source in IN_CODE or source.startswith("bundled:"):
        return {"text": None, "clip": None}
    out = {}
    for key, file, default in (("text", "text_encoder/config.json", specs.UMT5_XXL),
                               ("clip", "image_encoder/config.json", specs.CLIP_VIT_H14)):
        path = specs.local_config(resolve(source), file)
        out[key] = json.loads(path.read_text()) if path is not None else default
    return out


def _inputs(model, call: DiTCall):
    c = model.config
    x = torch.empty(1, c.in_channels, call.frames, call.height, call.width, device=META, dtype=BF16)
    text = torch.empty(1, call.text_tokens, c.text_dim, device=META, dtype=BF16)
    image = (torch.empty(1, call.image_tokens, c.image_dim, device=META, dtype=BF16)
             if call.image_tokens and c.image_dim else None)
    return x, text, image


def dit_memory(cfg: dict, call: DiTCall, per_token: bool = True) -> dict:
    """Activation peak (GiB) of one call traced on meta: per-frame modulation, and (`per_token`) what
    diffusers' per-token modulation would add. The blocks are alike and run one after the other, each one's
    temporaries freed before the next: the peak is the same with two blocks as with forty, so two are traced
    (tests/unit/test_cost.py checks it against the whole model), once per config and call."""
    key = (json.dumps(cfg, sort_keys=True), call, per_token)
    if key not in _DIT_TRACES:
        _DIT_TRACES[key] = _dit_memory({**cfg, "num_layers": min(cfg["num_layers"], 2)}, call, per_token)
    return dict(_DIT_TRACES[key])


def _dit_memory(cfg: dict, call: DiTCall, per_token: bool) -> dict:
    model = specs.meta_transformer(cfg)
    x, text, image = _inputs(model, call)
    frame_t = torch.zeros(1, call.frames, device=META)

    def stock(timestep):
        return lambda: model(hidden_states=x, timestep=timestep, encoder_hidden_states=text,
                             encoder_hidden_states_image=image, return_dict=False)

    tokens = call.tokens(cfg)
    if call.mixed_timesteps:
        per_frame = trace_peak(lambda: frame_modulated_forward(model, x, frame_t, text, image))
        per_token = trace_peak(stock(torch.zeros(1, tokens, device=META))) if per_token else per_frame
    else:
        per_frame = per_token = trace_peak(stock(torch.zeros(1, device=META)))
    heads = cfg["num_attention_heads"]
    return {"activations_gib": per_frame / GIB, "per_token_modulation_gib": (per_token - per_frame) / GIB,
            "attention_workspace_gib": heads * tokens * 4 / GIB,  # flash: fp32 log-sum-exp per row and head
            "math_attention_scores_gib": heads * tokens * tokens * 2 / GIB, "input_gib": x.nbytes / GIB}


def vae_trace(vae_cfg: dict, coder: str, window: Callable[[int], torch.Tensor], blocks: int,
              flops: bool = True) -> dict:
    """One streaming VAE coder ("encoder"/"decoder") of a meta VAE (bf16) over `window(i)` inputs: FLOPs of
    the whole clip (first window + blocks-1 later ones; 0 without `flops`), the causal cache alive after two
    windows, and the peak while a third runs with it. Memory alone does not depend on `blocks`: it is traced
    once per VAE and window shapes."""
    key = (json.dumps(vae_cfg, sort_keys=True), coder, *(tuple(window(i).shape) for i in range(3)))
    if not flops and key in _MEMORY_TRACES:
        return _MEMORY_TRACES[key]
    vae = WanVAE(specs.meta_vae(vae_cfg, BF16))
    first = two = 0
    if flops:
        first = measured_flops(lambda: getattr(vae, coder)()(window(0)))
        run = getattr(vae, coder)()
        two = measured_flops(lambda: [run(window(i)) for i in range(2)])
    run = getattr(vae, coder)()
    with tracing() as tracker:
        for i in range(2):
            run(window(i))  # the output is dropped at once: what stays alive is the cache
        cache = tracker.live
        tracker.peak = cache
        run(window(2))
    out = {"flops": first + (blocks - 1) * (two - first), "cache": cache, "peak": tracker.peak}
    if not flops:
        _MEMORY_TRACES[key] = out
    return out


_DIT_TRACES: dict[tuple, dict] = {}  # dit_memory's results, by DiT config and call
_MEMORY_TRACES: dict[tuple, dict] = {}  # vae_trace's memory-only results, by VAE config and window shapes


def vae_rows(cfg: RunConfig, models: dict, flops: bool = True) -> dict:
    """Stage I decode and Stage II encode (the hybrid reference), Stage II decode in each memory mode;
    `flops=False`: memory only (twice as fast)."""
    v = cfg.video
    blocks, (low_h, low_w) = v.num_blocks, stage1_size(v, cfg.stage1)
    out = {}
    if models["vae1"] is not None:
        s, z = models["vae1"].get("scale_factor_spatial", 8), models["vae1"].get("z_dim", 16)
        t = vae_trace(models["vae1"], "decoder",
                       lambda i: torch.empty(1, z, 1, low_h // s, low_w // s, device=META), blocks, flops)
        out["stage1_decode"] = {"tflop": t["flops"] / 1e12, "peak_gib": t["peak"] / GIB}
    if models["vae2"] is not None:
        t = vae_trace(models["vae2"], "encoder",
                       lambda i: torch.empty(1, 3, 1 if i == 0 else 4, v.height, v.width, device=META), blocks,
                       flops)
        out["reference_encode"] = {"tflop": t["flops"] / 1e12, "peak_gib": t["peak"] / GIB}
        traces = {}  # modes decoding in the same tiles share one trace
        for mode, p in PLACEMENTS.items():
            out[f"decode_{mode}"] = _decode_row(models["vae2"], v, blocks, p, flops, traces)
    return out


def _decode_row(vae_cfg: dict, v, blocks: int, p, flops: bool = True, traces: dict | None = None) -> dict:
    """Stage II decode as a memory mode runs it: whole frames or tiles; as segments finish (every tile's
    causal cache alive between segments) or tile-major at the end (one tile's cache alive). `traces`: the
    largest tile's trace by its shape, shared between modes."""
    s, z = vae_cfg.get("scale_factor_spatial", 8), vae_cfg.get("z_dim", 16)
    h, w = v.height // s, v.width // s
    tiles = _tiles(h, w, p.decode_tile or max(h, w), p.tile_overlap)
    area = [(ys[1] - ys[0]) * (xs[1] - xs[0]) for ys, xs, _ in tiles]
    (y0, y1), (x0, x1), _ = tiles[area.index(max(area))]
    traces = {} if traces is None else traces
    if (y1 - y0, x1 - x0) not in traces:
        traces[y1 - y0, x1 - x0] = vae_trace(vae_cfg, "decoder",
                                             lambda i: torch.empty(1, z, 1, y1 - y0, x1 - x0, device=META), blocks,
                                             flops)
    t = traces[y1 - y0, x1 - x0]
    total = t["flops"] * sum(area) / max(area)  # every tile, scaled from the largest
    caches = t["cache"] * (len(tiles) if p.decode_order == "segment" else 1)  # alive at once
    peak = caches + t["peak"] - t["cache"]  # + one tile's working set
    return {"tflop": total / 1e12, "peak_gib": peak / GIB, "cache_gib": caches / GIB, "tiles": len(tiles),
            "order": p.decode_order}


def bytes_per_weight(quant: str) -> float:
    """Bytes per quantized weight: torchao int8 / fp8 (1 byte + a per-row scale, counted apart), a GGUF type's
    block bytes over its block size (the `gguf` package's table: Q8_0 8.5 bits, Q4_K 4.5 bits)."""
    if quant == "none":
        return 2.0
    if quant in QUANTS:
        return 1.0
    try:
        import gguf
    except ImportError:
        raise UserError(f"GGUF type {quant} needs the gguf package: pip install 'swifti2v[quant]'") from None
    if quant not in gguf.GGMLQuantizationType.__members__:
        raise UserError(f"quant {quant!r} is unknown; use none, int8, fp8 or a GGUF type (Q8_0, Q6_K, Q5_K, Q4_K, "
                        "Q4_0, Q3_K, Q2_K, ...)")
    block, size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType[quant]]
    return size / block


def quantized_gib(model: torch.nn.Module, quant: str) -> dict[str, float]:
    """A meta DiT's weights stored as `quant` (models/quant.py): the blocks' linear weights quantized, the
    rest bf16; whole, one block, resident when streamed, and the de-quantization workspace (the largest
    weight in bf16: GGUF and int8 weights are de-quantized layer by layer as each runs)."""
    per_weight = bytes_per_weight(quant)

    def size(module: torch.nn.Module, prefix: str) -> float:
        total = 0.0
        for name, sub in module.named_modules(prefix=prefix):
            if isinstance(sub, torch.nn.Linear) and name.startswith("blocks."):
                total += sub.weight.numel() * per_weight + (4 * sub.out_features if quant in QUANTS else 0)
                total += 0 if sub.bias is None else sub.bias.numel() * 2
            else:
                total += sum(p.numel() * 2 for p in sub.parameters(recurse=False))
        return total

    whole, block = size(model, ""), size(model.blocks[0], "blocks.0")
    largest = max(m.weight.numel() for m in model.blocks[0].modules() if isinstance(m, torch.nn.Linear))
    return {"gib": whole / GIB, "block_gib": block / GIB,
            "streamed_gib": (whole - (len(model.blocks) - 2) * block) / GIB,
            "workspace_gib": 0.0 if quant in ("none", "fp8") else largest * 2 / GIB}


def weights(models: dict, storage: dict[str, str] | None = None) -> dict[str, dict[str, float]]:
    """GiB per component: bf16 as loaded, fp8 storage, and what block streaming keeps resident; with
    `storage` ({"stage1": "Q4_K", ...}), each DiT quantized that way too (under "quant")."""
    out = {}
    for name in ("stage1", "stage2"):
        model = specs.meta_transformer(models[name])
        bf16 = specs.param_bytes(model)
        block = specs.param_bytes(model.blocks[0])
        quant = (storage or {}).get(name, "none")
        quantized = quantized_gib(model, quant) if quant != "none" else None
        model.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=BF16)
        fp8 = specs.param_bytes(model)
        fp8_block = specs.param_bytes(model.blocks[0])
        streamed = fp8 - len(model.blocks) * fp8_block + 2 * fp8_block  # the rest + current and prefetched
        out[name] = {"params_b": specs.param_count(model) / 1e9, "bf16": bf16 / GIB, "fp8": fp8 / GIB,
                     "fp8_streamed": streamed / GIB, "block_bf16": block / GIB, "storage": quant,
                     "quant": quantized}
    for name in ("vae1", "vae2"):
        cfg = models[name]
        out[name] = {"bf16": specs.param_bytes(specs.meta_vae(cfg, BF16)) / GIB if cfg is not None else 0.0}
    out["text"], out["clip"] = {"bf16": 0.0}, {"fp32": 0.0}
    if models["text"] is not None:
        from transformers import CLIPVisionConfig, CLIPVisionModel, UMT5Config, UMT5EncoderModel

        with torch.device("meta"):
            text = UMT5EncoderModel(UMT5Config.from_dict(models["text"]))
            clip = CLIPVisionModel(CLIPVisionConfig.from_dict(models["clip"]))
        out["text"] = {"bf16": specs.param_count(text) * 2 / GIB, "params_b": specs.param_count(text) / 1e9}
        out["clip"] = {"fp32": specs.param_count(clip) * 4 / GIB if models["stage1"].get("image_dim") else 0.0}
    return out


def mode_peaks(rows: dict, vae: dict, w: dict, latents_gib: float) -> dict[str, dict[str, float]]:
    """Predicted peak accelerator memory (GiB) per stage and mode: resident weights + working set.
    The CUDA context and allocator slack (~0.5-1 GiB) are not included."""
    text, clip = w["text"]["bf16"], w["clip"]["fp32"]
    v1, v2 = w["vae1"]["bf16"], w["vae2"]["bf16"]
    s1, s2 = rows["stage1"], rows["stage2"]
    reference = vae.get("stage1_decode", {}).get("peak_gib", 0.0) + vae.get("reference_encode", {}).get(
        "peak_gib", 0.0)
    out = {}
    for mode, p in PLACEMENTS.items():
        d1, d2 = (_dit_gib(w[stage], stage in p.fp8, stage in p.streamed) for stage in ("stage1", "stage2"))
        s1 = {**s1, "activations_gib": rows["stage1"]["activations_gib"] + _workspace(w["stage1"])}
        s2 = {**s2, "activations_gib": rows["stage2"]["activations_gib"] + _workspace(w["stage2"])}
        decode = vae.get(f"decode_{mode}", {"peak_gib": 0.0, "cache_gib": 0.0, "order": "tile"})
        always = (text if not p.text_on_cpu else 0.0) + (0.0 if p.offload_idle else clip + d1 + v1 + d2 + v2)
        stage1 = always + (clip + d1 + v1 if p.offload_idle else 0.0) + s1["activations_gib"]
        refer = always + (v1 + v2 if p.offload_idle else 0.0) + reference + latents_gib
        stage2_weights = always + (d2 + v2 if p.offload_idle else 0.0) + latents_gib
        if decode["order"] == "segment":  # caches alive while the DiT runs; then one tile's working set
            stage2 = stage2_weights + decode["cache_gib"] + max(s2["activations_gib"],
                                                                 decode["peak_gib"] - decode["cache_gib"])
        else:
            stage2 = stage2_weights + max(s2["activations_gib"], decode["peak_gib"])
        out[mode] = {"stage1": stage1, "reference": refer, "stage2": stage2,
                     "peak": max(stage1, refer, stage2)}
    return out


def host_peaks(rows: dict, vae: dict, w: dict, latents_gib: float, scale: float) -> dict[str, float]:
    """A CPU run: the host's memory holds every model for the whole run (the memory modes move models between
    CPU memory and the CPU itself) plus the working set of the step running, decoded in tiles as segments
    finish; `scale`: the run dtype's bytes over bf16's (2 for fp32), on weights and activations alike."""
    models = (w["text"]["bf16"] + w["clip"]["fp32"] + w["vae1"]["bf16"] + w["vae2"]["bf16"]
              + sum(_dit_gib(w[stage], False, False) for stage in ("stage1", "stage2")))
    reference = vae.get("stage1_decode", {}).get("peak_gib", 0.0) + vae.get("reference_encode", {}).get("peak_gib", 0.0)
    decode = vae.get("decode_balanced", {"peak_gib": 0.0, "cache_gib": 0.0})
    act1 = rows["stage1"]["activations_gib"] + _workspace(w["stage1"])
    act2 = rows["stage2"]["activations_gib"] + _workspace(w["stage2"])
    out = {"stage1": models + act1, "reference": models + reference + latents_gib,
           "stage2": models + latents_gib + decode["cache_gib"] + max(act2, decode["peak_gib"] - decode["cache_gib"])}
    out = {k: v * scale for k, v in out.items()}
    return {**out, "peak": max(out.values()), "models": models * scale}


def _dit_gib(w: dict, fp8: bool, streamed: bool) -> float:
    """A DiT's resident GiB: quantized (--quant, GGUF) as stored; else bf16, or fp8 where the mode stores it."""
    if w.get("quant") is not None:
        return w["quant"]["streamed_gib" if streamed else "gib"]
    return w["fp8_streamed" if streamed else "fp8" if fp8 else "bf16"]


def _workspace(w: dict) -> float:
    return 0.0 if w.get("quant") is None else w["quant"]["workspace_gib"]


def largest_call(cfg: dict, calls: list[tuple[DiTCall, int]]) -> DiTCall:
    return max((call for call, _ in calls), key=lambda k: k.tokens(cfg))


def largest_call_memory(cfg: dict, calls: list[tuple[DiTCall, int]], per_token: bool = True) -> dict:
    """A stage made of DiT calls [(call, times)]: the memory of its largest call."""
    return dit_memory(cfg, largest_call(cfg, calls), per_token)


def stage_calls(cfg: RunConfig, models: dict, plan) -> tuple[list, list]:
    v, s1, s2 = cfg.video, cfg.stage1, cfg.stage2
    low_h, low_w = stage1_size(v, s1)
    g1, g2 = s1.geometry, s2.geometry
    image = specs.CLIP_TOKENS if models["stage1"].get("image_dim") else 0
    stage1 = [(DiTCall((frames - 1) // 4 + 1, low_h // g1.vae_spatial, low_w // g1.vae_spatial, image_tokens=image),
               s1.schedule.steps) for frames in stage1_windows(v.frames, s1.window, s1.extend)]  # one call per window
    h2, w2 = v.height // g2.vae_spatial, v.width // g2.vae_spatial
    stage2 = [(DiTCall(len(seg.positions), h2, w2, mixed_timesteps=True), s2.schedule.steps) for seg in plan]
    return stage1, stage2


@functools.lru_cache(maxsize=64)  # a frozen config: each run checks its own before it starts
def predicted_peaks(cfg: RunConfig, host_scale: float | None = None) -> dict[str, dict[str, float]]:
    """Predicted peak accelerator memory (GiB) per memory mode for this run (`--memory-mode auto`); with
    `host_scale`, also the host's for a CPU run ("host", see host_peaks)."""
    cfg = validate(cfg)
    models = model_configs(cfg)
    check_positions(cfg, models)
    stage1_calls, stage2_calls = stage_calls(cfg, models, stage2_plan(cfg.stage2, cfg.video.num_blocks))
    rows = {"stage1": largest_call_memory(models["stage1"], stage1_calls, per_token=False),
            "stage2": largest_call_memory(models["stage2"], stage2_calls, per_token=False)}
    vae, w, latents = vae_rows(cfg, models, flops=False), weights(models, run_storage(cfg)), latents_gib(cfg, models)
    peaks = mode_peaks(rows, vae, w, latents)
    if host_scale is not None:
        peaks["host"] = host_peaks(rows, vae, w, latents, host_scale)
    return peaks


def check_positions(cfg: RunConfig, models: dict) -> None:
    """Each DiT's rotary position table covers the latent grid: past it the model has no positions at all."""
    v = cfg.video
    for name, key, stage, (h, w) in (("Stage I", "stage1", cfg.stage1, stage1_size(v, cfg.stage1)),
                                     ("Stage II", "stage2", cfg.stage2, (v.height, v.width))):
        longest, g = models[key].get("rope_max_seq_len", 1024), stage.geometry
        upscale = stage.downscale if key == "stage1" else 1  # Stage I runs at 1/downscale of the target
        cell = g.vae_spatial * g.patch[2]
        cells = {"rows": (h // g.pixel_multiple, f"--height {longest * g.pixel_multiple * upscale} or less"),
                 "columns": (w // cell, f"--width {longest * cell * upscale} or less"),
                 "latent frames": (v.num_blocks, f"--frames {(longest - 1) * 4 + 1} or fewer")}
        for axis, (n, fix) in cells.items():
            if n > longest:
                raise UserError(f"{name}'s DiT ({cfg.preset}) has positions for {longest} latent {axis}; this run "
                                f"needs {n}: use {fix}")


def run_storage(cfg: RunConfig) -> dict[str, str]:
    """How the run stores each DiT: a GGUF file's main type, else --quant ("none": bf16, fp8 in low mode)."""
    from swifti2v.models.quant import read_gguf

    s1 = read_gguf(cfg.stage1.weights[0].path, "--stage1-weights").quant if cfg.stage1.weights else cfg.quant
    s2 = read_gguf(cfg.stage2.weights, "--stage2-weights").quant if cfg.stage2.weights else cfg.quant
    return {"stage1": s1, "stage2": s2}


def latents_gib(cfg: RunConfig, models: dict) -> float:
    """z_ref, the noise and the output latents of the whole clip, fp32."""
    v, s2 = cfg.video, cfg.stage2.geometry.vae_spatial
    z = (models["vae2"] or {}).get("z_dim", 16) if models["vae2"] is not None else models["stage2"]["out_channels"]
    return 3 * z * v.num_blocks * (v.height // s2) * (v.width // s2) * 4 / GIB
