"""Learned metrics from local weights (`swifti2v eval --weights DIR`); nothing is downloaded at run time.

Each metric names the package behind it and the files it needs under DIR; when one is missing the metric
is skipped with one line saying what to put where. Networks come from maintained packages, never rewritten:

- lpips, dists (full reference: frame 0 against the input image; with --truth every frame): torchmetrics'
  LPIPS (AlexNet, v0.1 linear layers shipped in torchmetrics) and DISTS (VGG16; alpha/beta shipped in
  torchmetrics). Their backbones are torchvision's ImageNet weights, read from DIR/checkpoints/ (torch.hub's
  cache layout, so a copy of ~/.cache/torch/hub works). Need torchvision.
- subject_consistency (VBench's definition: per frame the mean of its DINO feature's cosine similarity to
  the first and to the previous frame): DINO ViT-B/16 through transformers, from DIR/dino-vitb16 (a copy of
  the Hub's facebook/dino-vitb16).
- clip_iqa (no-reference quality, CLIP-IQA's "Good photo." vs "Bad photo." prompt pair, 0..1): torchmetrics'
  CLIPImageQualityAssessment over transformers' CLIP, from DIR/clip-vit-base-patch16 (a copy of the Hub's
  openai/clip-vit-base-patch16). Chosen over MUSIQ: the maintained MUSIQ (pyiqa) needs a newer CUDA
  torch and a dozen more packages than the project does; CLIP-IQA gives the same kind of score through
  packages already here.
- vbench_* : VBench's video-quality dimensions through the `vbench` package (weights in DIR/vbench, its
  VBENCH_CACHE_DIR), only when that package imports in this environment.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

Tensor = torch.Tensor
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LearnedMetric:
    name: str
    package: str  # what computes it
    modules: tuple[str, ...]  # Python modules it imports
    files: tuple[str, ...]  # needed under --weights DIR (one of "a|b" will do)
    reference: bool  # compares two images (else scores one video)


METRICS = {m.name: m for m in (
    LearnedMetric("lpips", "torchmetrics LPIPS (AlexNet)", ("torchmetrics", "torchvision"),
                  ("checkpoints/alexnet-owt-7be5be79.pth",), True),
    LearnedMetric("dists", "torchmetrics DISTS (VGG16)", ("torchmetrics", "torchvision"),
                  ("checkpoints/vgg16-397923af.pth",), True),
    LearnedMetric("subject_consistency", "transformers ViTModel, DINO ViT-B/16", ("transformers",),
                  ("dino-vitb16/config.json", "dino-vitb16/model.safetensors|dino-vitb16/pytorch_model.bin",
                   "dino-vitb16/preprocessor_config.json"), False),
    LearnedMetric("clip_iqa", "torchmetrics CLIP-IQA over transformers CLIP ViT-B/16", ("torchmetrics", "transformers"),
                  ("clip-vit-base-patch16/config.json",
                   "clip-vit-base-patch16/model.safetensors|clip-vit-base-patch16/pytorch_model.bin",
                   "clip-vit-base-patch16/preprocessor_config.json|clip-vit-base-patch16/processor_config.json",
                   "clip-vit-base-patch16/tokenizer.json|clip-vit-base-patch16/vocab.json"), False),
    LearnedMetric("vbench", "VBench (video-quality dimensions)", ("vbench",), ("vbench",), False),
)}


def missing(metric: LearnedMetric, weights: Path | None) -> str | None:
    """Why the metric cannot run here (one line), or None."""
    for module in metric.modules:
        if not _importable(module):
            return f"{metric.name} skipped: needs the `{module}` package (pip install {module})"
    if weights is None:
        return f"{metric.name} skipped: no --weights DIR (it needs {', '.join(metric.files)} there)"
    absent = [f for f in metric.files if not any((weights / alt).exists() for alt in f.split("|"))]
    if absent:
        return f"{metric.name} skipped: {weights} lacks {', '.join(absent)}"
    return None


def _importable(module: str) -> bool:
    try:
        if importlib.util.find_spec(module) is None:
            return False
        if module == "torchvision":  # a torchvision built for another torch fails on import, not on lookup
            import torchvision  # noqa: F401
    except Exception:  # a broken install counts as missing
        return False
    return True


@contextlib.contextmanager
def hub_dir(path: Path) -> Iterator[None]:
    """torch.hub reads its cache from `path` (and would download there: missing() checks files first)."""
    old = torch.hub.get_dir()
    torch.hub.set_dir(str(path))
    try:
        yield
    finally:
        torch.hub.set_dir(old)


# --- building the networks (tests build the same classes with random weights) -----------------------------


def build_lpips(weights: Path):
    from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

    with hub_dir(weights):
        return LearnedPerceptualImagePatchSimilarity(net_type="alex", reduction="none", normalize=True)


def build_dists(weights: Path):
    # The network itself: torchmetrics' DISTS metric class rebuilds it (and reloads VGG16) on every update.
    from torchmetrics.functional.image.dists import DISTSNetwork

    with hub_dir(weights):
        return DISTSNetwork().eval()


def build_dino(weights: Path):
    from transformers import AutoImageProcessor, ViTModel

    folder = weights / "dino-vitb16"
    return ViTModel.from_pretrained(folder, add_pooling_layer=False).eval(), AutoImageProcessor.from_pretrained(folder)


class ClipFeatures(torch.nn.Module):
    """CLIP whose get_text/image_features return the projected embeddings as tensors: transformers 5 returns
    a model output (embeddings in .pooler_output) where torchmetrics 1.9's CLIP-IQA expects a tensor."""

    def __init__(self, clip):
        super().__init__()
        self.clip = clip

    def get_text_features(self, *args, **kwargs) -> Tensor:
        return _embedding(self.clip.get_text_features(*args, **kwargs))

    def get_image_features(self, *args, **kwargs) -> Tensor:
        return _embedding(self.clip.get_image_features(*args, **kwargs))


