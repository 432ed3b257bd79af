"""The layout is the architecture: every import inside livedb points down the layers.

Read with the standard library's `ast`, without importing livedb, so a circle fails
here by name rather than as an ImportError somewhere else. ARCHITECTURE.md describes the
layers; a new module is placed in `LAYERS` below, at the lowest layer it can live in.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "livedb"

LAYERS: list[tuple[str, list[str]]] = [
    ("L0 values", ["_errors", "_ids", "_identity", "_values", "_validators", "_schema",
                   "_results"]),
    ("L1 engine", ["_index", "_store", "_searchindex", "_engines", "_engines.memory",
                   "_engines.sqlite", "_engines.shared_sqlite", "_engines.postgres"]),
    ("L2 transaction", ["_catalog", "_transaction"]),
    ("L3 reads", ["_search", "_query"]),
    ("L4 kernel", ["_kernel", "_shared"]),
    ("L5 functions", ["_functions", "_crons"]),
    ("L6 features", ["_scheduler", "_storage", "_reactive", "_client"]),
    ("L7 facade", ["_database", "auth", "export", "ui", "_serve.wire", "_serve.backend",
                   "_serve.tokens", "_serve.registry", "_serve.hub", "_serve.sync",
                   "_serve.server", "_serve", "_serve.cli"]),
    ("L8 package", ["", "__main__"]),
]
"""Layers, lowest first; within a layer a module may import only those listed before it
(a total order, so no circle is possible)."""

LAZY = {("_serve", "_serve.server"): "aiohttp"}
"""Imports of livedb modules made at call time, allowed only because the imported module
needs an optional third-party package at its top (named here): `import livedb` must not
import aiohttp. The test checks that the named package is still imported there."""

RANK = {name: (layer, place) for layer, (_title, names) in enumerate(LAYERS)
        for place, name in enumerate(names)}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def livedb_imports(name: str) -> list[tuple[int, str, bool]]:
    """`(line, imported livedb module, inside a function)` for each import in `name`,
    including those under `if TYPE_CHECKING:` (annotations must point down too)."""
    path = MODULES[name]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    inside: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            inside.update(id(n) for n in ast.walk(node) if n is not node)
    found: list[tuple[int, str, bool]] = []
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".") if package else []
                base = base[:len(base) - (node.level - 1)]
                if node.module:
                    targets = [".".join(["livedb", *base, node.module])]
                else:
                    targets = [".".join(["livedb", *base, a.name]) for a in node.names]
            elif node.module:
                targets = [node.module]
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr == "import_module" and node.args
              and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)):
            targets = [node.args[0].value]
        for target in targets:
            if target == "livedb" or target.startswith("livedb."):
                module = target.removeprefix("livedb").removeprefix(".")
                while module and module not in MODULES:
                    module = module.rpartition(".")[0]  # `from livedb import Database`
                found.append((node.lineno, module, id(node) in inside))
    return found


def test_every_module_has_a_layer():
    assert sorted(set(MODULES) - set(RANK)) == [], "place new modules in LAYERS"
    assert sorted(set(RANK) - set(MODULES)) == [], "LAYERS names modules that are gone"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_point_down(name):
    """Each import names a module ranked strictly below the importer; none is made at
    call time except the ones in LAZY."""
    problems = []
    for line, target, at_call_time in livedb_imports(name):
        where = f"livedb/{MODULES[name].relative_to(PACKAGE)}:{line}"
        if RANK[target] >= RANK[name]:
            problems.append(f"{where} imports {target or 'livedb'} "
                            f"({LAYERS[RANK[target][0]][0]}), not below "
                            f"{name or 'livedb'} ({LAYERS[RANK[name][0]][0]})")
        if at_call_time and (name, target) not in LAZY:
            problems.append(f"{where} imports {target} inside a function")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(("importer", "target"), sorted(LAZY))
def test_lazy_imports_still_spare_an_optional_dependency(importer, target):
    tree = ast.parse(MODULES[target].read_text(encoding="utf-8"))
    statements = [*tree.body, *(s for node in tree.body if isinstance(node, ast.Try)
                                for s in node.body)]
    top = {(alias.name if isinstance(node, ast.Import) else node.module or "").split(".")[0]
           for node in statements if isinstance(node, ast.Import | ast.ImportFrom)
           for alias in node.names}
    assert LAZY[(importer, target)] in top
    assert any(lazy for _line, t, lazy in livedb_imports(importer) if t == target)


def test_no_circle_can_hide_in_star_or_dynamic_imports():
    """The rank check above covers every static import; this makes sure livedb has no
    other way in (`__import__`, star imports) that the check would not see."""
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                assert all(a.name != "*" for a in node.names), f"{name}: star import"
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                assert node.func.id != "__import__", f"{name}: __import__"


def test_the_check_catches_an_upward_import(tmp_path, monkeypatch):
    """The checker itself: a store that imports the kernel is reported."""
    fake = tmp_path / "livedb"
    fake.mkdir()
    store = fake / "_store.py"
    store.write_text(MODULES["_store"].read_text(encoding="utf-8")
                     + "\nfrom ._kernel import Kernel\n"
                     "def f():\n    from . import _database\n", encoding="utf-8")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake)
    monkeypatch.setitem(MODULES, "_store", store)
    found = {(target, lazy) for _line, target, lazy in livedb_imports("_store")}
    assert {("_kernel", False), ("_database", True)} <= found
    with pytest.raises(AssertionError) as failure:
        test_imports_point_down("_store")
    assert "imports _kernel (L4 kernel), not below _store (L1 engine)" in str(failure.value)
    assert "imports _database inside a function" in str(failure.value)
