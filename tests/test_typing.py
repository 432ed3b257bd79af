"""The typed public API, checked by the two type checkers users run: mypy --strict and
pyright (both from PyPI, in the `test` extra).

- the package itself is clean (`mypy` and `pyright` as configured in pyproject.toml);
- tests/typing/good.py, a small typed program, passes both (and runs);
- every line of tests/typing/bad.py marked `# wrong: ...` is reported by both, and no
  other line is: a query's `int` result used as a `str`, a mutation passed where a query
  is expected, a callback of the wrong type, a write through a query's `ctx.db`, ...

Each checker runs twice: on the package and good.py (exit 0), then on bad.py with the
same cache (warm: about a second). pyright's PyPI wrapper runs its bundled copy on the
machine's Node.js, offline (`--outputjson` also skips its check for a newer release).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GOOD = "tests/typing/good.py"
BAD = "tests/typing/bad.py"
WRONG = re.compile(r"  # wrong: (.+)$")


def _wrong_uses() -> dict[int, str]:
    """Line number -> what is wrong there, from the markers in bad.py."""
    lines = (ROOT / BAD).read_text(encoding="utf-8").splitlines()
    return {n: m.group(1) for n, line in enumerate(lines, 1) if (m := WRONG.search(line))}


WRONG_USES = _wrong_uses()


def _mypy(*files: str, cache: Path) -> tuple[int, list[tuple[str, int, str]]]:
    """Run mypy (strict, from pyproject.toml) on `files`: its exit code and its errors as
    `(path, line, message)`."""
    pytest.importorskip("mypy")
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", "pyproject.toml", "--strict",
         "--cache-dir", str(cache), "--no-pretty", "--no-error-summary", *files],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode in (0, 1), f"mypy failed to run:\n{proc.stdout}\n{proc.stderr}"
    errors = []
    for line in proc.stdout.splitlines():
        found = re.match(r"(.+?):(\d+): error: (.*)$", line)
        if found:
            errors.append((Path(found.group(1)).as_posix(), int(found.group(2)),
                           found.group(3)))
    return proc.returncode, errors


def _pyright(*files: str) -> tuple[int, list[tuple[str, int, str]]]:
    """Run pyright (standard mode, from pyproject.toml) on `files`, with this Python's
    packages: its exit code and its errors as `(path relative to the repo, line, message)`."""
    pytest.importorskip("pyright")
    env = dict(os.environ, PYRIGHT_PYTHON_IGNORE_WARNINGS="1")
    env.pop("PYRIGHT_PYTHON_FORCE_VERSION", None)  # the bundled copy: no npm download
    proc = subprocess.run(
        [sys.executable, "-m", "pyright", "--outputjson", "--pythonpath", sys.executable,
         *files],
        cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode in (0, 1), f"pyright failed to run:\n{proc.stdout}\n{proc.stderr}"
    report = json.loads(proc.stdout)
    errors = [(Path(d["file"]).resolve().relative_to(ROOT).as_posix(),
               d["range"]["start"]["line"] + 1, d["message"])
              for d in report["generalDiagnostics"] if d["severity"] == "error"]
    return proc.returncode, errors


@pytest.fixture(scope="module")
def mypy_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mypy-cache")


@pytest.fixture(scope="module")
def checked(mypy_cache: Path) -> dict[str, tuple[int, list[tuple[str, int, str]]]]:
    """Each checker's run on the package and good.py."""
    return {"mypy": _mypy("livedb", GOOD, cache=mypy_cache), "pyright": _pyright("livedb", GOOD)}


@pytest.fixture(scope="module")
def checked_bad(mypy_cache: Path, checked: object) -> dict[str, list[tuple[str, int, str]]]:
    """Each checker's errors in bad.py (after `checked`, so mypy's cache is warm)."""
    return {"mypy": _mypy(BAD, cache=mypy_cache)[1], "pyright": _pyright(BAD)[1]}


def _show(errors: list[tuple[str, int, str]]) -> str:
    return "\n".join(f"{path}:{line}: {message}" for path, line, message in errors)


@pytest.mark.parametrize("checker", ["mypy", "pyright"])
def test_package_and_typed_program_pass(checked, checker):
    """`mypy --strict` and `pyright` accept livedb and the typed program: exit code 0."""
    code, errors = checked[checker]
    assert errors == [], f"{checker} reports:\n{_show(errors)}"
    assert code == 0


def test_typed_program_runs(monkeypatch):
    """good.py is a real program: what the checkers accepted also works. (Imported as a
    module: it schedules one of its functions, which must be importable by name.)"""
    spec = importlib.util.spec_from_file_location("livedb_typing_good", ROOT / GOOD)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    module.main()


@pytest.mark.parametrize("checker", ["mypy", "pyright"])
@pytest.mark.parametrize("line", sorted(WRONG_USES), ids=lambda n: WRONG_USES[n])
def test_wrong_use_is_reported(checked_bad, checker, line):
    errors = checked_bad[checker]
    assert any(n == line for _path, n, _message in errors), (
        f"{checker} does not report {BAD}:{line} ({WRONG_USES[line]}); it reports:\n"
        f"{_show(errors)}")


@pytest.mark.parametrize("checker", ["mypy", "pyright"])
def test_only_wrong_uses_are_reported(checked_bad, checker):
    """Every error is on a marked line of bad.py: nothing else there is wrong, and the
    checkers report nothing in livedb for it."""
    stray = [e for e in checked_bad[checker] if e[0] != BAD or e[1] not in WRONG_USES]
    assert stray == [], f"{checker} reports unmarked lines:\n{_show(stray)}"


def test_bad_program_marks_its_wrong_uses():
    assert len(WRONG_USES) >= 10
