"""Stage I LoRAs on diffusers' Wan DiT: LightX2V format (original Wan key names, `diffusion_model.`
prefix) and diffusers format (`transformer.` prefix, what `swifti2v train stage1-lora` writes).

diffusers' `load_lora_weights` converts and loads the low-rank pairs and the bias deltas (`diff_b`),
but drops, with at most an info log, the per-block modulation deltas (`diff_m`, added here to
`scale_shift_table`), full-weight deltas (`.diff`) and norm deltas; partial `diff_b` keys (a bias delta
with no pair) can crash it. We route those keys ourselves, let diffusers do the rest, fuse the result
into the weights, and return a report of what matched.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from diffusers import WanImageToVideoPipeline
from diffusers.models.transformers.transformer_wan import WanTransformer3DModel

from swifti2v.errors import UserError

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
PAIR_SUFFIXES = (".lora_down.weight", ".lora_up.weight", ".lora_A.weight", ".lora_B.weight", ".alpha")


@dataclass
class LoraReport:
    path: str
    pairs: int = 0  # low-rank pairs loaded and fused by diffusers
    bias_deltas: int = 0  # diff_b fused by diffusers
    modulation_deltas: int = 0  # diff_m added to scale_shift_table here
    direct_deltas: int = 0  # .diff / norm / unpaired diff_b deltas added here
    unmatched: list[str] = field(default_factory=list)

    def summary(self) -> str:
        text = (f"LoRA {Path(self.path).name}: {self.pairs} low-rank pairs, {self.bias_deltas} bias deltas, "
                f"{self.modulation_deltas} modulation deltas, {self.direct_deltas} direct deltas")
        if self.unmatched:
            text += f"; {len(self.unmatched)} unmatched keys (first: {self.unmatched[0]})"
        return text


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
        if target is None or target.numel() != delta.numel():
            report.unmatched.append(key)
            continue
        with torch.no_grad():
            target.add_(strength * delta.to(target.dtype).reshape(target.shape).to(target.device))
        if key.endswith(".diff_m"):
            report.modulation_deltas += 1
        else:
            report.direct_deltas += 1


def load_lightx2v_lora(pipe: WanImageToVideoPipeline, path: str | Path, strength: float = 1.0) -> LoraReport:
    """Fuse a LoRA file (LightX2V or diffusers format) into `pipe.transformer` at `strength`; report matches."""
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
    if all(k.startswith(PREFIX) for k in sd):  # LightX2V / original Wan names
        for_diffusers, direct = split_state_dict({k[len(PREFIX):]: v for k, v in sd.items()})
        for_diffusers = {PREFIX + k: v for k, v in for_diffusers.items()}
    elif all(k.startswith(DIFFUSERS_PREFIX) for k in sd):  # diffusers format (e.g. `swifti2v train stage1-lora`)
        for_diffusers, direct = sd, {}
    else:
        raise UserError(f"LoRA {path} is neither LightX2V/original Wan format (keys starting {PREFIX!r}) nor "
                        f"diffusers format (keys starting {DIFFUSERS_PREFIX!r})")
    report = LoraReport(str(path))
    transformer = pipe.transformer
    if for_diffusers:
        converted = pipe.lora_state_dict(for_diffusers)
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
        # low_cpu_mem_usage=False: bias-only entries crash the meta-device path.
        pipe.load_lora_weights(converted, adapter_name="swifti2v_lora", low_cpu_mem_usage=False)
        pipe.fuse_lora(components=["transformer"], lora_scale=strength)
        pipe.unload_lora_weights()
    _apply_direct(transformer, direct, strength, report)
    log.info(report.summary())
    if report.unmatched:
        log.warning("LoRA keys with no matching weight: %s", ", ".join(report.unmatched[:20]))
    return report
