"""Quantized DiT weights, through the libraries that have them: the GGUF files people already have
(community Q8_0 ... Q4_K_M files of the Wan DiTs, original Wan key layout), loaded by diffusers'
single-file loader with `GGUFQuantizationConfig`; and torchao int8 (weight-only) or fp8 (dynamic
activation scaling) applied in-process through `TorchAoConfig`'s config objects, after the Stage I LoRAs
are fused into the bf16 weights.

A GGUF file is checked before its weights are read: readable, every tensor of a quant type diffusers
de-quantizes, and the same parameter names and shapes as the slot's model (a 5B file in the 14B slot is a
one-line error naming both).
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from swifti2v.config import QUANTS
from swifti2v.errors import UserError

FP8_CAPABILITY = (8, 9)  # fp8 tensor cores: Ada (L4, L40, RTX 40xx), Hopper (H100, H200) and later
QUANT_ATTR = "_swifti2v_storage"  # how a DiT's weights are stored, once quantized ("int8", "fp8", "gguf Q8_0")


# ---------------------------------------------------------------- torchao: --quant int8 | fp8


def check_quant(quant: str, device: torch.device) -> None:
    """Before anything loads: the quant is known, torchao is installed, fp8 has fp8 units to run on."""
    if quant not in (*QUANTS, "auto"):
        raise UserError(f"--quant {quant!r} is unknown; use auto or one of {', '.join(QUANTS)}")
    if quant in ("none", "auto"):  # auto takes only what this device runs (memory.auto_quants)
        return
    try:
        import torchao  # noqa: F401
    except ImportError:
        raise UserError(f"--quant {quant} needs torchao: pip install 'swifti2v[quant]'") from None
    if quant == "fp8" and (device.type != "cuda" or torch.cuda.get_device_capability(device) < FP8_CAPABILITY):
        where = device.type if device.type != "cuda" else torch.cuda.get_device_name(device)
        raise UserError(f"--quant fp8 needs a GPU with fp8 units (compute capability 8.9+: L4, L40, RTX 40xx, "
                        f"H100, H200); this run is on {where}: use --quant int8")


def torchao_config(quant: str):
    """diffusers' TorchAoConfig for `quant`: int8 weight-only, or fp8 weights and per-row dynamic fp8
    activations (fp8 matmuls)."""
    from diffusers import TorchAoConfig
    from torchao.quantization import Float8DynamicActivationFloat8WeightConfig, Int8WeightOnlyConfig, PerRow

    if quant == "int8":
        return TorchAoConfig(Int8WeightOnlyConfig())
    return TorchAoConfig(Float8DynamicActivationFloat8WeightConfig(granularity=PerRow()))


def _block_linear(module: torch.nn.Module, fqn: str) -> bool:
    """The transformer blocks' linear layers (~99% of a Wan DiT's weights); the embedders, the output
    projection and the modulation tables keep their dtype, as diffusers keeps them in fp32."""
    return isinstance(module, torch.nn.Linear) and fqn.startswith("blocks.")


def quantize_dit(model: torch.nn.Module, quant: str) -> None:
    """Quantize a loaded DiT in place (after LoRAs are fused: the fused weights are what gets quantized)."""
    from torchao.quantization import quantize_

    quantize_(model, torchao_config(quant).get_apply_tensor_subclass(), filter_fn=_block_linear)
    setattr(model, QUANT_ATTR, quant)


def storage(model: torch.nn.Module) -> str | None:
    """How the DiT's weights are stored when quantized ("int8", "fp8", "gguf Q4_K"), else None."""
    return getattr(model, QUANT_ATTR, None)


def tensor_bytes(t: torch.Tensor) -> int:
    """Bytes a tensor holds, a quantized tensor subclass included (its inner data, scales and zero points)."""
    if hasattr(t, "__tensor_flatten__") and type(t) not in (torch.Tensor, torch.nn.Parameter):
        names, _ = t.__tensor_flatten__()
        return sum(tensor_bytes(getattr(t, name)) for name in names)
    return t.numel() * t.element_size()


def stored_bytes(model: torch.nn.Module) -> int:
    """What the model's weights take in memory as stored (quantized or not)."""
    return sum(tensor_bytes(t) for t in [*model.parameters(), *model.buffers()])


# ---------------------------------------------------------------- GGUF files


@dataclass(frozen=True)
class GgufFile:
    path: Path
    shapes: dict[str, tuple[int, ...]]  # original Wan names -> logical shapes
    types: dict[str, str]  # original Wan names -> GGML type name

    @property
    def quant(self) -> str:
        """The file's main quant type: the one holding the most tensors that are not F32/F16 (e.g. Q4_K)."""
        quantized = [t for t in self.types.values() if t not in ("F32", "F16")]
        return max(set(quantized), key=quantized.count) if quantized else "F16"


