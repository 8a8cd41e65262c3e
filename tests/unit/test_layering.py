"""The floors of `src/swifti2v`, pinned: every module imports only its own floor or those below it, nothing
imports in a circle, and sampling/ is pure torch. Lazy imports (inside functions) count as much as top-level ones:
a circle closed at run time is a circle. docs/architecture.md draws the same table."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"

# Lowest floor first. A module's floor is that of its longest listed prefix; a new module must be placed here.
FLOORS = {
    0: ("swifti2v.errors", "swifti2v.files", "swifti2v.config", "swifti2v.presets", "swifti2v.plan",
        "swifti2v.sampling"),
    1: ("swifti2v.models",),
    2: ("swifti2v.media", "swifti2v.reference", "swifti2v.stage1", "swifti2v.stage2", "swifti2v.footprint",
        "swifti2v.memory", "swifti2v.runtime", "swifti2v.workdir", "swifti2v.outputs", "swifti2v.pipeline",
        "swifti2v.api"),
    3: ("swifti2v.data",),
    4: ("swifti2v.training", "swifti2v.eval"),
    5: ("swifti2v.bench",),
    6: ("swifti2v", "swifti2v.__main__", "swifti2v.cli", "swifti2v.ui", "swifti2v.serve", "swifti2v.client"),
}
STDLIB = set(sys.stdlib_module_names)


def module_names(src: Path = SRC) -> dict[str, Path]:
    names = {}
    for path in (src / "swifti2v").rglob("*.py"):
        parts = path.relative_to(src).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def imported(name: str, path: Path, modules: set[str]) -> set[str]:
    """Every module `name` imports anywhere in its file (top level, functions, TYPE_CHECKING), as full names;
    a package's own modules only (`from swifti2v import media` is swifti2v.media, not the package)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([node.module] if node.module else []))
            subs = {f"{base}.{a.name}" for a in node.names} & modules
            found.update(subs)
            if len(subs) < len(node.names):
                found.add(base)
    return found


def import_graph(src: Path = SRC) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """(module -> the project's modules it imports, module -> the top-level outside packages it imports)."""
    paths = module_names(src)
    inside, outside = {}, {}
    for name, path in paths.items():
        found = imported(name, path, set(paths))
        inside[name] = {_owner(m, paths) for m in found if m.split(".")[0] == "swifti2v"} - {name}
        outside[name] = {m.split(".")[0] for m in found if m.split(".")[0] != "swifti2v"}
    return inside, outside


def _owner(module: str, paths: dict[str, Path]) -> str:
    """The project module a dotted name lives in (`swifti2v.config.RunConfig` -> swifti2v.config)."""
    while module not in paths:
        module = module.rpartition(".")[0]
    return module


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while not component or component[-1] != v:
                component.append(stack.pop())
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def floor(module: str) -> int | None:
    best = None
    for level, prefixes in FLOORS.items():
        for p in prefixes:
            inside = module == p or (module.startswith(p + ".") and p != "swifti2v")  # the root package: itself only
            if inside and (best is None or len(p) > len(best[1])):
                best = (level, p)
    return None if best is None else best[0]


GRAPH, OUTSIDE = import_graph()


def test_the_checker_finds_a_circle_and_its_members():
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert circles({"a": {"b"}, "b": set()}) == []


def test_the_graph_sees_lazy_and_package_relative_imports():
    assert "swifti2v.sampling.steps" in GRAPH["swifti2v.sampling.csg"]  # from swifti2v.sampling.steps import
    assert "swifti2v.api" in GRAPH["swifti2v"]  # a lazy import inside __getattr__
    assert "swifti2v" not in GRAPH["swifti2v.pipeline"]  # `from swifti2v import media` is the module


def test_no_import_circle():
    assert circles(GRAPH) == [], "import circle(s); move the shared part down a floor (docs/architecture.md)"


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_every_module_has_a_floor(module):
    assert floor(module) is not None, f"{module} is on no floor: add it to FLOORS and docs/architecture.md"


def test_imports_go_down_or_sideways_only():
    upward = [f"{m} (floor {floor(m)}) -> {t} (floor {floor(t)})"
              for m, targets in sorted(GRAPH.items()) for t in sorted(targets) if floor(t) > floor(m)]
    assert upward == []


def test_sampling_is_pure_torch():
    for module, targets in GRAPH.items():
        if module.startswith("swifti2v.sampling"):
            assert all(t.startswith("swifti2v.sampling") for t in targets), (module, targets)
            assert OUTSIDE[module] - STDLIB - {"torch", "__future__"} == set(), (module, OUTSIDE[module])


def test_nothing_imports_the_command_line():
    """But the HTTP service, whose job options are the generate command's own (its parser checks them)."""
    users = {m for m, targets in GRAPH.items() for t in targets if t.startswith("swifti2v.cli")}
    fronts = {"swifti2v.__main__"} | {m for m in GRAPH if m.startswith(("swifti2v.cli", "swifti2v.serve"))}
    assert users <= fronts, users
