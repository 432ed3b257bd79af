"""Shared fixtures: a real X display (Xvfb) for the Tk tests, `examples` importable, and
`LIVEDB_REQUIRE_ALL=1` (CI) turning any skip into a failed run."""

from __future__ import annotations

import gc
import os
import select
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


REQUIRE_ALL = os.environ.get("LIVEDB_REQUIRE_ALL") == "1"
"""Set by .ci/run, which provides every test's needs (a display, PostgreSQL, Node...): a
test that would skip for want of one fails the run instead."""

_skipped: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped:
        _skipped.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if REQUIRE_ALL and _skipped:
        print(f"\nLIVEDB_REQUIRE_ALL=1 but {len(_skipped)} test(s) skipped: "
              + ", ".join(_skipped[:10]), file=sys.stderr)
        session.exitstatus = 1


def start_xvfb(size: str = "1024x768x24") -> tuple[subprocess.Popen, str]:
    """Start Xvfb on a display it picks itself (`-displayfd`); return it and `:N`."""
    binary = shutil.which("Xvfb")
    if binary is None:
        raise FileNotFoundError("Xvfb is not installed (Debian: apt-get install xvfb; .ci/run "
                                "installs it)")
    read, write = os.pipe()
    proc = subprocess.Popen([binary, "-displayfd", str(write), "-screen", "0", size,
                             "-nolisten", "tcp", "-noreset"],
                            pass_fds=(write,), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    os.close(write)
    data = b""
    deadline = time.monotonic() + 20
    try:
        while not data.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or proc.poll() is not None:
                raise RuntimeError("Xvfb did not start")
            ready, _, _ = select.select([read], [], [], left)
            if ready:
                chunk = os.read(read, 16)
                if not chunk:
                    raise RuntimeError("Xvfb did not report its display")
                data += chunk
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    finally:
        os.close(read)
    return proc, f":{int(data.strip())}"


@pytest.fixture(scope="session")
def xvfb_display() -> Iterator[str]:
    """A private X display for the session; DISPLAY points at it while tests run."""
    try:
        proc, display = start_xvfb()
    except FileNotFoundError as e:
        pytest.skip(f"needs a display: {e}")
    old = os.environ.get("DISPLAY")
    os.environ["DISPLAY"] = display
    try:
        yield display
    finally:
        if old is None:
            os.environ.pop("DISPLAY", None)
        else:
            os.environ["DISPLAY"] = old
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(autouse=True)
def collect_tk_garbage(request: pytest.FixtureRequest) -> Iterator[None]:
    """After a Tk test, collect its dead widgets and interpreters on this (Tk's) thread.

    A Tk interpreter freed by the garbage collector in another thread (say, a database
    writer's) aborts the process, and Tk roots always sit in reference cycles."""
    yield
    if "xvfb_display" in request.fixturenames:
        gc.collect()


@pytest.fixture
def frequent_thread_switches() -> Iterator[None]:
    """Switch threads every 10 us instead of 5 ms so interleavings are many and varied."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    yield
    sys.setswitchinterval(old)


# -- PostgreSQL ------------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a PostgreSQL server for the session: `LIVEDB_TEST_POSTGRES_URL` (set by
    .ci/run), else a throwaway server started here (tests/pgkit.py); skips only where
    no PostgreSQL binaries exist (and then fails under LIVEDB_REQUIRE_ALL=1)."""
    url = os.environ.get("LIVEDB_TEST_POSTGRES_URL")
    if url:
        yield url
        return
    import pgkit

    if pgkit.binaries() is None:
        pytest.skip("needs PostgreSQL: no initdb/pg_ctl found (Debian: apt-get install "
                    "postgresql; .ci/run installs it)")
    folder = pgkit.make_folder()
    url = pgkit.start(folder)
    try:
        yield url
    finally:
        pgkit.stop(folder)
        shutil.rmtree(folder, ignore_errors=True)


_databases = [0]


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database on the session's server (dropped afterwards)."""
    psycopg = pytest.importorskip("psycopg", reason="needs psycopg (pip install "
                                  "'livedb[postgres]')")
    from psycopg import conninfo

    _databases[0] += 1
    name = f"livedb_test_{os.getpid()}_{_databases[0]}"
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")
    parts = conninfo.conninfo_to_dict(postgres_server)
    user = parts.get("user", "postgres")
    password = f":{parts['password']}" if parts.get("password") else ""
    yield (f"postgresql://{user}{password}@{parts.get('host', '127.0.0.1')}:"
           f"{parts.get('port', 5432)}/{name}")
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
