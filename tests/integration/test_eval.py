"""`swifti2v eval` as a user runs it: real video files in, REPORT.json/.md/.png out; learned metrics through
their real classes with random weights built here; clear one-line errors."""

import json
import sys

import pytest
import torch
from PIL import Image

from conftest import run_cli, run_process
from swifti2v.data.bank import heldout_photo_clip
from swifti2v.eval import learned
from swifti2v.media import VideoWriter, to_uint8, upsample

pytest.importorskip("cv2")
REQUIRED = {"psnr_frame0", "detail_retention", "flicker", "luma_pulse", "flow_warp_error", "dynamic_degree"}


def swifti2v(*args):
    return run_process([sys.executable, "-m", "swifti2v", *map(str, args)], timeout=300)


def _write(path, video):
    with VideoWriter(path, fps=16) as w:
        w.write(video[None])
    return path


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """A held-out camera pan over a photograph (the truth, 144x256x17), its first frame as the input image,
    the truth itself as a 'generated' video and the hybrid reference (bicubic x4, frame 0 = input)."""
    d = tmp_path_factory.mktemp("eval")
    clip = heldout_photo_clip(3, 144, 256, 17)
    Image.fromarray(to_uint8(clip.frames[None, :, :1])[0]).save(d / "input.png")
    bicubic = upsample(clip.low[None], 144, 256)[0]
    bicubic[:, 0] = clip.frames[:, 0]
    return {"dir": d, "image": d / "input.png", "caption": clip.caption, "truth": _write(d / "truth.mp4", clip.frames),
            "sharp": _write(d / "sharp.mp4", clip.frames), "bicubic": _write(d / "bicubic.mp4", bicubic)}


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """--weights DIR holding the learned metrics' folders with random weights: a DINO ViT (transformers'
    ViTModel) and a CLIP (CLIPModel + tokenizer + image processor), in the Hub's folder layout, smaller."""
    from transformers import (
        CLIPConfig,
        CLIPImageProcessor,
        CLIPModel,
        CLIPProcessor,
        CLIPTokenizer,
        ViTConfig,
        ViTImageProcessor,
        ViTModel,
    )

    d = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    vit = ViTConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128)
    ViTModel(vit, add_pooling_layer=False).save_pretrained(d / "dino-vitb16")
    ViTImageProcessor(size={"height": 224, "width": 224}).save_pretrained(d / "dino-vitb16")
    clip = d / "clip-vit-base-patch16"
    clip.mkdir()
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for ch in "abcdefghijklmnopqrstuvwxyz.":
        vocab[ch], vocab[ch + "</w>"] = len(vocab), len(vocab) + 1
    (clip / "vocab.json").write_text(json.dumps(vocab))
    (clip / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(str(clip / "vocab.json"), str(clip / "merges.txt"))
    CLIPProcessor(image_processor=CLIPImageProcessor(), tokenizer=tokenizer).save_pretrained(clip)
    small = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
    CLIPModel(CLIPConfig(text_config=dict(vocab_size=len(vocab), bos_token_id=0, eos_token_id=1, **small),
                         vision_config=dict(patch_size=16, **small), projection_dim=16)).save_pretrained(clip)
    return d


def test_report_contract_side_by_side_with_truth_and_learned_metrics(clips, weights, tmp_path):
    out = tmp_path / "reports" / "r"
    sidecar = {"inputs": {"prompt": clips["caption"]}, "plan": {"segments": [{"blocks": [1, 2]}, {"blocks": [3, 4]}]}}
    clips["sharp"].with_suffix(".json").write_text(json.dumps(sidecar))  # as `generate` writes it
    r = swifti2v("eval", clips["sharp"], clips["bicubic"], "--image", clips["image"], "--truth", clips["truth"],
                 "--weights", weights, "--out", out, "-q")
    assert r.returncode == 0, r.stderr
    report = json.loads(out.with_suffix(".json").read_text())
    sharp, bicubic = report["videos"]
    for v in (sharp, bicubic):
        assert REQUIRED | {"psnr", "ssim", "psnr_last_third", "subject_consistency", "clip_iqa"} <= set(v["metrics"])
        assert len(v["per_frame"]["detail_retention"]) == len(v["per_frame"]["psnr"]) == v["frames"] == 17
        assert 0 <= v["metrics"]["subject_consistency"] <= 1 and 0 <= v["metrics"]["clip_iqa"] <= 1
        assert "lpips" not in v["metrics"] or learned.missing(learned.METRICS["lpips"], weights) is None
    assert sharp["metrics"]["detail_retention"] > 0.8 > 0.2 > bicubic["metrics"]["detail_retention"]
    assert sharp["metrics"]["psnr"] > bicubic["metrics"]["psnr"] + 3
    assert sharp["metrics"]["psnr_frame0"] > 35  # frame 0 is the input, through H.264 (crf 18, 4:2:0 chroma)
    assert sharp["metrics"]["camera_motion_match"] == 1.0, (clips["caption"], sharp["camera_motion"])
    assert sharp["prompt"] == clips["caption"] and sharp["segment_starts"] == [9]  # from its sidecar
    assert "camera_motion_match" not in bicubic["metrics"] and bicubic["segment_starts"] == [13]  # no sidecar
    assert any("upsampled-looking" in f for f in bicubic["flags"]) and not sharp["flags"]
    md = out.with_suffix(".md").read_text()
    assert "sharp.mp4" in md and "bicubic.mp4" in md and "![per-frame curves](r.png)" in md
    assert Image.open(out.with_suffix(".png")).size[0] > 500


def test_missing_weights_are_skipped_with_one_line_each(clips, tmp_path):
    out = tmp_path / "r"
    r = swifti2v("eval", clips["sharp"], "--image", clips["image"], "--weights", tmp_path, "--out", out, "-q")
    assert r.returncode == 0, r.stderr
    report = json.loads(out.with_suffix(".json").read_text())
    metrics = report["videos"][0]["metrics"]
    assert not {"subject_consistency", "clip_iqa", "psnr", "lpips"} & set(metrics)  # absent, not null
    assert set(metrics) >= REQUIRED
    skipped = {line.split()[0]: line for line in report["skipped"]}
    assert set(skipped) == set(learned.METRICS)
    assert "dino-vitb16/config.json" in skipped["subject_consistency"]
    assert all("\n" not in line for line in report["skipped"])


def test_bad_inputs_exit_2_with_one_line(clips, tmp_path, capsys):
    """In this process (`run_cli`: the same `main`, exit code and stderr, no interpreter start-up each)."""
    broken = tmp_path / "broken.mp4"
    broken.write_text("not a video")
    small = _write(tmp_path / "small.mp4", torch.zeros(3, 17, 64, 128))
    cases = [(("eval", broken, "--image", clips["image"]), "is not a readable video"),
             (("eval", clips["sharp"], "--image", clips["image"], "--truth", small), "same size and length"),
             (("eval", tmp_path / "none.mp4", "--image", clips["image"]), "not found"),
             (("eval", clips["sharp"], "--image", tmp_path / "none.png"), "not found"),
             (("eval", clips["sharp"], "--image", clips["image"], "--low-res", "1x1x"), "--low-res"),
             (("eval", clips["sharp"], "--image", clips["image"], "--weights", broken), "is not a folder")]
    for args, words in cases:
        r = run_cli(capsys, *map(str, args), "--out", str(tmp_path / "r"))
        assert r.returncode == 2 and words in r.stderr, (args, r.stderr)
        assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert not list(tmp_path.glob("r.*"))


def test_lpips_and_dists_run_with_random_torchvision_backbones(tmp_path):
    """Through torchmetrics with the torchvision backbones read from --weights DIR/checkpoints/ (random here)."""
    if learned.missing(learned.METRICS["lpips"], tmp_path) and not learned._importable("torchvision"):
        pytest.skip("torchvision does not import beside this torch build")
    import torchvision

    (tmp_path / "checkpoints").mkdir()
    torch.save(torchvision.models.alexnet().state_dict(), tmp_path / "checkpoints" / "alexnet-owt-7be5be79.pth")
    torch.save(torchvision.models.vgg16().state_dict(), tmp_path / "checkpoints" / "vgg16-397923af.pth")
    a = torch.rand(3, 3, 96, 128) * 2 - 1
    for name in ("lpips", "dists"):
        assert learned.missing(learned.METRICS[name], tmp_path) is None
        net = learned.BUILDERS[name](tmp_path)
        same, other = (learned.pair_scores(net, a, b, torch.device("cpu")) for b in (a, a.flip(-1)))
        assert same.shape == (3,) and same.abs().max() < 1e-4 and other.min() > same.max()
