"""`python -m benchmarks --smoke` runs every workload, prints the table and writes JSON."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
ENGINES = ("livedb", "sqlite3", "apsw", "msgspec", "dict")
HEADER = ("workload", *ENGINES, "ratio", "baseline", "target", "met")
CORE_WORKLOADS = ("single insert", "bulk insert", "point get", "eq + desc + take(20)",
                  "read-modify-write")
CORE_KEYS = ("insert", "bulk", "get", "take", "rmw")
TARGETS = {"get": 0.9, "take": 0.6, "insert": 1.3, "rmw": 0.9, "durable-full": 1.1,
           "memory": 5.0}
"""Rows whose targets hold in every run, smoke included (the 1M open and 10k-sub rows are
full-run only)."""
BLOCK_APSW = ("import sys; sys.modules['apsw'] = None; from benchmarks.__main__ import main; "
              "sys.exit(main(sys.argv[1:]))")


def run_benchmarks(*args: str, block_apsw: bool = False) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-c", BLOCK_APSW] if block_apsw else \
        [sys.executable, "-m", "benchmarks"]
    return subprocess.run([*command, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


def apsw_installed() -> bool:
    found = subprocess.run([sys.executable, "-c", "import apsw"], capture_output=True)
    return found.returncode == 0


def check_row_shape(row: dict[str, Any]) -> None:
    assert set(row) >= {"key", "group", "title", "unit", "figures", "missing", "baseline",
                        "ratio", "target", "met", "detail", "extra"}, row
    assert row["unit"] in ("s/op", "B/doc", "s"), row
    assert row["figures"]["livedb"] > 0, row
    assert all(isinstance(value, float | int) and value > 0
               for value in row["figures"].values()), row
    assert all(isinstance(reason, str) and reason for reason in row["missing"].values()), row
    base = row["figures"].get(row["baseline"])
    if base is None:
        assert row["ratio"] is None, row
    else:
        assert abs(row["ratio"] - row["figures"]["livedb"] / base) < 1e-9 * row["ratio"], row
    assert row["met"] is None, row


def test_smoke_run_prints_the_table_and_writes_every_figure(tmp_path: Path) -> None:
    listed = run_benchmarks("--list")
    assert listed.returncode == 0, listed.stderr
    entries = [line.split("\t") for line in listed.stdout.splitlines() if "\t" in line]
    keys = [key for key, _group, _title in entries]
    assert set(CORE_KEYS) <= set(keys)
    assert {group for _key, group, _title in entries} >= {"core", "memory", "reactive",
                                                          "durable"}

    path = tmp_path / "smoke.json"
    smoke = run_benchmarks("--smoke", "--json", str(path))
    assert smoke.returncode == 0, smoke.stdout + smoke.stderr
    lines = smoke.stdout.splitlines()
    header = next((line for line in lines if line.startswith("workload ")), "")
    assert header.split() == list(HEADER)
    table = lines[lines.index(header) + 2:]
    assert "(smoke run: targets are not judged)" in lines

    document = json.loads(path.read_text(encoding="utf-8"))
    assert document["format"] == 1
    assert document["run"]["mode"] == "smoke"
    assert document["run"]["gc_while_timing"] == "on"
    assert len(document["run"]["load_average_start"]) == 3
    assert set(document["engines"]) == set(ENGINES)
    rows = {row["key"]: row for row in document["rows"]}
    assert {row["group"] for row in rows.values()} >= {"core", "memory", "reactive", "durable"}
    for row in rows.values():
        check_row_shape(row)
        assert any(line.startswith(row["title"] + " ") for line in table), row["title"]

    with_apsw = apsw_installed()
    for key in (*CORE_KEYS, "durable-full", "durable-normal", "affected-1", "affected-100"):
        row = rows[key]
        present = set(row["figures"])
        assert present >= {"livedb", "sqlite3", "msgspec", "dict"}, (key, present)
        if with_apsw:
            assert "apsw" in present, key
        else:
            assert "apsw" in row["missing"], key
    assert [rows[key]["title"] for key in CORE_KEYS] == list(CORE_WORKLOADS)
    for key, target in TARGETS.items():
        assert rows[key]["target"] == target, key
        assert rows[key]["baseline"] == "sqlite3", key
    assert rows["memory"]["unit"] == "B/doc"
    assert rows["open-2000"]["unit"] == "s"
    unrelated = [row for key, row in rows.items() if key.startswith("unaffected-")]
    assert unrelated and all(row["baseline"] == "no subscriptions" for row in unrelated)
    assert unrelated[-1]["target"] == 1.2

    compared = run_benchmarks("compare", str(path), str(path))
    assert compared.returncode == 0, compared.stderr
    for key in CORE_KEYS:
        line = next(line for line in compared.stdout.splitlines()
                    if line.startswith(rows[key]["title"] + " "))
        assert line.split().count("+0.0%") >= 2, line


def test_without_apsw_its_column_says_why(tmp_path: Path) -> None:
    path = tmp_path / "no-apsw.json"
    smoke = run_benchmarks("--smoke", "--only", "get", "--json", str(path), block_apsw=True)
    assert smoke.returncode == 0, smoke.stdout + smoke.stderr
    assert "apsw not installed" in smoke.stdout
    row_line = next(line for line in smoke.stdout.splitlines() if line.startswith("point get "))
    assert "n/a" in row_line.split()
    assert "n/a: apsw: apsw is not installed (pip install '.[bench]')" in smoke.stdout
    (row,) = json.loads(path.read_text(encoding="utf-8"))["rows"]
    check_row_shape(row)
    assert "apsw" not in row["figures"]
    assert "not installed" in row["missing"]["apsw"]
    assert set(row["figures"]) == {"livedb", "sqlite3", "msgspec", "dict"}


def test_json_to_stdout_sends_the_table_to_stderr_and_gc_off_is_recorded() -> None:
    smoke = run_benchmarks("--smoke", "--only", "validate", "--json", "--gc-off")
    assert smoke.returncode == 0, smoke.stderr
    document = json.loads(smoke.stdout)
    assert document["run"]["gc_while_timing"] == "off"
    assert [row["key"] for row in document["rows"]] == ["validate"]
    assert "validated query call" in smoke.stderr


PLUGIN = '''
from .harness import Config, Row, best_times, workload


@workload("plugin-noop", "plugin no-op")
def noop(config: Config) -> list[Row]:
    (seconds,) = best_times(config, lambda: lambda: 1)
    return [Row("plugin-noop", "plugin no-op", {"livedb": seconds})]
'''


def test_a_new_module_registers_its_group_without_other_edits(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "benchmarks", tmp_path / "benchmarks",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "benchmarks" / "plugin.py").write_text(PLUGIN, encoding="utf-8")
    command = [sys.executable, "-m", "benchmarks"]
    listed = subprocess.run([*command, "--list"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    assert "plugin-noop\tplugin\tplugin no-op" in listed.stdout.splitlines()
    ran = subprocess.run([*command, "--smoke", "--only", "plugin", "--json"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0, ran.stderr
    (row,) = json.loads(ran.stdout)["rows"]
    assert (row["key"], row["group"]) == ("plugin-noop", "plugin")
