"""The functions a served package exports, under their Convex paths.

PACKAGE plays the part of a Convex project's `convex/` folder: `PACKAGE/messages.py`'s
`list` is `"messages:list"`, `PACKAGE/chat/rooms.py`'s `get` is `"chat/rooms:get"`, and a
function exported as `default` is reached by the module path alone (`"messages"`). The
export name is the module attribute the `@query`/`@mutation`/`@action` object is bound
to, less one trailing underscore, so a Python keyword or builtin can be exported
(`import_` is `"messages:import"`); a module may also name its exports explicitly in a
dict `convex_exports = {"default": list_messages}`. Functions of the package's
`__init__.py` are not served; neither are names starting with `_`. PACKAGE's
`schema.py` may define `schema` and its `crons.py` `crons`.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import sys
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from .._errors import LiveDBError
from .backend import function_kind


@dataclass(frozen=True)
class Entry:
    """One served function: its Convex path, its kind and the livedb function object."""

    path: str
    kind: str
    function: Any


@dataclass
class Package:
    """A loaded package: its functions by path, and its `schema` and `crons` if any."""

    name: str
    functions: dict[str, Entry]
    schema: Any = None
    crons: Any = None

    def find(self, path: Any) -> Entry | None:
        """The function a client names by `path` (canonicalized as Convex does)."""
        if not isinstance(path, str):
            return None
        return self.functions.get(canonical_path(path))


def canonical_path(path: str) -> str:
    """`"messages"` is `"messages:default"`; a `.js` suffix on the module is dropped."""
    module, sep, name = path.partition(":")
    if module.endswith(".js"):
        module = module[:-3]
    return f"{module}:{name if sep else 'default'}"


def import_package(package: Any) -> ModuleType:
    """The package module: given as a module, a dotted name, or a directory path.

    A directory is imported by its name with its parent directory first on `sys.path`
    (so its modules keep importable names, which scheduled calls are stored by). Raises
    `LiveDBError` when it cannot be imported."""
    if isinstance(package, ModuleType):
        return package
    if isinstance(package, os.PathLike):
        package = os.fspath(package)
    if not isinstance(package, str) or not package:
        raise LiveDBError(f"serve: PACKAGE is a module, a dotted module name or a directory, "
                          f"got {package!r}")
    if os.path.isdir(package):
        directory = os.path.abspath(package)
        parent, name = os.path.split(directory.rstrip(os.sep))
        if not name.isidentifier():
            raise LiveDBError(f"serve: the directory name {name!r} is not a Python identifier, "
                              "so it cannot be imported as a package")
        if parent not in sys.path:
            sys.path.insert(0, parent)
        existing = sys.modules.get(name)
        if existing is not None and not _same_directory(existing, directory):
            raise LiveDBError(f"serve: a module named {name!r} is already imported from "
                              f"elsewhere ({getattr(existing, '__file__', None)}); rename "
                              f"the directory {package!r}")
        package = name
    elif package.endswith(".py") or os.sep in package:
        raise LiveDBError(f"serve: {package!r} is not a directory; PACKAGE is a directory "
                          "(like a Convex project's convex/ folder) or a dotted module name")
    try:
        return importlib.import_module(package)
    except ImportError as e:
        raise LiveDBError(f"serve: cannot import {package!r}: {e}") from e


def _same_directory(module: ModuleType, directory: str) -> bool:
    paths = getattr(module, "__path__", None) or []
    return any(os.path.abspath(p) == directory for p in paths)


def load(package: Any) -> Package:
    """Import the package and every module under it; collect their exported functions.

    Raises `LiveDBError` on an import failure or two functions with one path."""
    root = import_package(package)
    functions: dict[str, Entry] = {}
    found = Package(root.__name__, functions)
    modules: list[tuple[str, ModuleType]] = []
    search = getattr(root, "__path__", None)
    if search is None:
        modules.append((root.__name__.rpartition(".")[2], root))
    else:
        for info in pkgutil.walk_packages(search, prefix=root.__name__ + "."):
            try:
                module = importlib.import_module(info.name)
            except Exception as e:
                raise LiveDBError(f"serve: importing {info.name} failed: {e!r}") from e
            relative = info.name[len(root.__name__) + 1:].replace(".", "/")
            modules.append((relative, module))
    for relative, module in modules:
        if relative == "schema":
            found.schema = getattr(module, "schema", None)
        elif relative == "crons":
            found.crons = getattr(module, "crons", None)
        for name, fn in _exports(module):
            path = f"{relative}:{name}"
            if path in functions and functions[path].function is not fn:
                raise LiveDBError(f"serve: two functions are exported as {path!r}")
            functions[path] = Entry(path, function_kind(fn), fn)  # type: ignore[arg-type]
    return found


def _exports(module: ModuleType) -> list[tuple[str, Any]]:
    explicit = getattr(module, "convex_exports", None)
    if explicit is not None:
        if not isinstance(explicit, dict):
            raise LiveDBError(f"serve: {module.__name__}.convex_exports must be a dict of "
                              "export name -> function")
        out = []
        for name, fn in explicit.items():
            if not isinstance(name, str) or function_kind(fn) is None:
                raise LiveDBError(f"serve: {module.__name__}.convex_exports[{name!r}] is not "
                                  "a @query, @mutation or @action")
            out.append((name, fn))
        return out
    out = []
    for attribute, fn in vars(module).items():
        if attribute.startswith("_") or function_kind(fn) is None:
            continue
        if getattr(fn, "__module__", None) != module.__name__ and attribute != "default":
            continue
        name = attribute[:-1] if attribute.endswith("_") else attribute
        out.append((name, fn))
    return out
