"""Training data: metadata, the clip policy, bad files skipped and counted, the cache format."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import write_clip
from swifti2v.data.cache import collate, pad_text, trim_text
from swifti2v.data.videos import VideoClips, load_clip, read_metadata, scan
from swifti2v.errors import UserError


def _folder(tmp_path, rows, files):
    for name, frames in files.items():
        write_clip(tmp_path / name, frames, 64, 96, seed=len(name))
    (tmp_path / "metadata.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return tmp_path


def test_jsonl_and_csv_metadata(tmp_path):
    write_clip(tmp_path / "a.mp4", 9, 64, 96, seed=0)
    (tmp_path / "metadata.csv").write_text('file,caption\na.mp4,"a dog, running"\n')
    (r,) = read_metadata(tmp_path)
    assert (r.name, r.caption) == ("a.mp4", "a dog, running")


@pytest.mark.parametrize("caption", [None, "", "   "])
def test_missing_caption_is_an_error_naming_the_file(tmp_path, caption):
    row = {"file": "a.mp4"} if caption is None else {"file": "a.mp4", "caption": caption}
    folder = _folder(tmp_path, [row], {"a.mp4": 9})
    with pytest.raises(UserError, match=r"a\.mp4 has no caption"):
        read_metadata(folder)


def test_video_not_in_metadata_is_an_error_naming_it(tmp_path):
    folder = _folder(tmp_path, [{"file": "a.mp4", "caption": "x"}], {"a.mp4": 9, "b.mp4": 9})
    with pytest.raises(UserError, match=r"b\.mp4 has no caption"):
        read_metadata(folder)


def test_no_metadata_and_bad_json_are_clear(tmp_path):
    with pytest.raises(UserError, match="metadata.jsonl"):
        read_metadata(tmp_path)
    (tmp_path / "metadata.jsonl").write_text('{"file": "a.mp4", "caption": "x"}\n{oops\n')
    with pytest.raises(UserError, match=r"metadata.jsonl:2"):
        read_metadata(tmp_path)


def test_bad_files_are_skipped_and_counted(tmp_path):
    rows = [{"file": f, "caption": f"clip {f}"} for f in ("good.mp4", "short.mp4", "corrupt.mp4", "gone.mp4")]
    folder = _folder(tmp_path, rows, {"good.mp4": 9, "short.mp4": 5})
    (folder / "corrupt.mp4").write_bytes(b"\x00not a video" * 100)
    kept, report = scan(read_metadata(folder), frames=9, stride=1)
    assert [r.name for r in kept] == ["good.mp4"]
    assert report.kept == 1 and report.num_skipped == 3
    assert report.skipped == {"shorter than 9 frames": ["short.mp4"], "unreadable": ["corrupt.mp4"],
                              "missing": ["gone.mp4"]}
    assert "3 skipped" in report.summary()


def test_stride_needs_more_frames(tmp_path):
    folder = _folder(tmp_path, [{"file": "a.mp4", "caption": "x"}], {"a.mp4": 12})
    assert len(scan(read_metadata(folder), 5, 2)[0]) == 1  # needs 1 + 4*2 = 9
    assert len(scan(read_metadata(folder), 5, 3)[0]) == 0  # needs 13


def test_clip_policy_first_frames_resized_and_cropped(tmp_path):
    path = write_clip(tmp_path / "a.mp4", 12, 64, 96, seed=1)
    clip = load_clip(path, 5, 2, 32, 32)
    assert clip.shape == (3, 5, 32, 32) and clip.dtype == torch.float32
    assert float(clip.min()) >= -1.0 and float(clip.max()) <= 1.0
    every = load_clip(path, 9, 1, 32, 32)
    assert torch.allclose(clip, every[:, ::2])  # stride takes every other frame from frame 0


def test_a_file_broken_after_the_scan_is_replaced_not_fatal(tmp_path):
    rows = [{"file": "a.mp4", "caption": "a"}, {"file": "b.mp4", "caption": "b"}]
    folder = _folder(tmp_path, rows, {"a.mp4": 9, "b.mp4": 9})
    kept, _ = scan(read_metadata(folder), 9, 1)
    (folder / "a.mp4").write_bytes(b"garbage")
    ds = VideoClips(kept, 9, 1, 32, 32)
    item = ds[0]
    assert item["name"] == "b.mp4" and ds.failures == {"a.mp4": 1}


def test_text_trim_and_pad_round_trip():
    text = torch.zeros(1, 512, 8)
    text[0, :5] = torch.randn(5, 8)
    rows = trim_text(text)
    assert rows.shape == (5, 8)
    assert torch.equal(pad_text([rows])[0], text[0])
    batch = collate([{"text": rows, "z": torch.ones(2), "name": "a"}, {"text": rows[:2], "z": torch.ones(2),
                                                                      "name": "b"}])
    assert batch["text"].shape == (2, 512, 8) and batch["name"] == ["a", "b"] and batch["z"].shape == (2, 2)
