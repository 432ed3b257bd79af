"""UI dispatchers (livedb.ui) in real toolkits: asyncio, Tk under Xvfb, Textual headless.

Each test checks the three promises of a dispatcher: callbacks run on the UI thread,
the committing thread never waits for the UI (commits return while the UI is stuck),
and a stuck UI catches up with coalesced updates ending at the current result.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
from typing import Any

import pytest

from livedb import Database
from livedb.ui import asyncio_dispatch, qt_dispatch, textual_dispatch, tie, tk_dispatch


def count(ctx: Any) -> int:
    return len(ctx.db.query("items").collect())


def add(ctx: Any) -> None:
    ctx.db.insert("items", {"n": 1})


def add_many(db: Database, n: int) -> threading.Thread:
    """Commit `n` inserts from another thread; the thread ends when they have returned."""
    thread = threading.Thread(target=lambda: [db.mutation(add) for _ in range(n)])
    thread.start()
    return thread


# -- asyncio ---------------------------------------------------------------------------


def test_asyncio_dispatch_delivers_on_the_loop_and_never_blocks_the_committer() -> None:
    seen: list[tuple[int, int]] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        db = Database(dispatch=asyncio_dispatch())
        db.subscribe(count, None, lambda n: seen.append((threading.get_ident(), n)))
        assert seen == []
        await asyncio.sleep(0.01)
        assert seen == [(threading.get_ident(), 0)]
        writer = add_many(db, 50)
        writer.join(10)
        assert not writer.is_alive()
        assert seen == [(threading.get_ident(), 0)]
        for _ in range(100):
            if seen[-1][1] == 50:
                break
            await asyncio.sleep(0.01)
        assert seen[-1][1] == 50
        assert {thread for thread, _ in seen} == {threading.get_ident()}
        assert len(seen) <= 3
        assert [n for _, n in seen] == sorted(n for _, n in seen)
        assert loop.is_running()
        db.close()

    asyncio.run(main())


def test_asyncio_dispatch_drops_deliveries_once_the_loop_is_closed() -> None:
    loop = asyncio.new_event_loop()
    dispatch = asyncio_dispatch(loop)
    ran: list[int] = []
    dispatch(lambda: ran.append(1))
    loop.run_until_complete(asyncio.sleep(0))
    assert ran == [1]
    loop.close()
    dispatch(lambda: ran.append(2))
    assert ran == [1]


def test_asyncio_dispatch_outlives_a_raising_callback() -> None:
    async def main() -> list[int]:
        db = Database(dispatch=asyncio_dispatch())
        got: list[int] = []

        def bad(n: int) -> None:
            raise ValueError("boom")

        db.subscribe(count, None, bad)
        db.subscribe(lambda ctx: count(ctx) * 10, None, got.append)
        db.mutation(add)
        for _ in range(100):
            if got and got[-1] == 10:
                break
            await asyncio.sleep(0.01)
        db.close()
        return got

    assert asyncio.run(main())[-1] == 10


# -- Tk under Xvfb -----------------------------------------------------------------------


def pump_tk(root: Any, done: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "Tk did not get there in time"
        root.update()
        time.sleep(0.005)


def test_tk_dispatch_delivers_on_the_tk_thread(xvfb_display: str) -> None:
    import tkinter

    root = tkinter.Tk()
    try:
        dispatch = tk_dispatch(root, interval_ms=5)
        db = Database(dispatch=dispatch)
        label = tkinter.Label(root, text="")
        label.pack()
        threads: list[int] = []

        def show(n: int) -> None:
            threads.append(threading.get_ident())
            label.configure(text=f"{n} items")

        db.subscribe(count, None, show)
        assert label.cget("text") == ""
        pump_tk(root, lambda: label.cget("text") == "0 items")
        writer = add_many(db, 40)
        writer.join(10)
        assert not writer.is_alive()
        assert label.cget("text") == "0 items"
        pump_tk(root, lambda: label.cget("text") == "40 items")
        assert set(threads) == {threading.get_ident()}
        assert len(threads) <= 3
        db.close()
    finally:
        root.destroy()


def test_tk_dispatch_stop_and_a_destroyed_root(xvfb_display: str) -> None:
    import tkinter

    root = tkinter.Tk()
    dispatch = tk_dispatch(root, interval_ms=5)
    ran: list[str] = []
    dispatch(lambda: ran.append("a"))
    pump_tk(root, lambda: ran == ["a"])
    dispatch.stop()
    dispatch(lambda: ran.append("b"))
    deadline = time.monotonic() + 0.1
    while time.monotonic() < deadline:
        root.update()
    assert ran == ["a"]
    assert dispatch.drain() == 1
    assert ran == ["a", "b"]
    live = tk_dispatch(root, interval_ms=5)
    root.destroy()
    live(lambda: ran.append("c"))
    assert ran == ["a", "b"]


# -- Textual -----------------------------------------------------------------------------


def test_textual_dispatch_delivers_on_the_app_thread_from_any_thread() -> None:
    from textual.app import App, ComposeResult
    from textual.widgets import Static

    class Counter(App):
        def __init__(self) -> None:
            super().__init__()
            self.db = Database(dispatch=textual_dispatch(self))
            self.threads: list[int] = []

        def compose(self) -> ComposeResult:
            yield Static("", id="count")

        def on_mount(self) -> None:
            self.subscription = self.db.subscribe(count, None, self.show)

        def show(self, n: int) -> None:
            self.threads.append(threading.get_ident())
            self.query_one("#count", Static).update(f"{n} items")

        def key_a(self) -> None:
            self.db.mutation(add)

    async def main() -> None:
        app = Counter()
        async with app.run_test() as pilot:
            label = app.query_one("#count", Static)

            async def until(text: str) -> None:
                for _ in range(200):
                    if str(label.content) == text:
                        return
                    await pilot.pause(0.01)
                raise AssertionError(f"{label.content!r} never became {text!r}")

            await until("0 items")
            app_thread = threading.get_ident()
            writer = add_many(app.db, 30)
            writer.join(10)
            assert not writer.is_alive()
            await until("30 items")
            await pilot.press("a")
            await until("31 items")
            assert set(app.threads) == {app_thread}
            assert len(app.threads) <= 4
        app.db.close()

    asyncio.run(main())


# -- Qt ----------------------------------------------------------------------------------


def _qt_app() -> Any:
    try:
        from PySide6.QtWidgets import QApplication
    except ImportError:
        pytest.skip('needs Qt: pip install ".[qt]" (PySide6); .ci/run installs it')
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    return QApplication.instance() or QApplication([])


def test_qt_dispatch_delivers_on_the_main_thread_and_tie_ends_with_the_widget() -> None:
    app = _qt_app()
    from PySide6.QtWidgets import QLabel

    db = Database(dispatch=qt_dispatch())
    label = QLabel("")
    threads: list[int] = []

    def show(n: int) -> None:
        threads.append(threading.get_ident())
        label.setText(f"{n} items")

    sub = tie(db.subscribe(count, None, show), label)

    def pump(done: Any) -> None:
        deadline = time.monotonic() + 10
        while not done():
            assert time.monotonic() < deadline, "Qt did not get there in time"
            app.processEvents()
            time.sleep(0.005)

    assert label.text() == ""
    pump(lambda: label.text() == "0 items")
    writer = add_many(db, 30)
    writer.join(10)
    assert not writer.is_alive()
    assert label.text() == "0 items", "the committing thread never runs the callback"
    pump(lambda: label.text() == "30 items")
    assert set(threads) == {threading.get_ident()}
    assert len(threads) <= 4
    from PySide6.QtCore import QCoreApplication, QEvent

    label.deleteLater()
    QCoreApplication.sendPostedEvents(label, QEvent.Type.DeferredDelete)
    pump(lambda: not sub.active)
    assert db.stats()["subscriptions"] == 0
    db.close()
    app.shutdown()


def test_qt_dispatch_without_qt_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "PySide6", None)
    monkeypatch.setitem(sys.modules, "PyQt6", None)
    with pytest.raises(ImportError, match=r'livedb\[qt\]'):
        qt_dispatch()


# -- tie: a subscription ends with its widget --------------------------------------------


def test_tie_ends_a_subscription_when_its_tk_widget_is_destroyed(xvfb_display: str) -> None:
    import tkinter

    root = tkinter.Tk()
    try:
        db = Database(dispatch=tk_dispatch(root, interval_ms=5))
        window = tkinter.Toplevel(root)
        label = tkinter.Label(window, text="")
        label.pack()
        other = tkinter.Label(window, text="")
        other.pack()
        sub = tie(db.subscribe(count, None, lambda n: label.configure(text=str(n))), label)
        kept = tie(db.subscribe(count, None, lambda n: None), window)
        pump_tk(root, lambda: label.cget("text") == "0")
        other.destroy()
        root.update()
        assert sub.active, "only its own widget's <Destroy> ends it"
        label.destroy()
        root.update()
        assert not sub.active
        assert kept.active
        db.mutation(add)
        window.destroy()
        root.update()
        assert not kept.active
        assert db.stats()["subscriptions"] == 0
        db.close()
    finally:
        root.destroy()


def test_tie_ends_a_subscription_when_its_textual_widget_unmounts() -> None:
    from textual.app import App, ComposeResult
    from textual.widgets import Static

    class Counter(App):
        def __init__(self) -> None:
            super().__init__()
            self.db = Database(dispatch=textual_dispatch(self))

        def compose(self) -> ComposeResult:
            yield Static("", id="count")

        def on_mount(self) -> None:
            label = self.query_one("#count", Static)
            self.sub = tie(self.db.subscribe(count, None,
                                             lambda n: label.update(f"{n} items")), label)

    async def main() -> None:
        app = Counter()
        async with app.run_test() as pilot:
            await pilot.pause(0.05)
            assert app.sub.active
            await app.query_one("#count", Static).remove()
            for _ in range(100):
                if not app.sub.active:
                    break
                await pilot.pause(0.01)
            assert not app.sub.active
            app.db.mutation(add)
        app.db.close()

    asyncio.run(main())


def test_tie_refuses_what_it_cannot_watch() -> None:
    db = Database()
    sub = db.subscribe(count, None, lambda n: None)
    with pytest.raises(TypeError, match="Tk widget"):
        tie(sub, object())
    with pytest.raises(TypeError, match="subscription"):
        tie(object(), object())
    db.close()
