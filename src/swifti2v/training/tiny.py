"""The tiny models' workshop: fit the codec, write the random-init base, compose, reshard and bundle folders.

The architecture is models/tiny.py; this module makes and moves its weights for the recipe
(recipes/tiny/train.sh), which calls it as a module:

    python -m swifti2v.training.tiny build-base RUN/base [--seed 0]
    python -m swifti2v.training.tiny zero-head FOLDER
    python -m swifti2v.training.tiny compose BASE_FOLDER TRANSFORMER OUT
    python -m swifti2v.training.tiny assemble --base RUN/base --stage1 S1 --stage2 S2 [--out BUNDLE]
    python -m swifti2v.training.tiny export RUN/checkpoints/step-N LIKE OUT [--ema]
    python -m swifti2v.training.tiny deepen TRANSFORMER OUT --after 1 3
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import torch
from diffusers import WanTransformer3DModel
from huggingface_hub import save_torch_state_dict
from safetensors.torch import load_file

from swifti2v import media
from swifti2v.data.bank import BankClips, StillBank, batch_pixels
from swifti2v.data.cache import collate
from swifti2v.errors import UserError
from swifti2v.models import debug
from swifti2v.models.adapter import PREDICTION_FILE
from swifti2v.models.codec import PixelCodec, fit_pca, patch_vectors
from swifti2v.models.tiny import CODEC, STAGE1_DEBLOCK, Z, stage1_transformer, stage2_transformer
from swifti2v.presets import WEIGHTS_DIR
from swifti2v.training.engine import checkpoint_transformer

# The codec's fit weighs bicubic x4 round trips 8x the sharp patches: the reference then loses <= 0.1 dB
# to the round trip (docs/results.md), and the sharp clips still reconstruct at ~39 dB.
BICUBIC_WEIGHT = 8.0


def zero_head(transformer: WanTransformer3DModel) -> WanTransformer3DModel:
    """Output projection set to zero: an x0 model's residual starts at nothing, so Stage II starts as its
    conditioning's own guess, z_ref (bicubic through the codec), and training can only add to it."""
    with torch.no_grad():
        transformer.proj_out.weight.zero_()
        transformer.proj_out.bias.zero_()
    return transformer


def zero_head_folder(folder: str | Path) -> None:
    """zero_head on a saved transformer folder, in place (`zero-head`; recipes/tiny/train.sh ZERO_HEAD=1)."""
    folder = Path(folder)
    model = WanTransformer3DModel.from_pretrained(folder, torch_dtype=torch.float32)
    for pattern in ("diffusion_pytorch_model*.safetensors", "diffusion_pytorch_model*.index.json"):
        for f in folder.glob(pattern):
            f.unlink()
    zero_head(model).save_pretrained(folder)


# What a Wan block writes into the residual stream: self- and cross-attention's outputs, the feed-forward's last layer.
RESIDUAL_WRITERS = ("attn1.to_out.0.", "attn2.to_out.0.", "ffn.net.2.")


def deepen(model: WanTransformer3DModel, after: list[int]) -> WanTransformer3DModel:
    """A deeper model that computes exactly what `model` does: after each block i in `after`, a copy of block i
    whose residual writers are zero, so it adds nothing until training moves them (zero-initialised residual
    branches, as in ControlNet and LoRA): a trained model goes on training with more capacity."""
    if len(set(after)) != len(after) or not all(0 <= i < len(model.blocks) for i in after):
        raise UserError(f"deepen --after {after}: give distinct block indices in 0..{len(model.blocks) - 1}")
    blocks = []
    for i, block in enumerate(model.blocks):
        blocks.append(block.state_dict())
        if i in after:
            blocks.append({k: v.clone().zero_() if k.startswith(RESIDUAL_WRITERS) else v.clone()
                           for k, v in block.state_dict().items()})
    deeper = WanTransformer3DModel.from_config({**model.config, "num_layers": len(blocks)})
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("blocks.")}
    state |= {f"blocks.{j}.{k}": v for j, block in enumerate(blocks) for k, v in block.items()}
    deeper.load_state_dict(state, strict=True)
    return deeper.to(model.dtype)


