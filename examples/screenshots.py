"""Regenerate the screenshots in docs/: python examples/screenshots.py

The Textual apps run headless and save SVG, turned into PNG by `rsvg-convert` (Debian:
librsvg2-bin) when it is there; the Tk app opens on a private Xvfb display, captured
with ImageMagick's `import` (Debian: xvfb, imagemagick). Databases are temporary.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def to_png(svg: Path) -> None:
    if shutil.which("rsvg-convert"):
        subprocess.run(["rsvg-convert", "-o", str(svg.with_suffix(".png")), str(svg)],
                       check=True)
        svg.unlink()


async def chat(workdir: Path) -> None:
    from examples.chat import ChatApp, ChatPane

    app = ChatApp(workdir / "chat.livedb", scrypt_n=2 ** 8, scrypt_r=1, scrypt_p=1)
    async with app.run_test(size=(130, 34)) as pilot:
        left, right = app.query_one("#left", ChatPane), app.query_one("#right", ChatPane)
        for pane, email in ((left, "ada@example.com"), (right, "bob@example.com")):
            pane.query_one("#email").value = email  # type: ignore[attr-defined]
            pane.query_one("#password").value = "correct horse"  # type: ignore[attr-defined]
            pane.sign_in(create=True)
        for pane, body in ((left, "morning! lunch at noon?"), (right, "sure, the usual place"),
                           (left, "I'll book a table for two"), (right, "lunch is on me")):
            pane.send(body)
            await pilot.pause(0.2)
        gate = threading.Event()
        assert left.client is not None
        left.client.mutation(lambda ctx: gate.wait(5))
        left.send("(this one is still sending)")
        right.query_one("#search").value = "lunch"  # type: ignore[attr-defined]
        await pilot.pause(0.5)
        app.save_screenshot(str(DOCS / "chat.svg"))
        gate.set()
        await pilot.pause(0.2)
    to_png(DOCS / "chat.svg")


async def dashboard(workdir: Path) -> None:
    from examples.dashboard import DashboardApp

    now = [time.time()]
    app = DashboardApp(workdir / "dashboard.livedb", clock=lambda: now[0])
    async with app.run_test(size=(110, 30)) as pilot:
        for _ in range(40):
            now[0] += 1.0
            app.db.run_scheduled()
        await pilot.pause(0.5)
        app.save_screenshot(str(DOCS / "dashboard.svg"))
    to_png(DOCS / "dashboard.svg")


def todo(workdir: Path) -> None:
    from conftest import start_xvfb

    proc, display = start_xvfb("760x340x24")
    os.environ["DISPLAY"] = display
    try:
        from examples.todo import TodoApp

        app = TodoApp(workdir / "todo.livedb")
        for text in ("buy milk", "water the plants", "call the plumber"):
            app.windows[0].entry.insert(0, text)
            app.windows[0].on_add()
        app.toggle_feeder(interval=0.2)
        deadline = time.monotonic() + 5
        while len(app.windows[1].todos) < 5 and time.monotonic() < deadline:
            app.root.update()
            time.sleep(0.01)
        app.windows[1].listbox.selection_set(0)
        app.windows[1].on_toggle()
        for _ in range(50):
            app.root.update()
            time.sleep(0.01)
        subprocess.run(["import", "-window", "root", str(DOCS / "todo.png")], check=True)
        app.close()
    finally:
        proc.terminate()
        proc.wait()


def main() -> None:
    DOCS.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        asyncio.run(chat(workdir))
        asyncio.run(dashboard(workdir))
        todo(workdir)
    print("screenshots written to", DOCS)


if __name__ == "__main__":
    main()
