"""The unmodified `convex` npm client (pinned in tests/e2e_convex/package-lock.json)
against `python -m livedb serve tests/e2e_convex/app`, in Node and in headless Chromium.

Needs Node >= 20 with `npm ci --prefix tests/e2e_convex` done, and Debian's chromium for
the browser test. Without them these tests skip, saying what is missing; .ci/run
provides them and sets LIVEDB_REQUIRE_ALL=1, which turns a skip into a failure.
"""

from __future__ import annotations

import asyncio
import functools
import http.server
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.servekit import APP, E2E, ROOT, decode, missing, plain

NODE = shutil.which("node")


def node() -> str:
    """The node binary, once the e2e packages are installed (else skip or fail)."""
    if NODE is None:
        missing("node (>= 20) is not installed")
    version = subprocess.run([NODE, "--version"], capture_output=True, text=True).stdout
    if int(version.lstrip("v").split(".")[0]) < 20:
        missing(f"the convex client needs node >= 20, found {version.strip()}")
    if not (E2E / "node_modules" / "convex" / "package.json").exists():
        missing("the e2e packages are not installed: npm ci --prefix tests/e2e_convex")
    return NODE  # type: ignore[return-value]


def chromium() -> str:
    path = os.environ.get("LIVEDB_CHROMIUM") or shutil.which("chromium")
    if path is None:
        missing("Debian's chromium is not installed (apt-get install chromium)")
    if not (E2E / "node_modules" / "playwright-core").exists():
        missing("playwright-core is not installed: npm ci --prefix tests/e2e_convex")
    return path  # type: ignore[return-value]


class Lines:
    """A subprocess's stdout, line by line, read by a thread (so waits can time out)."""

    def __init__(self, stream: Any) -> None:
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.all: list[str] = []
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream: Any) -> None:
        for line in stream:
            self.all.append(line)
            self.lines.put(line)
        self.lines.put(None)

    def wait_for(self, text: str, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no {text!r} within {timeout} s; got "
                                     f"{''.join(self.all)}") from None
            if line is None:
                raise AssertionError(f"output ended before {text!r}: {''.join(self.all)}")
            if text in line:
                return line


class ServeProcess:
    """`python -m livedb serve tests/e2e_convex/app --port 0` in a subprocess."""

    def __init__(self, path: Path | None = None) -> None:
        command = [sys.executable, "-m", "livedb", "serve", str(APP), "--port", "0"]
        if path is not None:
            command += ["--path", str(path)]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
        self.proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        self.output = Lines(self.proc.stdout)
        try:
            line = self.output.wait_for("livedb serve:", timeout=60)
        except AssertionError:
            self.stop()
            raise
        self.url = line.rsplit(" ", 1)[1].strip()
        self.port = int(self.url.rsplit(":", 1)[1])

    def call(self, endpoint: str, path: str, args: dict) -> Any:
        """One HTTP API call straight to this server; the decoded value."""
        request = urllib.request.Request(
            f"{self.url}/api/{endpoint}", method="POST",
            data=json.dumps({"path": path, "args": [args]}).encode(),
            headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as reply:
            return plain(decode(json.load(reply)["value"]))

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()
                raise AssertionError("the server did not stop on SIGTERM") from None


@pytest.fixture
def server() -> Iterator[ServeProcess]:
    served = ServeProcess()
    yield served
    served.stop()


def run_node(script: str, *args: str, timeout: float = 120) -> str:
    done = subprocess.run([node(), script, *args], cwd=E2E, capture_output=True, text=True,
                          timeout=timeout)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    return output


def test_convex_client_in_node(server: ServeProcess) -> None:
    """Live updates, read-your-writes, ConvexError.data, bigint/bytes, one-shot queries,
    optimistic updates, auth (JWT refresh and a rejected token), ConvexHttpClient and a
    paginated query loading more while documents are inserted."""
    output = run_node("e2e.mjs", server.url)
    assert "9 passed, 0 failed" in output, output


class Proxy:
    """A TCP proxy on loopback in front of a server: it can swallow everything the server
    sends (`hold`), and `retarget` moves it to a new server, dropping every connection."""

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self.hold = False
        self.links: set[Any] = set()
        self.loop = asyncio.new_event_loop()
        started = threading.Event()
        threading.Thread(target=self._main, args=(started,), daemon=True).start()
        started.wait(10)
        self.url = f"http://127.0.0.1:{self.port}"

    def _main(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(
            asyncio.start_server(self._link, "127.0.0.1", 0))
        self.port = self.server.sockets[0].getsockname()[1]
        started.set()
        self.loop.run_forever()

    async def _link(self, reader: Any, writer: Any) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream)
        except OSError:
            writer.close()
            return
        self.links.add((writer, up_writer))

        async def pipe(source: Any, sink: Any, downstream: bool) -> None:
            try:
                while data := await source.read(65536):
                    if not (downstream and self.hold):
                        sink.write(data)
                        await sink.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                writer.close()
                up_writer.close()

        await asyncio.gather(pipe(reader, up_writer, False), pipe(up_reader, writer, True))
        self.links.discard((writer, up_writer))

    def retarget(self, upstream: int) -> None:
        def move() -> None:
            self.upstream = upstream
            self.hold = False
            for writer, up_writer in list(self.links):
                writer.close()
                up_writer.close()

        self.loop.call_soon_threadsafe(move)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.server.close)
        self.loop.call_soon_threadsafe(self.loop.stop)


