"""Stage I LoRAs on diffusers' Wan DiT: LightX2V format (original Wan key names, `diffusion_model.`
prefix) and diffusers format (`transformer.` prefix, what `swifti2v train stage1-lora` writes). Several are
fused in order (the paper's few-step + low-res LoRAs), each into every expert of a Wan2.2 A14B pair or into
the one it targets (LightX2V publishes its A14B few-step LoRAs as a high-noise / low-noise pair).

diffusers' `load_lora_weights` converts and loads the low-rank pairs and the bias deltas (`diff_b`),
but drops, with at most an info log, the per-block modulation deltas (`diff_m`, added here to
`scale_shift_table`), full-weight deltas (`.diff`) and norm deltas; partial `diff_b` keys (a bias delta
with no pair) can crash it. We route those keys ourselves, let diffusers do the rest, fuse the result
into the weights, and return a report of what matched.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from diffusers import WanImageToVideoPipeline
from diffusers.models.transformers.transformer_wan import WanTransformer3DModel

from swifti2v.config import LoraFile
from swifti2v.errors import UserError
from swifti2v.models.quant import storage

log = logging.getLogger(__name__)

PREFIX = "diffusion_model."
DIFFUSERS_PREFIX = "transformer."
# Original Wan module names -> diffusers WanTransformer3DModel names, inside a block.
BLOCK_NAMES = {
    "self_attn.q": "attn1.to_q", "self_attn.k": "attn1.to_k", "self_attn.v": "attn1.to_v",
    "self_attn.o": "attn1.to_out.0", "self_attn.norm_q": "attn1.norm_q", "self_attn.norm_k": "attn1.norm_k",
    "cross_attn.q": "attn2.to_q", "cross_attn.k": "attn2.to_k", "cross_attn.v": "attn2.to_v",
    "cross_attn.o": "attn2.to_out.0", "cross_attn.norm_q": "attn2.norm_q", "cross_attn.norm_k": "attn2.norm_k",
    "cross_attn.k_img": "attn2.add_k_proj", "cross_attn.v_img": "attn2.add_v_proj",
    "cross_attn.norm_k_img": "attn2.norm_added_k",
    "norm3": "norm2",  # Wan's cross-attention norm is diffusers' norm2
    "ffn.0": "ffn.net.0.proj", "ffn.2": "ffn.net.2",
}
TOP_NAMES = {
    "patch_embedding": "patch_embedding", "head.head": "proj_out",
    "text_embedding.0": "condition_embedder.text_embedder.linear_1",
    "text_embedding.2": "condition_embedder.text_embedder.linear_2",
    "time_embedding.0": "condition_embedder.time_embedder.linear_1",
    "time_embedding.2": "condition_embedder.time_embedder.linear_2",
    "time_projection.1": "condition_embedder.time_proj",
    "img_emb.proj.0": "condition_embedder.image_embedder.norm1",
    "img_emb.proj.1": "condition_embedder.image_embedder.ff.net.0.proj",
    "img_emb.proj.3": "condition_embedder.image_embedder.ff.net.2",
    "img_emb.proj.4": "condition_embedder.image_embedder.norm2",
}
UNFUSED = "unfused adapter"
PAIR_SUFFIXES = (".lora_down.weight", ".lora_up.weight", ".lora_A.weight", ".lora_B.weight", ".alpha")


@dataclass
class LoraReport:
    """What one LoRA file matched, over the experts it went to (the log line and the sidecar entry)."""

    path: str
    target: str = "all"
    strength: float = 1.0
    experts: list[str] = field(default_factory=list)  # "transformer" (high-noise / only), "transformer_2" (low)
    pairs: int = 0  # low-rank pairs loaded and fused by diffusers
    bias_deltas: int = 0  # diff_b fused by diffusers
    modulation_deltas: int = 0  # diff_m added to scale_shift_table here
    direct_deltas: int = 0  # .diff / norm / unpaired diff_b deltas added here
    unmatched: list[str] = field(default_factory=list)
    how: str = "fused"  # or UNFUSED: on quantized weights the low-rank pairs stay beside them

    @property
    def matched(self) -> int:
        return self.pairs + self.bias_deltas + self.modulation_deltas + self.direct_deltas

    def summary(self) -> str:
        text = (f"LoRA {Path(self.path).name} ({self.how}; target {self.target}: {', '.join(self.experts)}; "
                f"strength {self.strength:g}): {self.pairs} low-rank pairs, {self.bias_deltas} bias deltas, "
                f"{self.modulation_deltas} modulation deltas, {self.direct_deltas} direct deltas")
        if self.unmatched:
            text += f"; {len(self.unmatched)} unmatched keys (first: {self.unmatched[0]})"
        return text

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["unmatched"], d["unmatched_count"] = self.unmatched[:20], len(self.unmatched)
        return d


def diffusers_param_name(original: str) -> str | None:
    """Map an original Wan parameter key (no prefix, no .diff suffix) to the diffusers parameter name.

    `original` names a module plus a kind: "blocks.3.self_attn.q:weight", "blocks.3:modulation".
    """
    module, kind = original.split(":")
    if module == "head" and kind == "modulation":
        return "scale_shift_table"
    m = re.fullmatch(r"blocks\.(\d+)(?:\.(.+))?", module)
    if m:
        i, rest = m.groups()
        if rest is None:
            return f"blocks.{i}.scale_shift_table" if kind == "modulation" else None
        name = BLOCK_NAMES.get(rest)
        return None if name is None else f"blocks.{i}.{name}.{kind}"
    name = TOP_NAMES.get(module)
    return None if name is None else f"{name}.{kind}"


def _direct_key(key: str) -> str | None:
    """'blocks.0.diff_m' -> 'blocks.0:modulation'; 'blocks.0.norm3.diff' -> 'blocks.0.norm3:weight'."""
    for suffix, kind in ((".diff_m", "modulation"), (".diff_b", "bias"), (".diff", "weight")):
        if key.endswith(suffix):
            return f"{key[: -len(suffix)]}:{kind}"
    return None


def split_state_dict(sd: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(keys for diffusers' converter, keys we apply directly), both without the prefix."""
    paired = {k[: -len(s)] for k in sd for s in PAIR_SUFFIXES if k.endswith(s)}
    for_diffusers, direct = {}, {}
    for key, value in sd.items():
        module = key.rsplit(".", 1)[0]
        goes_direct = key.endswith((".diff_m", ".diff")) or (
            key.endswith(".diff_b") and ("norm" in key or module not in paired)
        )
        (direct if goes_direct else for_diffusers)[key] = value
    return for_diffusers, direct


