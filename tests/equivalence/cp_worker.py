"""Run under torchrun by test_context_parallel.py: each DiT call single-process, then split over the ranks
(diffusers' context parallelism through models/parallel.py); rank 0 writes the largest differences."""

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from swifti2v.models import debug
from swifti2v.models.adapter import WanVelocity, widen_patch_embedding
from swifti2v.models.parallel import context_parallel
from swifti2v.sampling.csg import Window


def calls(kind: str | None):
    """(name, velocity callable, x, sigma, window): a Stage II CSG window (anchor + neighbour at t=0, two noisy
    blocks, RoPE at global block indices 0, 4, 5, 6, z_ref concatenated) and a Stage I whole-clip call. With
    `kind`, the DiTs are split over the processes first, as the pipeline does (before the adapter exists)."""
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    split = (lambda dit: context_parallel(dit, kind, dist.get_world_size())) if kind else (lambda dit: dit)
    stage2 = split(widen_patch_embedding(debug.tiny_stage2_transformer(), debug.STAGE2_Z).eval())
    text = torch.randn(1, 512, debug.TEXT_DIM, generator=g)
    x2 = torch.randn(1, debug.STAGE2_Z, 4, 8, 16, generator=g)
    window = Window(positions=(0, 4, 5, 6), reference=torch.randn(1, debug.STAGE2_Z, 4, 8, 16, generator=g))
    sigma2 = torch.tensor([0.0, 0.0, 0.7, 0.7])
    stage1 = split(debug.tiny_stage1_transformer().eval())
    x1 = torch.randn(1, debug.STAGE1_Z, 4, 8, 16, generator=g)
    extra = torch.randn(1, debug.STAGE1_Z + 4, 4, 8, 16, generator=g)
    image = torch.randn(1, 257, 16, generator=g)
    return [("stage2 CSG window", WanVelocity(stage2, text), x2, sigma2, window),
            ("stage1 whole clip", WanVelocity(stage1, text, image_embeds=image, extra_channels=extra), x1,
             torch.tensor(0.8), None)]


def tiled_decode() -> dict:
    """Three latent blocks decoded in 2x4 overlapping tiles by one process, then with the tiles spread over
    the processes (each decodes its own, the frames summed over them)."""
    from swifti2v.models.parallel import decode_shard
    from swifti2v.models.vae import WanVAE

    torch.manual_seed(0)
    vae = WanVAE(debug.tiny_vae_22().eval())
    z = torch.randn(1, debug.STAGE2_Z, 3, 8, 12, generator=torch.Generator().manual_seed(1))
    whole, shared = vae.decoder(tile=5, overlap=2), vae.decoder(tile=5, overlap=2, shard=decode_shard())
    diff = 0.0
    with torch.no_grad():
        for b in range(3):
            diff = max(diff, float((whole(z[:, :, b : b + 1]) - shared(z[:, :, b : b + 1])).abs().max()))
    return {"max_abs_diff": diff, "tiles": len(whole.decoders), "tiles_this_rank": len(shared.decoders)}


def main(kind: str, out: str) -> None:
    dist.init_process_group("gloo")
    diffs = {}
    with torch.no_grad():
        for (name, single, x, sigma, window), (_, parallel, *_) in zip(calls(None), calls(kind), strict=True):
            seen = []
            hook = parallel.transformer.blocks[1].register_forward_pre_hook(
                lambda module, args, seen=seen: seen.append(args[0].shape[1]))
            reference, split = single(x, sigma, window), parallel(x, sigma, window)
            hook.remove()
            diffs[name] = {"max_abs_diff": float((split - reference).abs().max()), "tokens": x[0, 0].numel() // 4,
                           "tokens_per_rank": seen[-1]}
    diffs["tiled decode"] = tiled_decode()
    if dist.get_rank() == 0:
        Path(out).write_text(json.dumps(diffs))
    dist.barrier()  # gloo's barrier waits for every collective still in flight (the async ones diffusers issues)
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
