"""The house rules (docs/architecture.md), checked on the source itself: imports flow one way through the layers
with no cycle (imports inside functions and under TYPE_CHECKING included), only runners/, flows/ and the CLI
import Prefect, and modules and functions stay small enough to read."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Highest first: a module may import its own layer and the layers below it, never one above. The order of
# docs/architecture.md; a module in no layer fails test_every_module_has_a_layer.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("entry points", ("polypref.cli", "polypref.__main__", "flows")),
    ("runners", ("polypref.runners",)),
    ("pipeline", ("polypref.pipeline",)),
    ("outputs", ("polypref.build", "polypref.dataset", "polypref.fidelity", "polypref.analysis", "polypref.hub")),
    ("config", ("polypref.config",)),
    ("judging", ("polypref.judges", "polypref.generation", "polypref.filters")),
    ("inputs", ("polypref.llms", "polypref.items", "polypref.population")),
    (
        "base",
        (
            "polypref.safety",
            "polypref.files",
            "polypref.records",
            "polypref.errors",
            "polypref.strict",
            "polypref.assets",
            "polypref.prompts",
            "polypref.interrupt",
            "polypref.progress",
            "polypref.splits",
            "polypref",  # the package's own __init__ (its version)
        ),
    ),
]
PREFECT_HOMES = ("polypref.runners", "polypref.cli", "flows")
# an import inside a function: only to load a command's code when it runs (the CLI's start-up), or an optional or
# heavy third-party package; never to dodge a cycle
LAZY_OWN_IMPORTS = ("polypref.cli",)
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


@dataclass(frozen=True)
class Import:
    source: str  # the importing module
    target: str  # the imported module of ours
    line: int
    where: str  # "module", "function" or "type-checking"


def our_modules(root: Path = ROOT) -> dict[str, Path]:
    found = {}
    for path in (root / "src").rglob("*.py"):
        parts = list(path.relative_to(root / "src").with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    for path in (root / "flows").glob("*.py"):
        found[f"flows.{path.stem}"] = path
    return found


def all_imports(name: str, path: Path) -> Iterator[tuple[str, int, str, bool]]:
    """Every module an import statement of ``path`` names (absolute or relative), with its line, its place, and
    whether it is named (``from a import b`` names ``a.b``; ``a`` itself is only run on the way)."""
    is_package = path.name == "__init__.py"

    def visit(node: ast.AST, where: str) -> Iterator[tuple[str, int, str, bool]]:
        for child in ast.iter_child_nodes(node):
            here = where
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                here = "function"
            elif isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                here = "type-checking"
            if isinstance(child, ast.Import):
                for alias in child.names:
                    yield alias.name, child.lineno, here, True
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    package = name.split(".") if is_package else name.split(".")[:-1]
                    package = package[: len(package) - (child.level - 1)]
                    base = ".".join([*package, *([child.module] if child.module else [])])
                for alias in child.names:
                    yield f"{base}.{alias.name}", child.lineno, here, True
                yield base, child.lineno, here, False
            yield from visit(child, here)

    yield from visit(ast.parse(path.read_text(encoding="utf-8")), "module")


def our_imports(modules: dict[str, Path]) -> list[Import]:
    edges = set()
    for name, path in modules.items():
        for target, line, where, named in all_imports(name, path):
            while target and target not in modules:
                target = target.rpartition(".")[0]
            # a package's own __init__ runs on the way to any of its submodules: an edge only where it is named
            if target and target != name and (named or not name.startswith(target + ".")):
                edges.add(Import(name, target, line, where))
    return sorted(edges, key=lambda e: (e.source, e.target, e.line))


def cycles(edges: list[Import]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan), each sorted."""
    graph: dict[str, set[str]] = {}
    for e in edges:
        graph.setdefault(e.source, set()).add(e.target)
        graph.setdefault(e.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def connect(v: str) -> None:  # recursion depth is bounded by the module count (~100)
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return groups


def layer_of(module: str) -> int | None:
    best: tuple[int, int] | None = None
    for i, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and (best is None or len(prefix) > best[1]):
                best = (i, len(prefix))
    return None if best is None else best[0]


def upward(edges: list[Import]) -> list[str]:
    wrong = []
    for e in edges:
        here, there = layer_of(e.source), layer_of(e.target)
        if here is not None and there is not None and there < here:
            wrong.append(
                f"{e.source} ({LAYERS[here][0]}) imports {e.target} ({LAYERS[there][0]}) at line {e.line} ({e.where})"
            )
    return wrong


def _within(module: str, homes: tuple[str, ...]) -> bool:
    return any(module == home or module.startswith(home + ".") for home in homes)


def prefect_importers(modules: dict[str, Path]) -> list[str]:
    found = []
    for name, path in modules.items():
        for target, line, _, _ in all_imports(name, path):
            top = target.split(".")[0]
            if (top == "prefect" or top.startswith("prefect_")) and not _within(name, PREFECT_HOMES):
                found.append(f"{name} imports {target} at line {line}")
    return found


def sizes(modules: dict[str, Path]) -> tuple[dict[str, int], dict[str, int]]:
    """Lines of each module under src/, and of each function (decorators and docstring included)."""
    module_lines, function_lines = {}, {}
    for name, path in modules.items():
        if name.startswith("flows."):
            continue
        text = path.read_text(encoding="utf-8")
        module_lines[name] = len(text.splitlines())
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                function_lines[f"{name}:{node.name}@{node.lineno}"] = node.end_lineno - start + 1
    return module_lines, function_lines


MODULES = our_modules()
EDGES = our_imports(MODULES)


def test_no_import_cycles():
    assert cycles(EDGES) == []


def test_imports_flow_one_way():
    assert upward(EDGES) == []


def test_every_module_has_a_layer():
    assert [m for m in MODULES if layer_of(m) is None] == []


def test_own_modules_are_imported_inside_functions_only_by_the_cli():
    lazy = [
        f"{e.source} imports {e.target} at line {e.line}"
        for e in EDGES
        if e.where == "function" and not _within(e.source, LAZY_OWN_IMPORTS)
    ]
    assert lazy == []


def test_only_runners_flows_and_the_cli_import_prefect():
    assert prefect_importers(MODULES) == []


def test_modules_and_functions_stay_small():
    module_lines, function_lines = sizes(MODULES)
    too_long = {m: n for m, n in module_lines.items() if n > MAX_MODULE_LINES}
    too_long |= {f: n for f, n in function_lines.items() if n > MAX_FUNCTION_LINES}
    assert too_long == {}


# -- the checks themselves catch what they are for ------------------------------------------------------------


def _tree(tmp_path: Path, files: dict[str, str]) -> dict[str, Path]:
    for name, text in files.items():
        path = tmp_path / "src" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (tmp_path / "flows").mkdir(exist_ok=True)
    return our_modules(tmp_path)


def test_a_cycle_through_an_import_inside_a_function_is_found(tmp_path):
    modules = _tree(
        tmp_path,
        {
            "polypref/__init__.py": "",
            "polypref/pipeline/__init__.py": "from polypref.build import plan\n",
            "polypref/build/__init__.py": "",
            "polypref/build/plan.py": "def f():\n    from polypref import pipeline\n",
        },
    )
    assert cycles(our_imports(modules)) == [["polypref.build.plan", "polypref.pipeline"]]


def test_a_package_and_a_submodule_that_names_it_are_a_cycle(tmp_path):
    modules = _tree(
        tmp_path,
        {
            "polypref/__init__.py": "",
            "polypref/runners/__init__.py": "from polypref.runners import serve\n",
            "polypref/runners/serve.py": "from polypref import runners\nfrom polypref.runners import claims\n",
            "polypref/runners/claims.py": "",
        },
    )
    assert cycles(our_imports(modules)) == [["polypref.runners", "polypref.runners.serve"]]


def test_an_import_against_the_layers_is_found(tmp_path):
    modules = _tree(
        tmp_path,
        {
            "polypref/__init__.py": "",
            "polypref/judges/__init__.py": "",
            "polypref/judges/parsing.py": "from ..dataset import schema\n",
            "polypref/dataset/__init__.py": "",
            "polypref/dataset/schema.py": "from polypref.judges import parsing\n",
        },
    )
    assert upward(our_imports(modules)) == [
        "polypref.judges.parsing (judging) imports polypref.dataset (outputs) at line 1 (module)",
        "polypref.judges.parsing (judging) imports polypref.dataset.schema (outputs) at line 1 (module)",
    ]


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("def f():\n    from prefect.flows import flow\n", True),
        ("if True:\n    import prefect_ray\n", True),
        ("import prefecture\n", False),
    ],
)
def test_a_prefect_import_outside_its_homes_is_found(tmp_path, text, found):
    modules = _tree(tmp_path, {"polypref/__init__.py": "", "polypref/pipeline.py": text, "polypref/cli.py": text})
    assert bool(prefect_importers(modules)) is found
    assert all(line.startswith("polypref.pipeline ") for line in prefect_importers(modules))