def read_gguf(path: str | Path, flag: str) -> GgufFile:
    """The tensor table of a GGUF file (no weights read): a clear error for a missing, truncated or foreign
    file and for quant types diffusers does not de-quantize."""
    try:
        import gguf
    except ImportError:
        raise UserError(f"{flag} needs the gguf package: pip install 'swifti2v[quant]'") from None
    from diffusers.quantizers.gguf.utils import SUPPORTED_GGUF_QUANT_TYPES

    path = Path(path)
    if path.suffix.lower() != ".gguf":
        raise UserError(f"{flag} {path} is not a .gguf file; pass a GGUF file (e.g. wan2.1-i2v-14b-480p-Q8_0.gguf)")
    if not path.is_file():
        raise UserError(f"{flag} {path} not found; check the path or download the file first")
    try:
        reader = gguf.GGUFReader(path)
    except Exception as e:  # truncated (numpy reshape/view errors), unknown type ids, not GGUF at all
        raise UserError(f"{flag} {path} is not a readable GGUF file ({type(e).__name__}: {str(e)[:100]}); "
                        "re-download it") from None
    supported = {t.name for t in SUPPORTED_GGUF_QUANT_TYPES} | {"F32", "F16"}
    shapes, types = {}, {}
    for t in reader.tensors:
        name = t.name.removeprefix("model.diffusion_model.")
        shapes[name] = tuple(int(d) for d in reversed(t.shape.tolist()))  # GGML lists the innermost dim first
        types[name] = t.tensor_type.name
        if types[name] not in supported:
            raise UserError(f"{flag} {path}: tensor {name} is {types[name]}, a quant type diffusers cannot "
                            f"de-quantize; use a file in one of {', '.join(sorted(supported))}")
    return GgufFile(path, shapes, types)


def _describe(shapes: dict[str, tuple[int, ...]]) -> str:
    """'dim 5120, 40 layers, 36 input channels (like Wan 14B)' from a state dict's shapes."""
    embed = shapes.get("patch_embedding.weight")
    if embed is None:
        return "no patch_embedding (not a Wan DiT)"
    layers = len({m.group(1) for k in shapes if (m := re.match(r"blocks\.(\d+)\.", k))})
    size = {5120: "Wan 14B", 3072: "Wan2.2 TI2V-5B", 1536: "Wan 1.3B"}.get(embed[0])
    return f"dim {embed[0]}, {layers} layers, {embed[1]} input channels" + (f" (like {size})" if size else "")


def check_gguf_fits(file: GgufFile, model_config: dict, slot: str, flag: str) -> None:
    """The file's parameters (renamed the way diffusers' single-file loader renames them) have the names and
    shapes of the slot's model; else one line naming what the file holds and what the slot expects."""
    from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers

    from swifti2v.models.specs import meta_transformer

    meta = {k: torch.empty(s, device="meta") for k, s in file.shapes.items()}
    got = {k: tuple(v.shape) for k, v in convert_wan_transformer_to_diffusers(meta).items()}
    want = {k: tuple(v.shape) for k, v in meta_transformer(model_config).state_dict().items()}
    if got == want:
        return
    missing = sorted(set(want) - set(got))
    wrong = sorted(k for k in set(want) & set(got) if want[k] != got[k])
    detail = (f"{wrong[0]} is {list(got[wrong[0]])}, expected {list(want[wrong[0]])}" if wrong
              else f"{len(missing)} weights missing, e.g. {missing[0]}" if missing
              else f"unexpected weights, e.g. {sorted(set(got) - set(want))[0]}")
    raise UserError(f"{flag} {file.path} holds a Wan DiT with {_describe(got)}, but the {slot} expects "
                    f"{_describe(want)} ({detail}); pass the GGUF file of that model")


def load_gguf_dit(path: str | Path, model_config: dict, slot: str, flag: str, dtype: torch.dtype):
    """A WanTransformer3DModel from a GGUF file, its weights kept quantized and de-quantized layer by layer
    to `dtype` as each runs (diffusers' GGUFLinear), after the checks above."""
    from diffusers import GGUFQuantizationConfig, WanTransformer3DModel

    file = read_gguf(path, flag)
    check_gguf_fits(file, model_config, slot, flag)
    with tempfile.TemporaryDirectory() as config_dir:
        (Path(config_dir) / "config.json").write_text(_config_json(model_config))
        try:
            model = WanTransformer3DModel.from_single_file(
                str(file.path), config=config_dir, torch_dtype=dtype,
                quantization_config=GGUFQuantizationConfig(compute_dtype=dtype))
        except (OSError, ValueError, RuntimeError) as e:
            raise UserError(f"{flag} {file.path} could not be loaded ({type(e).__name__}: {str(e)[:120]}); "
                            "re-download it") from None
    setattr(model, QUANT_ATTR, f"gguf {file.quant}")
    return model


def _config_json(model_config: dict) -> str:
    import json

    from diffusers import WanTransformer3DModel

    return json.dumps({"_class_name": WanTransformer3DModel.__name__, **model_config})
