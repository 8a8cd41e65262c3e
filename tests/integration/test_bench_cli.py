"""`swifti2v bench cost` through the command line, run in this process: JSON out, user errors in one line."""

import json

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
