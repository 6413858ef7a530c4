"""The package's shape: no import cycle, no import from a lower floor to a higher one (imports inside functions
included; only ``if TYPE_CHECKING:`` blocks and the registries' lazy import strings are left out), and modules and
functions short enough to read in one sitting."""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "tta_bench"

# Floors, lowest first: a module imports only from its own floor or the ones below (docs: architecture.md). A name
# covers the module and everything under it ("data" is tta_bench/data/...); "" is the package itself.
FLOORS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("ground", ("registry", "config", "choices", "vocabulary", "errors", "metrics", "models", "distributed", "network",
                "package_data", "eta", "provenance", "device", "runconfig_file", "runlog", "files", "class_order")),
    ("records", ("records", "outputs", "progress", "downloads")),
    ("data", ("data",)),
    ("stream, summary, report", ("stream", "summary", "report")),
    ("teachers", ("teachers",)),
    ("methods", ("methods",)),
    ("engine", ("engine", "islands", "preflight")),
    ("sweep", ("sweep",)),
    ("top", ("cli", "api", "")),
)
# Lengths: cli.py, config.py and runconfig_file.py are left out of the function-length check while the command line is
# declared from the configuration's fields (run_parser is one long argparse declaration).
MAX_MODULE_LINES, MAX_FUNCTION_LINES, MAX_ENGINE_LINES = 400, 60, 300
LONG_FUNCTIONS_ALLOWED = ("cli", "config", "runconfig_file")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def floor(module: str) -> int:
    """The floor of ``module``: the longest name in FLOORS that covers it."""
    matches = [(len(name), level) for level, (_, names) in enumerate(FLOORS) for name in names
               if name == "" and module == "" or name and (module == name or module.startswith(name + "."))]
    assert matches, f"tta_bench.{module} has no floor: add it to FLOORS in {Path(__file__).name}"
    return max(matches)[1]


def _type_checking_only(tree: ast.Module) -> set[int]:
    """ids of the nodes inside ``if TYPE_CHECKING:`` blocks (annotations only, never run)."""
    blocks = [b for b in ast.walk(tree) if isinstance(b, ast.If) and "TYPE_CHECKING" in ast.unparse(b.test)]
    return {id(node) for block in blocks for node in ast.walk(block)}


def _targets(module: str, node: ast.Import | ast.ImportFrom, is_package: bool) -> set[str]:
    """The tta_bench modules an import statement loads: the submodule it names, else the module a name comes from
    (parent packages, which Python has loaded already, are not counted)."""
    if isinstance(node, ast.Import):
        names = [a.name.removeprefix("tta_bench").lstrip(".") for a in node.names if _ours(a.name)]
    else:
        if node.level:
            base = module.split(".") if module else []
            base = base if is_package else base[:-1]
            source = ".".join(base[:len(base) - node.level + 1] + ([node.module] if node.module else []))
        elif _ours(node.module or ""):
            source = node.module.removeprefix("tta_bench").lstrip(".")
        else:
            return set()
        names = [f"{source}.{alias.name}".lstrip(".") for alias in node.names]
    out = set()
    for name in names:
        while name and name not in MODULES:
            name = name.rpartition(".")[0]
        if name in MODULES and name != module:
            out.add(name)
    return out


def _ours(name: str) -> bool:
    return name == "tta_bench" or name.startswith("tta_bench.")


def import_graph() -> dict[str, set[str]]:
    """Module -> the tta_bench modules it imports, wherever in the file the import statement stands."""
    graph: dict[str, set[str]] = {}
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text())
        skip = _type_checking_only(tree)
        statements = [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom)) and id(n) not in skip]
        graph[module] = set().union(*(_targets(module, n, path.name == "__init__.py") for n in statements))
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_every_module_has_a_floor():
    for module in MODULES:
        floor(module)


def test_no_import_cycle():
    assert cycles(import_graph()) == []


def test_no_module_imports_from_a_higher_floor():
    upward = sorted(f"tta_bench.{a} ({FLOORS[floor(a)][0]}) imports tta_bench.{b} ({FLOORS[floor(b)][0]})"
                    for a, targets in import_graph().items() for b in targets if floor(b) > floor(a))
    assert upward == []


def test_the_checks_see_imports_inside_functions_and_find_cycles():
    """The checks themselves: an import inside a function counts, a TYPE_CHECKING one does not, a cycle is found."""
    tree = ast.parse("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..engine import run\n"
                     "def f():\n    from ..stream import Stream\n    from ...tta_bench import teachers\n"
                     "    import tta_bench.records\n    from .sources import sample_seed\n")
    skip = _type_checking_only(tree)
    imports = [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom)) and id(n) not in skip]
    found = set().union(*(_targets("data.build", n, False) for n in imports))
    assert {"stream", "records", "data.sources"} <= found and "engine" not in found
    assert _targets("methods.base", ast.parse("from . import METHODS").body[0], False) == {"methods"}
    assert _targets("data.ccc", ast.parse("from ...config import RunConfig").body[0], True) == {"config"}
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_engine_is_the_loop_and_modules_and_functions_are_short():
    engine_lines = len((PACKAGE / "engine.py").read_text().splitlines())
    assert engine_lines < MAX_ENGINE_LINES, f"engine.py has {engine_lines} lines: give the new job its own module"
    long_modules = {m: n for m, p in MODULES.items() if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES}
    assert long_modules == {}
    long_functions = []
    for module, path in MODULES.items():
        if module in LONG_FUNCTIONS_ALLOWED:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                if node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES:
                    long_functions.append(f"tta_bench.{module}.{node.name}")
    assert long_functions == []
