"""`swifti2v bench cost`: what a run costs, from the model configs alone (no weights, no GPU).

Per stage and per DiT call: tokens; FLOPs (closed form from the config, split linear / attention,
models/counting.py); memory: weights, activations (traced on meta with per-frame modulation), what
diffusers' per-token modulation would add, the attention workspace (flash-style kernels keep per-row
statistics; the L x L score matrix a math kernel would need is shown for scale), the VAE's. Rows: the
run's CSG Stage II, end-to-end Stage II (`--no-csg`), and an end-to-end baseline that runs the Stage I
model at the target size with `baseline_steps` steps and classifier-free guidance. Peak accelerator
memory per memory mode (models/placement.py). Seconds are a prediction: FLOPs / (peak x efficiency).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

from swifti2v.config import MEMORY_MODES, validate
from swifti2v.errors import UserError
from swifti2v.footprint import (
    GIB,
    dit_memory,
    largest_call,
    latents_gib,
    mode_peaks,
    model_configs,
    stage_calls,
    vae_rows,
    weights,
)
from swifti2v.models.counting import DiTCall, dit_flops
from swifti2v.plan import stage2_plan
from swifti2v.sampling.csg import whole_clip_plan


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
    quants: tuple[str, ...] = ()  # DiT storages to compare: none, int8, fp8, GGUF types (Q8_0, Q4_K, ...)
    fp8_speedup: float = 2.0  # fp8 over bf16 dense matmul throughput (Ada/Hopper tensor cores; assumed)
    hbm_gbps: float = 4800.0  # GPU memory bandwidth (H200; H100 3350), for de-quantization
    dequant_efficiency: float = 0.5  # share of it a de-quantization kernel sustains (assumed)

    def __post_init__(self):
        if self.peak_tflops <= 0 or not 0 < self.efficiency <= 1:
            raise UserError("--peak-tflops must be positive and --efficiency in (0, 1]")
        if self.link_gbps <= 0:
            raise UserError(f"--link-gbps {self.link_gbps} must be positive (GB/s per GPU)")


# ---------------------------------------------------------------- DiT calls


def dit_row(name: str, cfg: dict, calls: list[tuple[DiTCall, int]], c: CostConfig) -> dict:
    """A stage made of DiT calls [(call, times)]: FLOPs summed, memory of its largest call."""
    flops = {"linear": 0.0, "attention": 0.0, "total": 0.0}
    for call, times in calls:
        for k, v in dit_flops(cfg, call).items():
            flops[k] += v * times
    largest = largest_call(cfg, calls)
    return {"stage": name, "calls": sum(t for _, t in calls), "tokens_per_call": largest.tokens(cfg),
            "tflop": flops["total"] / 1e12, "tflop_linear": flops["linear"] / 1e12,
            "tflop_attention": flops["attention"] / 1e12, "seconds": _seconds(flops["total"], c),
            **dit_memory(cfg, largest)}


def _seconds(flops: float, c: CostConfig) -> float:
    return flops / (c.peak_tflops * 1e12 * c.efficiency)


# ---------------------------------------------------------------- the whole run


def run_cost(c: CostConfig) -> dict:
    from swifti2v.presets import get_preset

    cfg = get_preset(c.preset)
    if c.frames is not None:
        cfg = replace(cfg, video=replace(cfg.video, frames=c.frames))
    cfg = validate(cfg)
    v = cfg.video
    models = model_configs(cfg)
    csg_plan = stage2_plan(cfg.stage2, v.num_blocks)
    stage1_calls, stage2_calls = stage_calls(cfg, models, csg_plan)
    _, e2e_calls = stage_calls(cfg, models, whole_clip_plan(v.num_blocks))
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
    latents = latents_gib(cfg, models)
    return {
        "config": asdict(c), "preset": cfg.preset,
        "video": {"height": v.height, "width": v.width, "frames": v.frames, "blocks": v.num_blocks,
                  "stage1_windows": len(stage1_calls), "extend": cfg.stage1.extend},
        "rows": rows, "vae": vae, "weights": w, "latents_gib": latents,
        "memory_modes": mode_peaks(rows, vae, w, latents),
        "totals": _totals(rows, vae, c),
        "parallel": [parallel_row(k, models, (stage1_calls, stage2_calls), rows, vae, w, latents, c)
                     for k in c.gpus],
        "quant": [quant_row(q, models, rows, vae, latents, c) for q in c.quants],
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


# ---------------------------------------------------------------- quantized weights


def quant_row(quant: str, models: dict, rows: dict, vae: dict, latents: float, c: CostConfig) -> dict:
    """Both DiTs stored as `quant`: their GiB, the peak per memory mode, and the run's predicted seconds —
    fp8 runs the DiTs' linear FLOPs `fp8_speedup` times faster; GGUF and int8 weights are de-quantized to bf16
    layer by layer in every DiT call (read quantized, written bf16, at `dequant_efficiency` of `hbm_gbps`)."""
    w = weights(models, {"stage1": quant, "stage2": quant})
    peaks = mode_peaks(rows, vae, w, latents)
    seconds = _totals(rows, vae, c)["swifti2v"]["seconds"]
    for stage in ("stage1", "stage2"):
        row, q = rows[stage], w[stage]["quant"]
        if quant == "fp8":
            seconds -= _seconds(row["tflop_linear"] * 1e12, c) * (1 - 1 / c.fp8_speedup)
        elif q is not None:
            moved = (q["gib"] + w[stage]["bf16"]) * GIB
            seconds += row["calls"] * moved / (c.hbm_gbps * 1e9 * c.dequant_efficiency)
    low = {stage: w[stage]["fp8"] if w[stage]["quant"] is None else _stored(w[stage]) for stage in ("stage1", "stage2")}
    host = w["text"]["bf16"] + w["clip"]["fp32"] + w["vae1"]["bf16"] + w["vae2"]["bf16"] + sum(low.values())
    return {"quant": quant, "stage1_gib": _stored(w["stage1"]), "stage2_gib": _stored(w["stage2"]),
            "host_models_gib": host,
            "stage1_streamed_gib": (w["stage1"]["quant"] or {}).get("streamed_gib", w["stage1"]["fp8_streamed"]),
            "peak_gib": {mode: peaks[mode]["peak"] for mode in MEMORY_MODES},
            "peak_step": {mode: max(("stage1", "reference", "stage2"), key=lambda k: peaks[mode][k])
                          for mode in MEMORY_MODES},
            "seconds": seconds}


def _stored(w: dict) -> float:
    return w["bf16"] if w["quant"] is None else w["quant"]["gib"]


def quant_markdown(r: dict) -> list[str]:
    if not r["quant"]:
        return []
    c = r["config"]
    lines = ["", "Both DiTs stored as each quant (`none`: bf16, fp8 in `low`; GGUF types as community files keep "
             "them: the blocks' linear weights quantized, the rest bf16). CPU RAM: every model as stored, where the "
             f"balanced and low modes keep them between stages. Seconds: fp8 matmuls {c['fp8_speedup']:g}× bf16's; "
             f"GGUF and int8 de-quantized layer by layer in every DiT call at {c['dequant_efficiency']:g} × "
             f"{c['hbm_gbps']:.0f} GB/s (**predicted**):", "",
             "| quant | Stage I DiT GiB | Stage II DiT GiB | Stage I resident when streamed GiB | peak fast GiB | "
             "peak balanced GiB | peak low GiB (its largest step) | models in CPU RAM GiB (low) | predicted s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for x in r["quant"]:
        p = x["peak_gib"]
        lines.append(f"| {x['quant']} | {_n(x['stage1_gib'])} | {_n(x['stage2_gib'])} | "
                     f"{_n(x['stage1_streamed_gib'])} | {_n(p['fast'])} | {_n(p['balanced'])} | **{_n(p['low'])}** "
                     f"({x['peak_step']['low']}) | {_n(x['host_models_gib'])} | {_n(x['seconds'])} |")
    return lines


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
                 latents: float, c: CostConfig) -> dict:
    """One clip on k GPUs: per-stage compute and communication seconds, bytes per window, per-GPU peak."""
    link = c.link_gbps * 1e9
    out: dict = {"gpus": k, "kind": c.parallel, "link_gbps": c.link_gbps}
    for name, calls_of_stage in zip(("stage1", "stage2"), calls, strict=True):
        cfg = models[name]
        if not parallel_fits(cfg, k, c.parallel):
            return {**out, "fits": False, "why": f"{name}: {cfg['num_attention_heads']} heads not divisible by {k}"}
        flops = sum(dit_flops(cfg, call)["total"] * n for call, n in calls_of_stage)
        sent = sum(comm_bytes(cfg, call, k, c.parallel) * n for call, n in calls_of_stage)
        largest = largest_call(cfg, calls_of_stage)
        out[name] = {"compute_s": _seconds(flops / k, c), "comm_s": sent / link,
                     "window_comm_gib": comm_bytes(cfg, largest, k, c.parallel) / GIB}
        out[name]["seconds"] = out[name]["compute_s"] + out[name]["comm_s"]
    vae = _spread_decode(vae, k)
    serial = sum(vae.get(key, {}).get("tflop", 0.0) for key in ("stage1_decode", "reference_encode"))
    out["vae_s"] = _seconds((serial + vae.get("decode_balanced", {}).get("tflop", 0.0)) * 1e12, c)
    out["seconds"] = out["stage1"]["seconds"] + out["stage2"]["seconds"] + out["vae_s"]
    split = {name: {**row, "activations_gib": (row["activations_gib"] + row["per_token_modulation_gib"]) / k}
             if k > 1 else row for name, row in rows.items()}  # a split model runs the stock per-token forward
    peaks = mode_peaks(split, vae, w, latents)
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
    windows = v.get("stage1_windows", 1)
    lines = [f"Cost model: `--preset {r['preset']}`, {v['width']}x{v['height']}x{v['frames']} "
             f"({v['blocks']} latent blocks; Stage I in {windows} window{'s' if windows > 1 else ''}"
             f"{', --extend ' + v['extend'] if windows > 1 else ''}). Seconds are a **prediction**: FLOPs / "
             f"({c['peak_tflops']:.0f} TFLOP/s x {c['efficiency']:.2f}).", "",
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
    lines += ["", "| run | TFLOP | predicted s | s per frame | vs swifti2v |", "|---|---|---|---|---|"]
    for name, row in (("swifti2v (CSG)", ours), ("swifti2v with end-to-end Stage II", e2e), ("baseline", base)):
        lines.append(f"| {name} | {_n(row['tflop'])} | {_n(row['seconds'])} | {row['seconds'] / v['frames']:.3f} | "
                     f"{row['tflop'] / ours['tflop']:.1f}× |")
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
    lines += quant_markdown(r)
    return "\n".join(lines) + "\n"
