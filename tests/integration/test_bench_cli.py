"""`swifti2v bench cost` and `bench scaling --long` through the command line, run in this process: JSON out, user
errors in one line."""

import json

import pytest

from conftest import run_cli


def test_bench_cost_cli_prints_json(capsys):
    out = run_cli(capsys, "bench", "cost", "--preset", "debug-random", "--json", "--frames", "9,25")
    assert out.returncode == 0, out.stderr
    results = json.loads(out.stdout)
    assert [r["video"]["frames"] for r in results] == [9, 25]
    bad = run_cli(capsys, "bench", "cost", "--frames", "80")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and "77 or 81" in bad.stderr


def test_bench_cost_gpus_flag(capsys):
    out = run_cli(capsys, "bench", "cost", "--preset", "debug-random", "--json", "--gpus", "1,2", "--parallel", "ring",
                  "--link-gbps", "50")
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)[0]["parallel"]
    assert [x["gpus"] for x in rows] == [1, 2] and rows[1]["kind"] == "ring" and rows[1]["link_gbps"] == 50
    bad = run_cli(capsys, "bench", "cost", "--gpus", "0")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and "--gpus" in bad.stderr


@pytest.mark.slow
@pytest.mark.subprocess
def test_bench_scaling_long_measures_both_join_methods(capsys, tmp_path):
    """Four real `generate` processes (debug-random, one window at 5 frames, two at 37), both join methods."""
    out = run_cli(capsys, "bench", "scaling", "--long", "--preset", "debug-random", "--frames", "5,37", "-q",
                  "--out", str(tmp_path / "long"))
    assert out.returncode == 0, out.stderr
    result = json.loads((tmp_path / "long.json").read_text())
    rows = {(r["mode"], r["frames"]): r for r in result["table"]}
    assert set(rows) == {(m, f) for m in ("last-frame", "context") for f in (5, 37)}
    assert rows["last-frame", 37]["stage1_windows"] == rows["context", 37]["stage1_windows"] == 2
    assert all(r["stage1_peak_gib"] > 0 and r["stage2_peak_gib"] > 0 for r in rows.values())
    assert rows["context", 5]["wall_per_frame_s_ratio"] == 1.0
    assert "| context | 37 | 2 |" in (tmp_path / "long.md").read_text()


@pytest.mark.slow
@pytest.mark.subprocess
def test_bench_scaling_tiles_compares_tiled_stage2_with_whole_frames(capsys, tmp_path):
    """Two real `generate` processes (debug-random, 5 frames): Stage II in 128-px tiles (3 across) and whole."""
    out = run_cli(capsys, "bench", "scaling", "--tiles", "128", "--preset", "debug-random", "--frames", "5", "-q",
                  "--out", str(tmp_path / "tiles"))
    assert out.returncode == 0, out.stderr
    result = json.loads((tmp_path / "tiles.json").read_text())
    (row,) = result["table"]
    assert row["tiles"]["stage2_s"] > 0 and row["whole"]["stage2_s"] > 0 and row["stage2_ratio"] > 0
    assert {r["mode"] for r in result["runs"]} == {"tiles", "whole"}
    assert "whole÷tiles" in (tmp_path / "tiles.md").read_text()
    bad = run_cli(capsys, "bench", "scaling", "--tiles", "128", "--long", "-q", "--out", str(tmp_path / "x"))
    assert bad.returncode == 2 and "--tiles" in bad.stderr
