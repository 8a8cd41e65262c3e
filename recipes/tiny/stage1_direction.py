"""Stage I checkpoints on held-out pans: the share that moves the captioned way (the bar: >= 80%) and how far,
as `bench fidelity` measures it — the quick curve to follow while Stage I trains — and how much the caption
changes its first denoising step ("caption spread": the x0 predictions from pure noise, sigma = 1, for the same
held-out image under the 8 pan captions, their mean distance to their mean over the mean's norm; 0 = the
caption is ignored).

    python recipes/tiny/stage1_direction.py shipped outputs/tiny-cpu/s1/checkpoints/step-0000500 [--clips 8]

A checkpoint is 'shipped' (the bundled Stage I), a training checkpoint folder (accelerate's
model.safetensors) or a transformer folder.
"""

import argparse
import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from swifti2v.bench.fidelity import FidelityConfig, direction_accuracy
from swifti2v.data.synthetic import PAN_DIRECTIONS, heldout_clip
from swifti2v.pipeline import load_components, setup
from swifti2v.presets import get_preset
from swifti2v.sampling.noise import clip_noise
from swifti2v.stage1 import stage1_velocity
from swifti2v.training.conditions import to_image

p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
p.add_argument("checkpoints", nargs="+")
p.add_argument("--clips", type=int, default=8, help="held-out pan clips")
a = p.parse_args()

torch.set_grad_enabled(False)
run = get_preset("tiny")
s = setup(run)
comps = load_components(s, with_stage1=True)
transformer = comps.stage1.transformer
shipped = {k: v.clone() for k, v in transformer.state_dict().items()}


def weights(path: str) -> dict[str, torch.Tensor]:
    if path == "shipped":
        return shipped
    folder = Path(path)
    files = [folder / "model.safetensors"] if (folder / "model.safetensors").is_file() else \
        sorted(folder.glob("diffusion_pytorch_model*.safetensors"))
    return {k: v for f in files for k, v in load_file(f).items()}


def caption_spread() -> float:
    clip = heldout_clip(10_000, "camera", run.video.height, run.video.width, run.video.frames)
    image, vae = to_image(clip.low[:, 0]), comps.stage1.vae
    noise = clip_noise(0, "stage1", (1, vae.z_dim, run.video.num_blocks, image.height // vae.spatial,
                                     image.width // vae.spatial))
    x0 = torch.cat([noise - stage1_velocity(comps.stage1, image, comps.text.encode(f"the camera pans {d}", s.device),
                                            run.video.frames, s.device)(noise, torch.ones(1))
                    for d in PAN_DIRECTIONS])
    mean = x0.mean(0, keepdim=True)
    return float((x0 - mean).flatten(1).norm(dim=1).mean() / mean.norm())


result = {}
for c in a.checkpoints:
    transformer.load_state_dict(weights(c), strict=True)
    d = direction_accuracy(comps, run, FidelityConfig(direction_clips=a.clips), s.device, lambda *_: None)
    result[c] = {k: round(v, 3) for k, v in d.items()} | {"caption_spread": round(caption_spread(), 4)}
    print(c, json.dumps(result[c]), flush=True)