def _apply_direct(transformer: WanTransformer3DModel, direct: dict[str, torch.Tensor], strength: float,
                  report: LoraReport) -> None:
    params = dict(transformer.named_parameters())
    for key, delta in direct.items():
        name = diffusers_param_name(_direct_key(key) or "")
        target = params.get(name) if name else None
        if target is None or target.numel() != delta.numel() or not target.is_floating_point():  # or quantized
            report.unmatched.append(key)
            continue
        with torch.no_grad():
            target.add_(strength * delta.to(target.dtype).reshape(target.shape).to(target.device))
        if key.endswith(".diff_m"):
            report.modulation_deltas += 1
        else:
            report.direct_deltas += 1


def read_lora(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """A LoRA file (LightX2V or diffusers format) -> (keys for diffusers' converter, keys applied directly)."""
    from safetensors.torch import load_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise UserError(f"LoRA {path} is not a .safetensors file; only safetensors weights are loaded")
    if not path.is_file():
        raise UserError(f"LoRA file {path} not found; check the path or download it first")
    try:
        sd = load_file(str(path))
    except Exception as e:  # a truncated or foreign file
        raise UserError(f"LoRA {path} could not be read ({e}); re-download it") from None
    if sd and all(k.startswith(PREFIX) for k in sd):  # LightX2V / original Wan names
        for_diffusers, direct = split_state_dict({k[len(PREFIX):]: v for k, v in sd.items()})
        return {PREFIX + k: v for k, v in for_diffusers.items()}, direct
    if sd and all(k.startswith(DIFFUSERS_PREFIX) for k in sd):  # diffusers format (`swifti2v train stage1-lora`)
        return sd, {}
    raise UserError(f"LoRA {path} is neither LightX2V/original Wan format (keys starting {PREFIX!r}) nor "
                    f"diffusers format (keys starting {DIFFUSERS_PREFIX!r})")


EXPERTS = {"high": "transformer", "low": "transformer_2"}


def lora_experts(pipe: WanImageToVideoPipeline, target: str, name: str) -> list[str]:
    """The pipeline components a LoRA goes to: "all" = every DiT; "high"/"low" = one expert of a pair."""
    pair = getattr(pipe, "transformer_2", None) is not None
    if target == "all":
        return ["transformer", "transformer_2"] if pair else ["transformer"]
    if target not in EXPERTS:
        raise UserError(f"LoRA {name}: target {target!r} is unknown; use high=, low= or none (every expert)")
    if not pair:
        raise UserError(f"LoRA {name} targets the {target}-noise expert ('{target}='), but this Stage I model has one "
                        f"DiT; drop '{target}=' (or use a Wan2.2 A14B pair)")
    return [EXPERTS[target]]


def _fuse_into(pipe: WanImageToVideoPipeline, component: str, for_diffusers: dict, direct: dict, strength: float,
               report: LoraReport) -> None:
    transformer = getattr(pipe, component)
    if for_diffusers:
        try:
            converted = pipe.lora_state_dict(dict(for_diffusers))
        except (KeyError, ValueError, IndexError, RuntimeError) as e:  # diffusers' converter on a foreign layout
            raise UserError(f"LoRA {report.path} has a key layout diffusers cannot convert ({type(e).__name__}: "
                            f"{str(e)[:120]})") from None
        modules = dict(transformer.named_modules())
        for key in converted:
            module = key.removeprefix("transformer.").split(".lora_")[0]
            if module not in modules:
                report.unmatched.append(key)
            elif key.endswith("lora_A.weight"):
                report.pairs += 1
            elif key.endswith("lora_B.bias"):
                report.bias_deltas += 1
        converted = {k: v for k, v in converted.items() if k not in report.unmatched}
        if converted:
            adapter = f"swifti2v_{component}_{len(getattr(transformer, 'peft_config', None) or {})}"
            try:  # low_cpu_mem_usage=False: bias-only entries crash the meta-device path.
                pipe.load_lora_weights(converted, adapter_name=adapter, low_cpu_mem_usage=False,
                                       load_into_transformer_2=component == "transformer_2")
            except (RuntimeError, ValueError) as e:  # shapes of another model size
                pipe.unload_lora_weights()
                first = next((line.strip() for line in str(e).splitlines() if "size mismatch" in line), str(e))
                raise UserError(f"LoRA {report.path} does not fit this Stage I model ({first[:160]}); is it made "
                                "for another model size?") from None
            if storage(transformer) is None:
                pipe.fuse_lora(components=[component], lora_scale=strength)
                transformer.unload_lora()  # this expert's only: the other may keep unfused adapters
            else:  # quantized weights (a GGUF file) take no fused delta: the adapter stays, scaled
                _keep_adapter(transformer, adapter, strength)
                report.how = UNFUSED
    _apply_direct(transformer, direct, strength, report)


def _keep_adapter(transformer: WanTransformer3DModel, name: str, strength: float) -> None:
    """Keep the adapter just loaded, and activate every one kept so far at its strength."""
    kept = transformer.__dict__.setdefault("_swifti2v_adapters", {})
    kept[name] = strength
    transformer.set_adapters(list(kept), list(kept.values()))


def fuse_lora_file(pipe: WanImageToVideoPipeline, path: str | Path, strength: float = 1.0, target: str = "all",
                   name: str | None = None) -> LoraReport:
    """Fuse one LoRA file into the experts `target` names, at `strength`; report what matched. A file that
    matches no weight is a user error (it was made for another model). `name`: how the user spelled it."""
    name = name or str(path)
    experts = lora_experts(pipe, target, name)
    for_diffusers, direct = read_lora(path)
    report = LoraReport(str(path), target, strength, experts)
    for component in experts:
        _fuse_into(pipe, component, for_diffusers, direct, strength, report)
    report.unmatched = list(dict.fromkeys(report.unmatched))  # the same key missed in both experts: once
    if report.matched == 0:
        raise UserError(f"LoRA {name} matched no weight of the Stage I model ({len(report.unmatched)} keys, e.g. "
                        f"{report.unmatched[0] if report.unmatched else 'none'}); is it made for this model?")
    log.info(report.summary())
    if report.unmatched:
        log.warning("LoRA %s: keys with no matching weight: %s", name, ", ".join(report.unmatched[:20]))
    return report


def resolve_lora(spec: str) -> Path:
    """A local .safetensors path, or 'hub_repo_id:path/in/repo.safetensors' (downloaded to the Hub cache)."""
    if Path(spec).exists() or ":" not in spec:
        return Path(spec)
    repo, filename = spec.split(":", 1)
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(repo, filename))
    except Exception as e:
        raise UserError(f"LoRA {spec!r} could not be fetched ({type(e).__name__}); download it and pass "
                        "--lora PATH") from None


def fuse_loras(pipe: WanImageToVideoPipeline, loras: Sequence[LoraFile]) -> list[dict]:
    """Every Stage I LoRA fused in order into the experts it targets -> one match report per LoRA. The fused
    weights are the sum of every LoRA's scaled delta (fusing adds; the order only matters for rounding)."""
    return [fuse_lora_file(pipe, resolve_lora(lora.path), lora.strength, lora.target, str(lora)).to_dict()
            for lora in loras]