def deepen_folder(folder: str | Path, out: str | Path, after: list[int]) -> Path:
    """`deepen` on a transformer folder, written to `out` with the folder's sidecars (its prediction)."""
    folder, out = Path(folder), Path(out)
    model = deepen(WanTransformer3DModel.from_pretrained(folder, torch_dtype=torch.float32), after)
    shutil.copytree(folder, out, ignore=shutil.ignore_patterns("*.safetensors", "*.index.json", "config.json"))
    model.save_pretrained(out)
    reshard(out)
    return out


def codec_patches(clips: int, seed: int, size: int = 256, frames: int = 33):
    """Patch vectors of training bank clips and of their bicubic x4 round trips (what the reference is)."""
    data = BankClips(StillBank.build(clips, "train", seed=seed), clips, size, size, frames, seed0=seed)
    s, t = CODEC["scale_factor_spatial"], CODEC["scale_factor_temporal"]
    for i in range(clips):
        clip = batch_pixels(collate([data[i]]), "cpu")  # (1, 3, 1+4k, H, W)
        yield patch_vectors(clip, s, t), 1.0
        yield patch_vectors(media.upsample(media.downsample(clip, 4), size, size), s, t), BICUBIC_WEIGHT


def fit_codec(clips: int = 48, seed: int = 0) -> PixelCodec:
    """The tiny models' PCA codec, fitted on `clips` training clips (deterministic from the seed)."""
    basis, mean, variances = fit_pca(codec_patches(clips, seed), Z)
    scale = float(variances[:Z].mean().sqrt())  # one scale for every channel: latent MSE stays pixel MSE
    codec = PixelCodec(**CODEC, latents_std=[scale] * Z)
    codec.projection.copy_(basis)
    codec.offset.copy_(mean)
    return codec


def build_base(out: str | Path, seed: int = 0, codec_clips: int = 48) -> Path:
    """Write the random-init tiny Stage I and Stage II folders (the start of training) under `out`."""
    out = Path(out)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        text, s1, s2 = debug.tiny_text_encoder(), stage1_transformer(), zero_head(stage2_transformer())
    codec = fit_codec(codec_clips, seed)
    s1_dir, s2_dir = out / "stage1", out / "stage2"
    for model, folder in ((s1, s1_dir / "transformer"), (s2, s2_dir / "transformer")):
        model.save_pretrained(folder)
        (folder / PREDICTION_FILE).write_text(json.dumps({"prediction": "x0"}))  # see models/adapter.py
    codec.save_pretrained(s2_dir / "vae")
    codec.register_to_config(deblock=STAGE1_DEBLOCK)  # Stage I's tokens step at patch edges: ramp them
    codec.save_pretrained(s1_dir / "vae")
    for d in (s1_dir, s2_dir):  # both folders are complete: `refine` reads the text encoder from Stage II's
        text.save_pretrained(d / "text_encoder")
        debug.tiny_tokenizer().save_pretrained(d / "tokenizer")
    write_model_index(s1_dir)
    return out


def write_model_index(folder: Path) -> None:
    """A Wan I2V model_index.json (so `load_stage1` reads the folder like a real one)."""
    index = {
        "_class_name": "WanImageToVideoPipeline", "_diffusers_version": "0.42.1",
        "transformer": ["diffusers", "WanTransformer3DModel"], "vae": ["swifti2v.models.codec", "PixelCodec"],
        "text_encoder": ["transformers", "UMT5EncoderModel"], "tokenizer": ["transformers", "PreTrainedTokenizerFast"],
        "transformer_2": [None, None], "image_encoder": [None, None], "image_processor": [None, None],
        "boundary_ratio": None, "expand_timesteps": False,
    }
    (folder / "model_index.json").write_text(json.dumps(index, indent=2))


