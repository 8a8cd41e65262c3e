"""Can Stage I learn one clip's motion? The bundled Stage I trained on a single held-out pan alone (batch 1,
the recipe's sigma sampling, fresh noise every step), sampled with the shipped 4-step sampler every --every
steps: its loss and its reach on that clip (first-to-last-frame shift along the truth's, over the truth's;
1 = moves as far as the truth, 0 = static). A learnability check, not a way to train: a model that cannot
memorise one pan's motion will not learn pans from data.

    python recipes/tiny/stage1_overfit.py [--steps 300 --every 50 --lr 3e-4]
"""

import argparse
import json
import time

import torch

from swifti2v.data.synthetic import heldout_clip
from swifti2v.eval.metrics import phase_correlation
from swifti2v.models.adapter import WanVelocity
from swifti2v.pipeline import load_components, setup
from swifti2v.presets import get_preset
from swifti2v.reference import decoded_windows
from swifti2v.stage1 import generate_motion, stage1_velocity
from swifti2v.training.conditions import to_image
from swifti2v.training.objective import clip_loss, sample_train_sigmas

p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
p.add_argument("--steps", type=int, default=300)
p.add_argument("--every", type=int, default=50)
p.add_argument("--lr", type=float, default=3e-4)
a = p.parse_args()

run = get_preset("tiny")
s = setup(run)
comps = load_components(s, with_stage1=True)
stage1 = comps.stage1
clip = next(c for i in range(100) if (c := heldout_clip(10_000 + i, "camera", run.video.height, run.video.width,
                                                        run.video.frames)).motion == "pan")
image, text = to_image(clip.low[:, 0]), comps.text.encode(clip.caption, s.device)
truth = phase_correlation(clip.low[:, 0], clip.low[:, -1])
z = stage1.vae.encode(clip.low[None].to(s.device))
model = stage1.transformer.float().requires_grad_(True)
optimizer = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=0.0)
g = torch.Generator().manual_seed(0)


@torch.no_grad()
def reach() -> tuple[tuple[float, float], float]:
    model.eval()
    latents = generate_motion(stage1, image, text, run.stage1, run.video, run.seed, s.device)
    frames = torch.cat(list(decoded_windows(stage1.vae, latents)), dim=2)[0].cpu()
    model.train()
    shift = phase_correlation(frames[:, 0], frames[:, -1])
    return shift, (shift[0] * truth[0] + shift[1] * truth[1]) / (truth[0] ** 2 + truth[1] ** 2)


def report(step: int, losses: list[float], start: float) -> None:
    shift, r = reach()
    loss = sum(losses) / len(losses) if losses else None
    print(json.dumps({"step": step, "loss": loss, "shift_px": [round(v, 3) for v in shift], "reach": round(r, 4),
                      "seconds": round(time.time() - start)}), flush=True)


print(json.dumps({"clip": clip.caption, "truth_shift_px": [round(v, 2) for v in truth]}), flush=True)
start, losses = time.time(), []
report(0, losses, start)
velocity = stage1_velocity(stage1, image, text, run.video.frames, s.device)
trained = WanVelocity(model, velocity.text_embeds, image_embeds=velocity.image_embeds,
                      extra_channels=velocity.extra_channels, prediction=stage1.prediction)
for step in range(1, a.steps + 1):
    sigma = sample_train_sigmas(1, "logit_normal", g, shift=3.0)  # configs/train/tiny-stage1.toml's
    loss = clip_loss(trained, z, sigma, torch.randn(z.shape, generator=g).to(z.device))
    optimizer.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    losses.append(loss.item())
    if step % a.every == 0:
        report(step, losses[-a.every:], start)
