"""`swifti2v bench cost`: what a run costs, from the model configs alone (no weights, no GPU).

Per stage and per DiT call: tokens; FLOPs (closed form from the config, split linear / attention,
bench/counting.py); memory: weights, activations (traced on meta with per-frame modulation), what
diffusers' per-token modulation would add, the attention workspace (flash-style kernels keep per-row
statistics; the L x L score matrix a math kernel would need is shown for scale), the VAE's. Rows: the
run's CSG Stage II, end-to-end Stage II (`--no-csg`), and an end-to-end baseline that runs the Stage I
model at the target size with `baseline_steps` steps and classifier-free guidance. Peak accelerator
memory per memory mode (models/placement.py). Seconds are a prediction: FLOPs / (peak x efficiency).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace

import torch

from swifti2v.bench.counting import DiTCall, dit_flops, measured_flops, trace_peak, tracing
from swifti2v.config import MEMORY_MODES, RunConfig, stage1_size, validate
from swifti2v.models import specs
from swifti2v.models.components import IN_CODE
from swifti2v.models.modulation import frame_modulated_forward
from swifti2v.models.placement import PLACEMENTS
from swifti2v.models.tiny import resolve
from swifti2v.models.vae import WanVAE, _tiles
from swifti2v.plan import stage2_plan
from swifti2v.sampling.csg import whole_clip_plan

GIB = 2**30
BF16 = torch.bfloat16
META = torch.device("meta")


@dataclass(frozen=True)
class CostConfig:
    preset: str = "wan-2k-refine"
    frames: int | None = None  # default: the preset's
    peak_tflops: float = 790.0  # H200 dense bf16 matmul, measured (DESIGN.md §4)
    efficiency: float = 0.45  # assumed share of the peak sustained by the whole run (prediction only)
    baseline_steps: int = 50
    prompt_tokens: int = 64
    gpus: tuple[int, ...] = ()  # context-parallel degrees to predict (empty: none)
    parallel: str = "ulysses"
    link_gbps: float = 450.0  # GB/s each GPU sends (NVLink 4 on H100/H200: 900 GB/s both ways)


# ---------------------------------------------------------------- model configs of a preset


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
    stage2 = (specs.transformer_config(s2.checkpoint, subfolder="") if s2.checkpoint
              else _dit_config(s2.model, "stage2"))
    vae2 = _vae_config(s2.model, "stage2")
    z2 = (vae2 or {}).get("z_dim") or stage2.get("out_channels") or stage2["in_channels"]
    if s2.mode == "concat" and stage2["in_channels"] == z2:
        stage2 = {**stage2, "in_channels": 2 * z2}  # widened refiner
    return {"stage1": _dit_config(s1.model, "stage1"), "stage2": stage2,
            "vae1": _vae_config(s1.model, "stage1"), "vae2": vae2,
            "full_size_text": s1.model not in IN_CODE and not s1.model.startswith("bundled:")}


# ---------------------------------------------------------------- DiT calls


def _inputs(model, call: DiTCall):
    c = model.config
    x = torch.empty(1, c.in_channels, call.frames, call.height, call.width, device=META, dtype=BF16)
    text = torch.empty(1, call.text_tokens, c.text_dim, device=META, dtype=BF16)
    image = (torch.empty(1, call.image_tokens, c.image_dim, device=META, dtype=BF16)
             if call.image_tokens and c.image_dim else None)
    return x, text, image


def dit_memory(cfg: dict, call: DiTCall) -> dict:
    """Activation peak (GiB) of one call traced on meta: per-frame modulation, and what per-token adds."""
    model = specs.meta_transformer(cfg)
    x, text, image = _inputs(model, call)
    frame_t = torch.zeros(1, call.frames, device=META)

    def stock(timestep):
        return lambda: model(hidden_states=x, timestep=timestep, encoder_hidden_states=text,
                             encoder_hidden_states_image=image, return_dict=False)

    tokens = call.tokens(cfg)
    if call.mixed_timesteps:
        per_frame = trace_peak(lambda: frame_modulated_forward(model, x, frame_t, text, image))
        per_token = trace_peak(stock(torch.zeros(1, tokens, device=META)))
    else:
        per_frame = per_token = trace_peak(stock(torch.zeros(1, device=META)))
    heads = cfg["num_attention_heads"]
    return {"activations_gib": per_frame / GIB, "per_token_modulation_gib": (per_token - per_frame) / GIB,
            "attention_workspace_gib": heads * tokens * 4 / GIB,  # flash: fp32 log-sum-exp per row and head
            "math_attention_scores_gib": heads * tokens * tokens * 2 / GIB, "input_gib": x.nbytes / GIB}


def dit_row(name: str, cfg: dict, calls: list[tuple[DiTCall, int]], c: CostConfig) -> dict:
    """A stage made of DiT calls [(call, times)]: FLOPs summed, memory of its largest call."""
    flops = {"linear": 0.0, "attention": 0.0, "total": 0.0}
    for call, times in calls:
        for k, v in dit_flops(cfg, call).items():
            flops[k] += v * times
    largest = max((call for call, _ in calls), key=lambda k: k.tokens(cfg))
    return {"stage": name, "calls": sum(t for _, t in calls), "tokens_per_call": largest.tokens(cfg),
            "tflop": flops["total"] / 1e12, "tflop_linear": flops["linear"] / 1e12,
            "tflop_attention": flops["attention"] / 1e12, "seconds": _seconds(flops["total"], c),
            **dit_memory(cfg, largest)}


def _seconds(flops: float, c: CostConfig) -> float:
    return flops / (c.peak_tflops * 1e12 * c.efficiency)


# ---------------------------------------------------------------- VAEs


def _vae_trace(vae_cfg: dict, coder: str, window: Callable[[int], torch.Tensor], blocks: int) -> dict:
    """One streaming VAE coder ("encoder"/"decoder") of a meta VAE (bf16) over `window(i)` inputs: FLOPs of
    the whole clip (first window + blocks-1 later ones), the causal cache alive after two windows, and
    the peak while a third runs with it."""
    vae = WanVAE(specs.meta_vae(vae_cfg, BF16))
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
    return {"flops": first + (blocks - 1) * (two - first), "cache": cache, "peak": tracker.peak}


def vae_rows(cfg: RunConfig, models: dict) -> dict:
    """Stage I decode and Stage II encode (the hybrid reference), Stage II decode in each memory mode."""
    v = cfg.video
    blocks, (low_h, low_w) = v.num_blocks, stage1_size(v, cfg.stage1)
    out = {}
    if models["vae1"] is not None:
        s, z = models["vae1"].get("scale_factor_spatial", 8), models["vae1"].get("z_dim", 16)
        t = _vae_trace(models["vae1"], "decoder",
                       lambda i: torch.empty(1, z, 1, low_h // s, low_w // s, device=META), blocks)
        out["stage1_decode"] = {"tflop": t["flops"] / 1e12, "peak_gib": t["peak"] / GIB}
    if models["vae2"] is not None:
        t = _vae_trace(models["vae2"], "encoder",
                       lambda i: torch.empty(1, 3, 1 if i == 0 else 4, v.height, v.width, device=META), blocks)
        out["reference_encode"] = {"tflop": t["flops"] / 1e12, "peak_gib": t["peak"] / GIB}
        for mode, p in PLACEMENTS.items():
            out[f"decode_{mode}"] = _decode_row(models["vae2"], v, blocks, p)
    return out


def _decode_row(vae_cfg: dict, v, blocks: int, p) -> dict:
    """Stage II decode as a memory mode runs it: whole frames or tiles; as segments finish (every tile's
    causal cache alive between segments) or tile-major at the end (one tile's cache alive)."""
    s, z = vae_cfg.get("scale_factor_spatial", 8), vae_cfg.get("z_dim", 16)
    h, w = v.height // s, v.width // s
    tiles = _tiles(h, w, p.decode_tile or max(h, w), p.tile_overlap)
    area = [(ys[1] - ys[0]) * (xs[1] - xs[0]) for ys, xs, _ in tiles]
    (y0, y1), (x0, x1), _ = tiles[area.index(max(area))]
    t = _vae_trace(vae_cfg, "decoder", lambda i: torch.empty(1, z, 1, y1 - y0, x1 - x0, device=META), blocks)
    flops = t["flops"] * sum(area) / max(area)  # every tile, scaled from the largest
    caches = t["cache"] * (len(tiles) if p.decode_order == "segment" else 1)  # alive at once
    peak = caches + t["peak"] - t["cache"]  # + one tile's working set
    return {"tflop": flops / 1e12, "peak_gib": peak / GIB, "cache_gib": caches / GIB, "tiles": len(tiles),
            "order": p.decode_order}


# ---------------------------------------------------------------- weights


def weights(models: dict) -> dict[str, dict[str, float]]:
    """GiB per component: bf16 as loaded, fp8 storage, and what block streaming keeps resident."""
    out = {}
    for name in ("stage1", "stage2"):
        model = specs.meta_transformer(models[name])
        bf16 = specs.param_bytes(model)
        block = specs.param_bytes(model.blocks[0])
        model.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=BF16)
        fp8 = specs.param_bytes(model)
        fp8_block = specs.param_bytes(model.blocks[0])
        streamed = fp8 - len(model.blocks) * fp8_block + 2 * fp8_block  # the rest + current and prefetched
        out[name] = {"params_b": specs.param_count(model) / 1e9, "bf16": bf16 / GIB, "fp8": fp8 / GIB,
                     "fp8_streamed": streamed / GIB, "block_bf16": block / GIB}
    for name in ("vae1", "vae2"):
        cfg = models[name]
        out[name] = {"bf16": specs.param_bytes(specs.meta_vae(cfg, BF16)) / GIB if cfg is not None else 0.0}
    if models["full_size_text"]:
        from transformers import CLIPVisionConfig, CLIPVisionModel, UMT5Config, UMT5EncoderModel

        with torch.device("meta"):
            text = UMT5EncoderModel(UMT5Config(**specs.UMT5_XXL))
            clip = CLIPVisionModel(CLIPVisionConfig(**specs.CLIP_VIT_H14))
        out["text"] = {"bf16": specs.param_count(text) * 2 / GIB, "params_b": specs.param_count(text) / 1e9}
        out["clip"] = {"fp32": specs.param_count(clip) * 4 / GIB if models["stage1"].get("image_dim") else 0.0}
    else:
        out["text"], out["clip"] = {"bf16": 0.0}, {"fp32": 0.0}
    return out