def test_a_server_restart_mid_session(tmp_path: Path) -> None:
    """A mutation's answer is lost, the server is killed -9 after committing it and
    restarted on the same file: the client re-sends it, gets its original result, the
    counter moved once, and the subscriptions of both clients re-sync."""
    binary = node()
    path = tmp_path / "app.livedb"
    first = ServeProcess(path)
    proxy = Proxy(first.port)
    client = subprocess.Popen([binary, "restart.mjs", proxy.url], cwd=E2E, text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT)
    output = Lines(client.stdout)
    second = None
    try:
        output.wait_for("ready")
        proxy.hold = True
        client.stdin.write("go\n")  # type: ignore[union-attr]
        client.stdin.flush()  # type: ignore[union-attr]
        output.wait_for("sent")
        name = f"restart-{client.pid}"
        deadline = time.monotonic() + 20
        while first.call("query", "counter:get", {"name": name}) != 1:
            assert time.monotonic() < deadline, "the mutation never committed"
            time.sleep(0.02)
        first.kill()
        second = ServeProcess(path)
        proxy.retarget(second.port)
        client.stdin.write("restarted\n")  # type: ignore[union-attr]
        client.stdin.flush()  # type: ignore[union-attr]
        assert client.wait(90) == 0, "".join(output.all)
        assert "1 passed, 0 failed" in "".join(output.all)
        assert second.call("query", "counter:get", {"name": name}) == 2
    finally:
        if client.poll() is None:
            client.kill()
        proxy.close()
        first.stop()
        if second is not None:
            second.stop()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_react_page_in_headless_chromium(server: ServeProcess, tmp_path: Path) -> None:
    """A React page (Vite build of tests/e2e_convex/browser) on ConvexReactClient: a
    message typed in one page appears in the other; usePaginatedQuery loads older ones.
    LIVEDB_E2E_SCREENSHOT=docs/convex-client.png keeps the screenshot."""
    binary = node()
    browser = chromium()
    site = tmp_path / "site"
    build = subprocess.run([binary, "node_modules/vite/bin/vite.js", "build", "--outDir",
                            str(site)], cwd=E2E, capture_output=True, text=True, timeout=180)
    assert build.returncode == 0, build.stdout + build.stderr
    handler = functools.partial(_Quiet, directory=str(site))
    static = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=static.serve_forever, daemon=True).start()
    screenshot = tmp_path / "chat.png"
    try:
        output = run_node("browser.mjs", f"http://127.0.0.1:{static.server_port}", server.url,
                          str(screenshot), browser, timeout=180)
    finally:
        static.shutdown()
        static.server_close()
    assert "3 passed, 0 failed" in output, output
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    keep = os.environ.get("LIVEDB_E2E_SCREENSHOT")
    if keep:
        shutil.copyfile(screenshot, ROOT / keep)