def _embedding(out) -> Tensor:
    return out if isinstance(out, Tensor) else out.pooler_output


def build_clip_iqa(weights: Path):
    from torchmetrics.multimodal import CLIPImageQualityAssessment
    from transformers import CLIPModel, CLIPProcessor

    folder = weights / "clip-vit-base-patch16"
    load = lambda: (ClipFeatures(CLIPModel.from_pretrained(folder).eval()), CLIPProcessor.from_pretrained(folder))
    return CLIPImageQualityAssessment(model_name_or_path=load, data_range=1.0)


BUILDERS: dict[str, Callable] = {"lpips": build_lpips, "dists": build_dists, "subject_consistency": build_dino,
                                 "clip_iqa": build_clip_iqa}


# --- scoring: frames are (N, 3, H, W) in [-1, 1] ------------------------------------------------------------


def _unit(x: Tensor) -> Tensor:
    return ((x.float() + 1) / 2).clamp(0, 1)


@torch.no_grad()
def pair_scores(net, a: Tensor, b: Tensor, device: torch.device) -> Tensor:
    """LPIPS or DISTS of a[i] against b[i], one pair at a time (bounded memory at 2K): (N,)."""
    net = net.to(device)
    return torch.stack([net(_unit(a[i:i + 1]).to(device), _unit(b[i:i + 1]).to(device)).flatten()[0].cpu()
                        for i in range(a.shape[0])])


@torch.no_grad()
def subject_consistency(dino, frames: Tensor, device: torch.device) -> Tensor:
    """VBench's subject consistency per frame 1..: mean of the DINO feature's cosine similarity (clamped at
    0) to frame 0 and to the previous frame: (N-1,)."""
    model, processor = dino
    model = model.to(device)
    feats = []
    for i in range(frames.shape[0]):
        inputs = processor(images=_unit(frames[i]), do_rescale=False, return_tensors="pt").to(device)
        feats.append(model(**inputs).last_hidden_state[:, 0].float().cpu())
    f = torch.nn.functional.normalize(torch.cat(feats), dim=-1)
    first, prev = (f[1:] * f[:1]).sum(-1).clamp_min(0), (f[1:] * f[:-1]).sum(-1).clamp_min(0)
    return (first + prev) / 2


@torch.no_grad()
def clip_iqa(metric, frames: Tensor, device: torch.device) -> Tensor:
    """CLIP-IQA quality per frame (probability of "Good photo." against "Bad photo."): (N,)."""
    metric = metric.to(device)
    return torch.stack([metric(_unit(frames[i:i + 1]).to(device)).flatten()[0].cpu() for i in range(frames.shape[0])])


VBENCH_DIMENSIONS = ("subject_consistency", "background_consistency", "motion_smoothness", "dynamic_degree",
                     "aesthetic_quality", "imaging_quality", "temporal_flickering")


def vbench_scores(video: Path, weights: Path, work: Path, device: torch.device) -> dict[str, float]:
    """VBench's video-quality dimensions (the ones VBench-I2V reports beside its image-suite ones) for one
    video file, through the `vbench` package in local mode (no downloads): {"vbench_<dimension>": score}."""
    os.environ["VBENCH_CACHE_DIR"] = str(weights / "vbench")
    from vbench import VBench  # imported here: it reads VBENCH_CACHE_DIR on import

    info = Path(importlib.util.find_spec("vbench").origin).parent / "VBench_full_info.json"
    work.mkdir(parents=True, exist_ok=True)
    VBench(str(device), str(info), str(work)).evaluate(videos_path=str(video), name="eval", local=True,
                                                       dimension_list=list(VBENCH_DIMENSIONS), mode="custom_input")
    import json

    results = json.loads((work / "eval_eval_results.json").read_text())
    return {f"vbench_{dim}": float(value[0]) for dim, value in results.items()}