# ---------------------------------------------------------------- memory modes


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
        d1 = w["stage1"]["fp8_streamed" if "stage1" in p.streamed else "fp8" if "stage1" in p.fp8 else "bf16"]
        d2 = w["stage2"]["fp8" if "stage2" in p.fp8 else "bf16"]
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


# ---------------------------------------------------------------- the whole run


def _stage_calls(cfg: RunConfig, models: dict, plan) -> tuple[list, list]:
    v, s1, s2 = cfg.video, cfg.stage1, cfg.stage2
    low_h, low_w = stage1_size(v, s1)
    g1, g2 = s1.geometry, s2.geometry
    image = specs.CLIP_TOKENS if models["stage1"].get("image_dim") else 0
    stage1 = [(DiTCall(v.num_blocks, low_h // g1.vae_spatial, low_w // g1.vae_spatial, image_tokens=image),
               s1.schedule.steps)]
    h2, w2 = v.height // g2.vae_spatial, v.width // g2.vae_spatial
    stage2 = [(DiTCall(len(seg.positions), h2, w2, mixed_timesteps=True), s2.schedule.steps) for seg in plan]
    return stage1, stage2


def predicted_peaks(cfg: RunConfig) -> dict[str, dict[str, float]]:
    """Predicted peak accelerator memory (GiB) per memory mode for this run (`--memory-mode auto`)."""
    cfg = validate(cfg)
    models = model_configs(cfg)
    stage1_calls, stage2_calls = _stage_calls(cfg, models, stage2_plan(cfg.stage2, cfg.video.num_blocks))
    c = CostConfig(preset=cfg.preset)
    rows = {"stage1": dit_row("stage1", models["stage1"], stage1_calls, c),
            "stage2": dit_row("stage2 CSG", models["stage2"], stage2_calls, c)}
    return mode_peaks(rows, vae_rows(cfg, models), weights(models), _latents_gib(cfg, models))


def _latents_gib(cfg: RunConfig, models: dict) -> float:
    """z_ref, the noise and the output latents of the whole clip, fp32."""
    v, s2 = cfg.video, cfg.stage2.geometry.vae_spatial
    z = (models["vae2"] or {}).get("z_dim", 16) if models["vae2"] is not None else models["stage2"]["out_channels"]
    return 3 * z * v.num_blocks * (v.height // s2) * (v.width // s2) * 4 / GIB


def run_cost(c: CostConfig) -> dict:
    from swifti2v.presets import get_preset

    cfg = get_preset(c.preset)
    if c.frames is not None:
        cfg = replace(cfg, video=replace(cfg.video, frames=c.frames))
    cfg = validate(cfg)
    v = cfg.video
    models = model_configs(cfg)
    csg_plan = stage2_plan(cfg.stage2, v.num_blocks)
    stage1_calls, stage2_calls = _stage_calls(cfg, models, csg_plan)
    _, e2e_calls = _stage_calls(cfg, models, whole_clip_plan(v.num_blocks))
    g1 = cfg.stage1.geometry
    baseline_call = DiTCall(v.num_blocks, v.height // g1.vae_spatial, v.width // g1.vae_spatial,
                            image_tokens=stage1_calls[0][0].image_tokens)
    rows = {
        "stage1": dit_row("stage1", models["stage1"], stage1_calls, c),
        "stage2": dit_row("stage2 CSG", models["stage2"], stage2_calls, c),
        "stage2_end_to_end": dit_row("stage2 end-to-end", models["stage2"], e2e_calls, c),
        "baseline": dit_row(f"baseline: Stage I model at {v.width}x{v.height}, {c.baseline_steps} steps, CFG",
                            models["stage1"], [(baseline_call, 2 * c.baseline_steps)], c),
    }
    vae = vae_rows(cfg, models)
    w = weights(models)
    latents_gib = _latents_gib(cfg, models)
    return {
        "config": asdict(c), "preset": cfg.preset,
        "video": {"height": v.height, "width": v.width, "frames": v.frames, "blocks": v.num_blocks},
        "rows": rows, "vae": vae, "weights": w, "latents_gib": latents_gib,
        "memory_modes": mode_peaks(rows, vae, w, latents_gib),
        "totals": _totals(rows, vae, c),
        "parallel": [parallel_row(k, models, (stage1_calls, stage2_calls), rows, vae, w, latents_gib, c)
                     for k in c.gpus],
    }


def _totals(rows: dict, vae: dict, c: CostConfig) -> dict:
    """The run as the user gets it (Stage I + reference + CSG Stage II + decode), the same with end-to-end
    Stage II, and the baseline (its own decode at the target size is left out: a lower bound)."""
    ref = vae.get("stage1_decode", {}).get("tflop", 0.0) + vae.get("reference_encode", {}).get("tflop", 0.0)
    decode = vae.get("decode_fast", {}).get("tflop", 0.0)
    ours = rows["stage1"]["tflop"] + ref + rows["stage2"]["tflop"] + decode
    e2e = rows["stage1"]["tflop"] + ref + rows["stage2_end_to_end"]["tflop"] + decode
    base = rows["baseline"]["tflop"]
    return {name: {"tflop": t, "seconds": _seconds(t * 1e12, c)}
            for name, t in (("swifti2v", ours), ("swifti2v_end_to_end_stage2", e2e), ("baseline", base))}


# ---------------------------------------------------------------- context parallel


def comm_bytes(cfg: dict, call: DiTCall, k: int, kind: str) -> float:
    """Bytes one GPU sends during one DiT call split over k GPUs (bf16)."""
    if k == 1:
        return 0.0
    d, layers = cfg["num_attention_heads"] * cfg["attention_head_dim"], cfg["num_layers"]
    p = cfg["patch_size"][0] * cfg["patch_size"][1] * cfg["patch_size"][2]
    local = call.tokens(cfg) / k  # this GPU's tokens
    # Ulysses: q, k, v to head shards and the output back, (k-1)/k of each local tensor leaves this GPU;
    # ring: this GPU's k and v passed on k-1 times
    per_layer = 4 * local * d * 2 * (k - 1) / k if kind == "ulysses" else 2 * local * d * 2 * (k - 1)
    gather = (k - 1) * local * (cfg.get("out_channels") or cfg["in_channels"]) * p * 2  # output all-gather
    return layers * per_layer + gather


def parallel_fits(cfg: dict, k: int, kind: str) -> bool:
    """Ulysses splits the attention heads: k must divide them (check_parallel refuses the rest)."""
    return kind != "ulysses" or cfg["num_attention_heads"] % k == 0


def parallel_row(k: int, models: dict, calls: tuple[list, list], rows: dict, vae: dict, w: dict,
                 latents_gib: float, c: CostConfig) -> dict:
    """One clip on k GPUs: per-stage compute and communication seconds, bytes per window, per-GPU peak."""
    link = c.link_gbps * 1e9
    out: dict = {"gpus": k, "kind": c.parallel, "link_gbps": c.link_gbps}
    for name, stage_calls in zip(("stage1", "stage2"), calls, strict=True):
        cfg = models[name]
        if not parallel_fits(cfg, k, c.parallel):
            return {**out, "fits": False, "why": f"{name}: {cfg['num_attention_heads']} heads not divisible by {k}"}
        flops = sum(dit_flops(cfg, call)["total"] * n for call, n in stage_calls)
        sent = sum(comm_bytes(cfg, call, k, c.parallel) * n for call, n in stage_calls)
        largest = max((call for call, _ in stage_calls), key=lambda call: call.tokens(cfg))
        out[name] = {"compute_s": _seconds(flops / k, c), "comm_s": sent / link,
                     "window_comm_gib": comm_bytes(cfg, largest, k, c.parallel) / GIB}
        out[name]["seconds"] = out[name]["compute_s"] + out[name]["comm_s"]
    vae = _spread_decode(vae, k)
    serial = sum(vae.get(key, {}).get("tflop", 0.0) for key in ("stage1_decode", "reference_encode"))
    out["vae_s"] = _seconds((serial + vae.get("decode_balanced", {}).get("tflop", 0.0)) * 1e12, c)
    out["seconds"] = out["stage1"]["seconds"] + out["stage2"]["seconds"] + out["vae_s"]
    split = {name: {**row, "activations_gib": (row["activations_gib"] + row["per_token_modulation_gib"]) / k}
             if k > 1 else row for name, row in rows.items()}  # a split model runs the stock per-token forward
    peaks = mode_peaks(split, vae, w, latents_gib)
    return {**out, "fits": True, "peak_gib": {mode: peaks[mode]["peak"] for mode in ("fast", "balanced")}}


def _spread_decode(vae: dict, k: int) -> dict:
    """The tiled (balanced) Stage II decode with its tiles spread over k processes: each decodes and keeps
    the caches of every k-th tile (models/parallel.decode_shard); the per-process time is the largest share."""
    row = vae.get("decode_balanced")
    if row is None or k == 1:
        return vae
    share = math.ceil(row["tiles"] / k) / row["tiles"]
    cache = row["cache_gib"] * share
    return {**vae, "decode_balanced": {**row, "tflop": row["tflop"] * share, "cache_gib": cache,
                                       "peak_gib": cache + row["peak_gib"] - row["cache_gib"]}}


def scaling_summary(rows: list[dict]) -> str:
    """Where adding GPUs stops paying: the first k below 50% efficiency, or not 25% faster than k/2."""
    fit = {r["gpus"]: r for r in rows if r["fits"]}
    if 1 not in fit:
        return "no 1-GPU row to compare with"
    for k in sorted(fit):
        efficiency = fit[1]["seconds"] / fit[k]["seconds"] / k
        slow = k // 2 in fit and k > 1 and fit[k]["seconds"] > 0.75 * fit[k // 2]["seconds"]
        if efficiency < 0.5 or slow:
            return (f"scaling stops paying at {k} GPUs: {fit[k]['seconds']:.1f} s per clip, {efficiency:.0%} "
                    f"efficiency" + (f", less than 25% faster than {k // 2}" if slow else ""))
    return f"scaling still pays at {max(fit)} GPUs (efficiency >= 50%, each doubling >= 25% faster)"


def parallel_markdown(r: dict) -> list[str]:
    rows = r["parallel"]
    if not rows:
        return []
    base = next((x["seconds"] for x in rows if x["gpus"] == 1 and x["fits"]), None)
    first = rows[0]
    lines = ["", f"One clip on K GPUs, `--parallel {first['kind']}`, links at {first['link_gbps']:.0f} GB/s per GPU "
             "(communication not overlapped; the tiled decode's tiles spread over the GPUs, the other VAE "
             "work and the text encoder on one):", "",
             "| GPUs | Stage I compute s | Stage I comm s | Stage II compute s | Stage II comm s | comm per Stage II "
             "window GiB/GPU | VAE s | clip s | speed-up | efficiency | peak GiB/GPU fast / balanced |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for x in rows:
        if not x["fits"]:
            lines.append(f"| {x['gpus']} | {x['why']} | | | | | | | | | |")
            continue
        s1, s2 = x["stage1"], x["stage2"]
        speed = f"{base / x['seconds']:.2f}×" if base else ""
        eff = f"{base / x['seconds'] / x['gpus']:.0%}" if base else ""
        lines.append(f"| {x['gpus']} | {_n(s1['compute_s'])} | {_n(s1['comm_s'])} | {_n(s2['compute_s'])} | "
                     f"{_n(s2['comm_s'])} | {_n(s2['window_comm_gib'])} | {_n(x['vae_s'])} | {_n(x['seconds'])} | "
                     f"{speed} | {eff} | {_n(x['peak_gib']['fast'])} / {_n(x['peak_gib']['balanced'])} |")
    return [*lines, "", scaling_summary(rows) + "."]


def _n(x: float) -> str:
    """Readable at every scale: 14,016.5 / 2.3 / 0.00417."""
    return f"{x:,.1f}" if abs(x) >= 1 or x == 0 else f"{x:.3g}"


def to_markdown(r: dict) -> str:
    v, c = r["video"], r["config"]
    lines = [f"Cost model: `--preset {r['preset']}`, {v['width']}x{v['height']}x{v['frames']} "
             f"({v['blocks']} latent blocks). Seconds are a **prediction**: FLOPs / ({c['peak_tflops']:.0f} TFLOP/s "
             f"x {c['efficiency']:.2f}).", "",
             "| stage | DiT calls | tokens (largest call) | TFLOP linear + attention | TFLOP | predicted s | "
             "activations GiB | + per-token modulation GiB | math-kernel L×L scores GiB |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in r["rows"].values():
        lines.append(f"| {row['stage']} | {row['calls']} | {row['tokens_per_call']:,} | {_n(row['tflop_linear'])} + "
                     f"{_n(row['tflop_attention'])} | {_n(row['tflop'])} | {_n(row['seconds'])} | "
                     f"{_n(row['activations_gib'])} | {_n(row['per_token_modulation_gib'])} | "
                     f"{_n(row['math_attention_scores_gib'])} |")
    for name, row in r["vae"].items():
        seconds = row["tflop"] / (c["peak_tflops"] * c["efficiency"])
        lines.append(f"| VAE {name.replace('_', ' ')} | | | | {_n(row['tflop'])} | {_n(seconds)} | "
                     f"{_n(row['peak_gib'])} | | |")
    t = r["totals"]
    ours, e2e, base = t["swifti2v"], t["swifti2v_end_to_end_stage2"], t["baseline"]
    lines += ["", "| run | TFLOP | predicted s | vs swifti2v |", "|---|---|---|---|"]
    for name, row in (("swifti2v (CSG)", ours), ("swifti2v with end-to-end Stage II", e2e), ("baseline", base)):
        lines.append(f"| {name} | {_n(row['tflop'])} | {_n(row['seconds'])} | {row['tflop'] / ours['tflop']:.1f}× |")
    w = r["weights"]
    lines += ["", f"Weights: Stage I DiT {w['stage1']['params_b']:.2f} B params = {w['stage1']['bf16']:.1f} GiB bf16 / "
              f"{w['stage1']['fp8']:.1f} GiB fp8 / {w['stage1']['fp8_streamed']:.2f} GiB resident when streamed; "
              f"Stage II DiT {w['stage2']['params_b']:.2f} B = {w['stage2']['bf16']:.1f} / "
              f"{w['stage2']['fp8']:.1f} GiB; "
              f"text encoder {w['text']['bf16']:.1f} GiB; CLIP {w['clip']['fp32']:.1f} GiB (fp32); VAEs "
              f"{w['vae1']['bf16']:.2f} + {w['vae2']['bf16']:.2f} GiB; whole-clip latents {r['latents_gib']:.2f} GiB.",
              "", "| memory mode | Stage I GiB | reference GiB | Stage II + decode GiB | predicted peak GiB |",
              "|---|---|---|---|---|"]
    for mode in MEMORY_MODES:
        m = r["memory_modes"][mode]
        lines.append(f"| {mode} | {_n(m['stage1'])} | {_n(m['reference'])} | {_n(m['stage2'])} | **{_n(m['peak'])}** |")
    lines += parallel_markdown(r)
    return "\n".join(lines) + "\n"