def compose(base_folder: str | Path, transformer: str | Path, out: str | Path) -> Path:
    """A copy of a model folder (codec, text encoder, ...) with its transformer/ replaced by a trained one."""
    out = Path(out)
    shutil.copytree(base_folder, out, ignore=shutil.ignore_patterns("transformer"), dirs_exist_ok=True)
    shutil.copytree(transformer, out / "transformer")
    reshard(out / "transformer")
    return out


def reshard(folder: Path, max_shard_size: str = "15MB") -> None:
    """Rewrite a transformer folder's weights as safetensors shards of at most `max_shard_size` (plus the
    index diffusers loads them by), so no file in the package is large."""
    files = sorted(folder.glob("diffusion_pytorch_model*.safetensors"))
    state = {k: v for f in files for k, v in load_file(str(f)).items()}
    for f in [*files, *folder.glob("diffusion_pytorch_model*.index.json")]:
        f.unlink()
    save_torch_state_dict(state, folder, filename_pattern="diffusion_pytorch_model{suffix}.safetensors",
                          max_shard_size=max_shard_size)


def assemble(base: str | Path, stage1: str | Path, stage2: str | Path, out: str | Path = WEIGHTS_DIR / "tiny") -> Path:
    """Bundle trained transformer folders with the base's codec, text encoder and tokenizer into `out`."""
    base, out = Path(base), Path(out)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    compose(base / "stage1", stage1, tmp / "stage1")
    compose(base / "stage2", stage2, tmp / "stage2")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m swifti2v.training.tiny", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build-base", help="fit the codec and write the random-init Stage I and Stage II folders")
    b.add_argument("out", help="folder to write stage1/ and stage2/ into")
    b.add_argument("--seed", type=int, default=0, help="seed of the random init and the codec's clips (default 0)")
    z = sub.add_parser("zero-head", help="zero a saved transformer folder's output projection, in place")
    z.add_argument("folder", help="a transformer folder (config.json + safetensors)")
    c = sub.add_parser("compose", help="copy a model folder with its transformer/ replaced by a trained one")
    c.add_argument("base", help="model folder giving the codec, text encoder and tokenizer")
    c.add_argument("transformer", help="trained transformer folder (e.g. a run's final/)")
    c.add_argument("out", help="the new model folder")
    a = sub.add_parser("assemble", help="bundle trained transformers with a base into the package's weights")
    a.add_argument("--base", required=True, help="folder written by build-base (codec, text encoder, tokenizer)")
    a.add_argument("--stage1", required=True, help="trained Stage I transformer folder (train stage1 .../final)")
    a.add_argument("--stage2", required=True, help="trained Stage II transformer folder (stage-transition)")
    a.add_argument("--out", default=str(WEIGHTS_DIR / "tiny"), help="bundle folder (default: the package's)")
    e = sub.add_parser("export", help="a training checkpoint as a transformer folder (raw weights, or --ema)")
    e.add_argument("step", help="a training checkpoint folder, RUN/checkpoints/step-N")
    e.add_argument("like", help="a transformer folder with the same config (its config.json and sidecars are copied)")
    e.add_argument("out", help="the new transformer folder")
    e.add_argument("--ema", action="store_true", help="the run's exponential moving average, not the raw weights")
    d = sub.add_parser("deepen", help="a transformer folder with silent (identity) blocks inserted, to train on")
    d.add_argument("folder", help="a transformer folder (e.g. the bundle's stage2/transformer)")
    d.add_argument("out", help="the new transformer folder")
    d.add_argument("--after", type=int, nargs="+", required=True, metavar="I",
                   help="insert a copy of block I, silenced, after block I (0-based)")
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    if args.command == "build-base":
        print(build_base(args.out, seed=args.seed))
    elif args.command == "zero-head":
        zero_head_folder(args.folder)
    elif args.command == "compose":
        print(compose(args.base, args.transformer, args.out))
    elif args.command == "deepen":
        print(deepen_folder(args.folder, args.out, args.after))
    elif args.command == "export":
        print(checkpoint_transformer(Path(args.step), Path(args.like), Path(args.out), args.ema))
    else:
        print(assemble(args.base, args.stage1, args.stage2, args.out))


if __name__ == "__main__":
    main()
