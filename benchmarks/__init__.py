"""livedb benchmarks: the same workloads on livedb and stdlib sqlite3, side by side.

Run `python -m benchmarks` from the repository root (`--smoke` for a tiny run, `--help`
for the rest). Each module named in `MODULES` registers its workloads with
`benchmarks.harness.workload`; add a module there to add workloads to the run.
"""

from __future__ import annotations

import importlib

from .harness import REGISTRY, Workload

MODULES: tuple[str, ...] = ("benchmarks.core", "benchmarks.validation", "benchmarks.reactive",
                            "benchmarks.durable", "benchmarks.search", "benchmarks.serve")
"""Modules that register workloads, imported in this order (their order is the table's)."""


def load_workloads() -> dict[str, Workload]:
    """Import every workload module and return the registry, keyed by workload key."""
    for name in MODULES:
        importlib.import_module(name)
    return REGISTRY


__all__ = ["MODULES", "REGISTRY", "Workload", "load_workloads"]
