import logging
import os
import shutil
import sys
from pathlib import Path

from conftest import run_process

ROOT = Path(__file__).resolve().parents[2]


def test_import_has_no_side_effects(tmp_path):
    code = (
        "import os, logging, sys; before = dict(os.environ); "
        "import swifti2v, swifti2v.pipeline, swifti2v.cli.main; "
        "assert dict(os.environ) == before, 'env changed'; "
        "assert not logging.getLogger().handlers, 'logging configured'; "
        "assert 'torch' not in sys.modules or not __import__('torch').cuda.is_initialized(), 'GPU touched'"
    )
    r = run_process([sys.executable, "-c", code], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert list(tmp_path.iterdir()) == [], "importing created files"
    assert not logging.getLogger("swifti2v").handlers


def test_ruff_is_clean():
    ruff = shutil.which("ruff") or os.path.join(os.path.dirname(sys.executable), "ruff")
    r = run_process([ruff, "check", str(ROOT)])
    assert r.returncode == 0, r.stdout + r.stderr


def test_functions_stay_short_and_the_command_table_small():
    """Short orchestrators: no function in src/ over 60 lines; cli/main.py is the command table, not the commands."""
    import ast

    long = []
    for path in sorted((ROOT / "src" / "swifti2v").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1 + len(node.decorator_list)
                if lines > 60:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({lines} lines)")
    assert long == []
    assert len((ROOT / "src" / "swifti2v" / "cli" / "main.py").read_text().splitlines()) <= 150
