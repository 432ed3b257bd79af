"""`livedb serve`'s package loading (Convex paths), its CLI, its optional dependency, and
the retention of recorded mutation outcomes."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest

import livedb
from livedb import Database, LiveDBError
from tests.servekit import APP, ROOT, SyncClient, decode, missing, plain

try:
    import aiohttp
except ImportError:
    aiohttp = None


def _write_package(root: Path, name: str) -> Path:
    package = root / name
    (package / "chat").mkdir(parents=True)
    (package / "__init__.py").write_text(textwrap.dedent("""
        from livedb import query

        @query
        def hidden(ctx):
            return "functions of __init__.py are not served"
    """))
    (package / "schema.py").write_text(textwrap.dedent("""
        from livedb import define_schema, define_table, v

        schema = define_schema({"rooms": define_table({"name": v.string()})})
    """))
    (package / "messages.py").write_text(textwrap.dedent("""
        from livedb import mutation, query

        @query
        def list(ctx):
            return "messages:list"

        @query
        def import_(ctx):
            return "a keyword, exported without its underscore"

        @query
        def _private(ctx):
            return "not served"

        @mutation
        def default(ctx):
            return "messages (the default export)"
    """))
    (package / "chat" / "__init__.py").write_text("")
    (package / "chat" / "rooms.py").write_text(textwrap.dedent(f"""
        from livedb import action, query
        from {name}.messages import list as imported

        @query
        def get(ctx):
            return "chat/rooms:get"

        @action
        def ping(ctx):
            return "pong"
    """))
    (package / "explicit.py").write_text(textwrap.dedent("""
        from livedb import query

        @query
        def newest(ctx):
            return "explicit"

        @query
        def other(ctx):
            return "not listed"

        convex_exports = {"default": newest, "latest": newest}
    """))
    return package


def test_paths_follow_the_modules(tmp_path: Path) -> None:
    from livedb._serve.registry import load

    name = f"pkg_{uuid.uuid4().hex[:8]}"
    package = load(str(_write_package(tmp_path, name)))
    assert sorted(package.functions) == [
        "chat/rooms:get", "chat/rooms:ping", "explicit:default", "explicit:latest",
        "messages:default", "messages:import", "messages:list"]
    assert package.functions["chat/rooms:ping"].kind == "action"
    assert package.find("messages") is package.functions["messages:default"]
    assert package.find("messages.js:list") is package.functions["messages:list"]
    assert package.find("chat/rooms.js") is None
    assert package.schema is not None and "rooms" in package.schema.tables
    again = load(name)
    assert sorted(again.functions) == sorted(package.functions), "a dotted name works too"


def test_bad_packages_are_clear_errors(tmp_path: Path) -> None:
    from livedb._serve.registry import load

    with pytest.raises(LiveDBError, match="cannot import 'no_such_module_anywhere'"):
        load("no_such_module_anywhere")
    bad = tmp_path / "has-dash"
    bad.mkdir()
    with pytest.raises(LiveDBError, match="not a Python identifier"):
        load(str(bad))
    broken = tmp_path / f"broken_{uuid.uuid4().hex[:8]}"
    broken.mkdir()
    (broken / "oops.py").write_text("raise RuntimeError('boom')\n")
    with pytest.raises(LiveDBError, match="importing .*oops failed.*boom"):
        load(str(broken))
    twice = tmp_path / f"twice_{uuid.uuid4().hex[:8]}"
    twice.mkdir()
    (twice / "m.py").write_text("from livedb import query\n"
                                "@query\ndef a(ctx): return 1\n"
                                "@query\ndef a_(ctx): return 2\n")
    with pytest.raises(LiveDBError, match="two functions are exported as 'm:a'"):
        load(str(twice))


def test_import_livedb_does_not_need_aiohttp_and_serve_says_how_to_get_it() -> None:
    code = textwrap.dedent(f"""
        import sys
        sys.modules["aiohttp"] = None
        import livedb
        assert "aiohttp" not in [m for m in sys.modules if sys.modules[m] is not None]
        from livedb.__main__ import main
        sys.exit(main(["serve", {str(APP)!r}, "--port", "0"]))
    """)
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, env={"PYTHONPATH": str(ROOT)})
    assert done.returncode == 1, done.stdout + done.stderr
    assert "pip install 'livedb[serve]'" in done.stderr


def test_cli_reports_a_package_it_cannot_import() -> None:
    done = subprocess.run([sys.executable, "-m", "livedb", "serve", "no_such_pkg_here"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={"PYTHONPATH": str(ROOT)})
    assert done.returncode == 1
    assert "python -m livedb serve: error: serve: cannot import 'no_such_pkg_here'" in (
        done.stderr)


def test_recorded_outcomes_expire_after_a_week_but_the_newest_stays(tmp_path: Path
                                                                     ) -> None:
    if aiohttp is None:
        missing("aiohttp is not installed (pip install 'livedb[serve]')")
    from livedb._serve.registry import load

    schema = load(str(APP)).schema
    now = [1_700_000_000.0]
    path = str(tmp_path / "app.livedb")
    session = str(uuid.uuid4())

    async def increments(url: str, requests: list[int]) -> list[Any]:
        async with aiohttp.ClientSession() as http:
            client = await SyncClient.connect(http, url, session)
            results = []
            for request in requests:
                response, _ = await client.mutation(request, "counter:increment",
                                                    {"name": "week"})
                results.append(plain(decode(response["result"])))
            await client.close()
            return results

    def serve_once(requests: list[int]) -> list[Any]:
        db = Database(schema, path=path, clock=lambda: now[0])
        try:
            with livedb.serve(db, str(APP), port=0) as server:
                return asyncio.run(increments(server.url, requests))
        finally:
            db.close()

    assert serve_once([0, 1]) == [1, 2]
    assert serve_once([0, 1]) == [1, 2], "replayed, not run again"
    now[0] += 8 * 24 * 3600
    assert serve_once([0, 1]) == [3, 2], (
        "request 0's record expired (it runs again); the newest record is kept")
