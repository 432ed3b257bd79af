"""livedb benchmarks: the same workloads on livedb, sqlite3, apsw, msgspec and a dict floor.

Run `python -m benchmarks` from the repository root (`--smoke` for a tiny run, `--help`
for the rest; `python -m benchmarks compare A.json B.json` compares two `--json` runs).
apsw comes from the optional `bench` extra (`pip install ".[bench]"`); without it its
column says so.

Every module of this package that is not infrastructure (`INFRASTRUCTURE`) is a workload
module: it registers its workloads with `benchmarks.harness.workload`, and they form a
group named after the module (`benchmarks/shared.py` -> group "shared", selected with
`--only shared`). A new module needs no other edit; `ORDER` only places the known
groups first in the table, the rest follow by name.
"""

from __future__ import annotations

import importlib
import pkgutil

from .harness import REGISTRY, Workload

ORDER: tuple[str, ...] = ("core", "memory", "validation", "reactive", "durable", "search",
                          "shared", "serve")
"""Workload modules in table order; modules not named here follow alphabetically."""

INFRASTRUCTURE = frozenset({"harness", "report", "fixtures", "compare"})
"""Modules of this package that register no workloads."""


def workload_modules() -> list[str]:
    """The importable names of every workload module, in table order."""
    found = {info.name for info in pkgutil.iter_modules(__path__)
             if not info.name.startswith("_") and info.name not in INFRASTRUCTURE}
    names = [name for name in ORDER if name in found] + sorted(found.difference(ORDER))
    return [f"{__name__}.{name}" for name in names]


def load_workloads() -> dict[str, Workload]:
    """Import every workload module and return the registry, keyed by workload key."""
    for name in workload_modules():
        importlib.import_module(name)
    return REGISTRY


def groups(registry: dict[str, Workload]) -> dict[str, list[str]]:
    """Workload keys by group, in registry order."""
    found: dict[str, list[str]] = {}
    for key, entry in registry.items():
        found.setdefault(entry.group, []).append(key)
    return found


__all__ = ["INFRASTRUCTURE", "ORDER", "REGISTRY", "Workload", "groups", "load_workloads",
           "workload_modules"]
