"""The bundled `tiny` models: they load through the real folder code, `generate` with every default makes
a real video, and the fidelity benchmark runs end to end on a reduced set."""

import json
import math
import sys

import torch

from conftest import run_process
from swifti2v import media
from swifti2v.bench.fidelity import FidelityConfig, run_fidelity, to_markdown
from swifti2v.eval.metrics import aligned_to_first, frame_psnr, grid_ratio
from swifti2v.models.codec import PixelCodec
from swifti2v.pipeline import load_components, setup
from swifti2v.presets import DEFAULT_PRESET, WEIGHTS_DIR, get_preset


def test_bundled_weights_load_and_are_small():
    assert DEFAULT_PRESET == "tiny"
    files = [p for p in (WEIGHTS_DIR / "tiny").rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) < 60 * 2**20
    assert all(p.suffix in (".json", ".safetensors") for p in files)
    comps = load_components(setup(get_preset("tiny")), with_stage1=True)
    codec = comps.stage2.vae.vae
    assert isinstance(codec, PixelCodec) and codec.config.fitted and comps.stage2.concat
    assert torch.allclose(codec.projection.T @ codec.projection, torch.eye(192), atol=1e-4)  # a PCA basis
    width = comps.stage2.transformer.config.num_attention_heads * comps.stage2.transformer.config.attention_head_dim
    assert width >= 2 * codec.z_dim  # the width rule: a token's detail fits through the DiT
    assert comps.stage2.transformer.config.in_channels == 2 * 192
    assert comps.stage1.transformer.config.in_channels == 2 * 192 + 4
    assert comps.text.encode("the camera pans left", "cpu").abs().sum() > 0


def test_default_generate_makes_a_real_video_without_block_noise(tmp_path):
    image = "examples/input.jpg"
    out = tmp_path / "demo.mp4"
    r = run_process([sys.executable, "-m", "swifti2v", "generate", "--image", image, "--prompt",
                     "the camera pans left", "--out", str(out), "-q"])
    assert r.returncode == 0, r.stderr
    assert "Loading checkpoint shards" not in r.stderr  # -q: no library progress bars either
    frames, _ = media.read_video(out)
    video = torch.cat([media.to_tensor(f) for f in frames]).permute(1, 0, 2, 3)  # (3, F, H, W)
    assert video.shape == (3, 33, 288, 512)
    assert (video[:, 1:] - video[:, :-1]).abs().mean() > 0.005  # it moves
    assert video.std(dim=(2, 3)).min() > 0.05  # no flat frame
    first = media.to_tensor(media.fit(media.load_image(image), 288, 512))[0]
    assert frame_psnr(video[:, :1], first[:, None]) >= 30
    # Not noise: every frame is close to the input moved by its own global shift (motion-compensated crops; the
    # old 768-channel models drew 8x8 block noise here: 17.3 dB and a token-edge ratio of ~4)
    assert aligned_to_first(video, 4, first)[1][1:].nanmean() >= 20
    assert grid_ratio(video[:, 1:], 8).max() < 2.0  # token edges: 1 = none
    info = json.loads(out.with_suffix(".json").read_text())
    assert info["config"]["preset"] == "tiny"


def test_fidelity_benchmark_on_a_reduced_set(tmp_path):
    cfg = FidelityConfig(clips=1, photo_clips=1, direction_clips=1, height=64, width=128, frames=17, steps=(1, 2),
                         save_videos=str(tmp_path / "rows"))
    result = run_fidelity(cfg)
    saved = {p.name for p in (tmp_path / "rows").iterdir()}
    assert {"truth.mp4", "input.png", "caption.txt", "bicubic-pixels-oracle.mp4"} <= saved and len(saved) == 13
    assert set(result["sets"]) == {"photo", "procedural"} and result["stage1_direction"]["clips"] == 1
    d = result["stage1_direction"]
    assert math.isfinite(d["reach"]) and d["stage1"] <= d["direction_only"]
    assert d["ground_truth_shifted_copy_db"] > d["shifted_copy_db"] - 100  # both measured: a NaN fails (a still: 100)
    for part in result["sets"].values():
        rows = {(r["row"], r["input"]): r for r in part["rows"]}
        assert len(rows) == 10
        pixels = rows[("bicubic (pixels)", "oracle")]
        assert pixels["gain"] == 0 and pixels["psnr_first_frame"] == 100  # the input image itself
        assert rows[("oracle warp", "oracle")]["psnr"] > pixels["psnr"]
        assert all(r["psnr_first_frame"] > 25 for r in rows.values())  # the anchor comes back through the codec
        assert pixels["detail_retention"] < rows[("oracle warp", "oracle")]["detail_retention"]
    assert len(result["bars"]) == 7 and all(isinstance(b["met"], bool) for b in result["bars"].values())
    table = to_markdown(result)
    assert table.count("\n| ") == 2 * 11 + 8 and "direction accuracy" in table


def test_a_zero_head_stage2_returns_the_reference_itself():
    """build_base's Stage II starts with its output projection at zero: an x0 residual of nothing, so the
    shipped 1-step sampler returns z_ref (bicubic through the codec) until training adds to it."""
    from swifti2v.models.adapter import WanVelocity, widen_patch_embedding
    from swifti2v.models.tiny import TEXT_DIM, Z, stage2_transformer
    from swifti2v.sampling.csg import Window
    from swifti2v.training.tiny import zero_head

    torch.manual_seed(0)
    dit = zero_head(widen_patch_embedding(stage2_transformer(), Z)).eval()
    velocity = WanVelocity(dit, torch.randn(1, 8, TEXT_DIM), prediction="x0")
    z_ref, noise = torch.randn(2, 1, Z, 4, 3, 5)
    with torch.no_grad():
        v = velocity(noise, torch.tensor([0.0, 0.0, 1.0, 1.0]), Window((0, 3, 4, 5), z_ref))
    assert torch.allclose((noise - v)[:, :, 2:], z_ref[:, :, 2:], atol=1e-5)  # one Euler step from sigma 1


def test_the_bundled_stage1_moves_the_readme_image_the_captioned_way():
    """Opposite prompts, opposite pans: Stage I's clip at 128x72 as the default job makes it (Stage II does not run),
    the displacement chained over every 8th frame as the default-job probe reads it. A left pan moves the content
    right. And no tiles: the codec ramps the tokens' edges (without it their grid ratio is 1.9 on average, 2.3 at
    worst; with it 0.7 and 0.8)."""
    from recipes.tiny.probes.default_job import chained_shift

    from swifti2v.api import SwiftI2V
    from swifti2v.config import stage1_size
    from swifti2v.eval.metrics import grid_ratio
    from swifti2v.reference import clip_windows
    from swifti2v.stage1 import generate_motion

    pipe = SwiftI2V.from_preset("tiny")
    c, cfg, cpu = pipe.components, pipe.cfg, torch.device("cpu")
    image = media.fit(media.load_image("examples/input.jpg"), *stage1_size(cfg.video, cfg.stage1))
    dx = {}
    for way in ("left", "right"):
        z = generate_motion(c.stage1, image, c.text.encode(f"the camera pans {way}", cpu), cfg.stage1, cfg.video,
                            cfg.seed, cpu)
        video = torch.cat(list(clip_windows(c.stage1.vae, [z])), dim=2)[0]  # (3, F, 72, 128)
        dx[way] = chained_shift(video)[0]
        assert grid_ratio(video[:, 1:], 8).max() < 1.2, way
    assert dx["left"] > 16 and dx["right"] < -16, dx  # the trained pan: 32 px at 128x72
