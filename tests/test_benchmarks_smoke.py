"""`python -m benchmarks --smoke` runs every workload and prints the results table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEADER = ("workload", "livedb ops/s", "sqlite3 ops/s", "ratio", "target", "met")
CORE_WORKLOADS = ("single insert", "bulk insert", "point get", "take(20) by index",
                  "read-modify-write")


def run_benchmarks(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "benchmarks", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def test_smoke_run_prints_the_table_with_every_workload() -> None:
    listed = run_benchmarks("--list")
    assert listed.returncode == 0, listed.stderr
    titles = [line.split("\t", 1)[1] for line in listed.stdout.splitlines() if "\t" in line]
    assert set(CORE_WORKLOADS) <= set(titles)

    smoke = run_benchmarks("--smoke")
    assert smoke.returncode == 0, smoke.stdout + smoke.stderr
    lines = smoke.stdout.splitlines()
    header = next((line for line in lines if line.startswith("workload")), "")
    assert header.split() == [word for cell in HEADER for word in cell.split()]
    rows = lines[lines.index(header):]
    for title in titles:
        assert any(line.startswith(title + " ") for line in rows), title
