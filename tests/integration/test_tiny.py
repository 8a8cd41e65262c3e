"""The bundled `tiny` models: they load through the real folder code, `generate` with every default makes
a real video, and the fidelity benchmark runs end to end on a reduced set."""

import json
import subprocess
import sys

import torch

from swifti2v import media
from swifti2v.bench.fidelity import FidelityConfig, run_fidelity, to_markdown
from swifti2v.bench.metrics import frame_psnr
from swifti2v.models.codec import PixelCodec
from swifti2v.models.tiny import WEIGHTS_DIR
from swifti2v.pipeline import load_components, setup
from swifti2v.presets import DEFAULT_PRESET, get_preset


def test_bundled_weights_load_and_are_small():
    assert DEFAULT_PRESET == "tiny"
    files = [p for p in (WEIGHTS_DIR / "tiny").rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) < 50 * 2**20
    assert all(p.suffix in (".json", ".safetensors") for p in files)
    comps = load_components(setup(get_preset("tiny")), with_stage1=True)
    assert isinstance(comps.stage2.vae.vae, PixelCodec) and comps.stage2.concat
    assert comps.stage2.transformer.config.in_channels == 2 * 768
    assert comps.stage1.transformer.config.in_channels == 2 * 768 + 4
    assert comps.text.encode("the camera pans left", "cpu").abs().sum() > 0


def test_default_generate_makes_a_real_video(tmp_path):
    image = "examples/input.jpg"
    out = tmp_path / "demo.mp4"
    r = subprocess.run([sys.executable, "-m", "swifti2v", "generate", "--image", image, "--prompt",
                        "the camera pans left", "--out", str(out), "-q"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    frames, _ = media.read_video(out)
    video = torch.cat([media.to_tensor(f) for f in frames]).permute(1, 0, 2, 3)  # (3, F, H, W)
    assert video.shape == (3, 33, 288, 512)
    assert (video[:, 1:] - video[:, :-1]).abs().mean() > 0.005  # it moves
    assert video.std(dim=(2, 3)).min() > 0.05  # no flat frame
    first = media.to_tensor(media.fit(media.load_image(image), 288, 512))[0]
    assert frame_psnr(video[:, :1], first[:, None]) >= 30
    info = json.loads(out.with_suffix(".json").read_text())
    assert info["config"]["preset"] == "tiny"


def test_fidelity_benchmark_on_a_reduced_set():
    cfg = FidelityConfig(clips=1, direction_clips=1, height=64, width=128, frames=17, steps=(1, 2))
    result = run_fidelity(cfg)
    rows = {(r["row"], r["input"]): r for r in result["rows"]}
    assert len(rows) == 10 and result["stage1_direction"]["clips"] == 1
    assert rows[("oracle warp", "oracle")]["psnr"] > rows[("bicubic", "oracle")]["psnr"]
    assert all(r["psnr_first_frame"] > 40 for r in rows.values())  # the anchor comes back (near) exactly
    table = to_markdown(result)
    assert table.count("\n| ") == 11 and "direction accuracy" in table
