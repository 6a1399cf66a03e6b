"""The package's shape, checked: every module imports, no import cycles (lazy imports count too),
no stage imports the CLI, no target imports another target, and the core names no target."""
from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "deploykit"


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(module: str, path: Path) -> set[str]:
    """Every deploykit module `module` imports, at module level or inside functions, except under
    `if TYPE_CHECKING:` (annotations only, never executed)."""
    tree = ast.parse(path.read_text(), str(path))
    is_pkg = path.name == "__init__.py"
    found: set[str] = set()

    def visit(node):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for other in child.orelse:
                    visit(other)
                continue
            if isinstance(child, ast.Import):
                for alias in child.names:
                    if alias.name.startswith("deploykit"):
                        found.add(_existing(alias.name))
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = module.split(".") if is_pkg else module.split(".")[:-1]
                    anchor = anchor[: len(anchor) - (child.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                if not base.startswith("deploykit"):
                    continue
                for alias in child.names:
                    full = f"{base}.{alias.name}"
                    found.add(full if full in MODULES else _existing(base))
            visit(child)

    visit(tree)
    found.discard(module)
    return found


def _existing(name: str) -> str:
    while name not in MODULES and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


GRAPH = {m: _imports(m, p) for m, p in MODULES.items()}


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m != "deploykit.__main__"))  # __main__ runs the CLI
def test_every_module_imports(module):
    importlib.import_module(module)


def test_no_import_cycles():
    """Tarjan's strongly connected components over the import graph: every component is one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def strongconnect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(GRAPH.get(v, ())):
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(GRAPH):
        if v not in index:
            strongconnect(v)
    assert cycles == [], f"import cycles: {cycles}"


def test_no_stage_imports_the_cli():
    offenders = {m: sorted(i for i in imps if i == "deploykit.cli" or i.startswith("deploykit.cli."))
                 for m, imps in GRAPH.items()
                 if not (m in ("deploykit.cli", "deploykit.__main__") or m.startswith("deploykit.cli."))}
    assert {m: i for m, i in offenders.items() if i} == {}


def _target_of(module: str) -> str | None:
    m = re.match(r"^deploykit\.targets\.([a-z0-9_]+)(\.|$)", module)
    return m.group(1) if m and m.group(1) != "base" else None


def test_no_target_imports_another_target():
    bad = {}
    for module, imports in GRAPH.items():
        mine = _target_of(module)
        if mine is None:
            continue
        others = sorted(i for i in imports if _target_of(i) not in (None, mine))
        if others:
            bad[module] = others
    assert bad == {}


def test_the_core_names_no_target():
    """Adding a target is one folder and one registry line: the pipeline, config, CLI, validation,
    reporting and publishing hold no branch on a target's name."""
    from deploykit.targets import BUILTIN

    names = "|".join(map(re.escape, BUILTIN))
    pattern = re.compile(rf"""["']({names})["']""")
    core = [m for m in MODULES if not m.startswith("deploykit.targets")]
    hits = {}
    for module in core:
        for lineno, line in enumerate(MODULES[module].read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            if pattern.search(code):
                hits.setdefault(module, []).append(f"{lineno}: {line.strip()}")
    assert hits == {}
