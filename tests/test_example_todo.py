"""The Tk todo example in real windows on a private Xvfb display, driven by generated
X events: typed keys, Enter, a double-click, Delete; and a background thread's items."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from examples.todo import TodoApp, TodoWindow


def pump(app: TodoApp, done: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "the windows did not get there in time"
        app.root.update()
        time.sleep(0.005)


def lines(window: TodoWindow) -> list[str]:
    return list(window.listbox.get(0, "end"))


def type_text(app: TodoApp, widget: object, text: str) -> None:
    widget.focus_force()  # type: ignore[attr-defined]
    pump(app, lambda: app.root.focus_get() is widget)
    for ch in text:
        keysym = "space" if ch == " " else ch
        widget.event_generate("<KeyPress>", keysym=keysym)  # type: ignore[attr-defined]
    widget.event_generate("<KeyPress>", keysym="Return")  # type: ignore[attr-defined]


@pytest.fixture
def app(xvfb_display: str, tmp_path: Path) -> Iterator[TodoApp]:
    todo = TodoApp(tmp_path / "todo.livedb")
    todo.root.update()
    try:
        yield todo
    finally:
        todo.close()


def test_typing_in_one_window_shows_in_the_other(app: TodoApp) -> None:
    one, two = app.windows
    type_text(app, one.entry, "buy milk")
    pump(app, lambda: lines(two) == ["[ ] buy milk"])
    assert lines(one) == ["[ ] buy milk"]
    assert one.entry.get() == ""
    assert two.status.cget("text") == "1 of 1 left"
    type_text(app, two.entry, "walk dog")
    pump(app, lambda: lines(one) == ["[ ] buy milk", "[ ] walk dog"])


def test_ticking_and_deleting_by_events_reach_the_other_window(app: TodoApp) -> None:
    one, two = app.windows
    for text in ("a", "b"):
        type_text(app, one.entry, text)
    pump(app, lambda: lines(two) == ["[ ] a", "[ ] b"])
    x, y, _w, h = two.listbox.bbox(1)
    for _click in range(2):
        two.listbox.event_generate("<ButtonPress-1>", x=x + 2, y=y + h // 2)
        two.listbox.event_generate("<ButtonRelease-1>", x=x + 2, y=y + h // 2)
    pump(app, lambda: lines(one) == ["[ ] a", "[x] b"])
    assert one.status.cget("text") == "1 of 2 left"
    one.listbox.selection_clear(0, "end")
    one.listbox.selection_set(0)
    one.listbox.focus_force()
    pump(app, lambda: app.root.focus_get() is one.listbox)
    one.listbox.event_generate("<KeyPress>", keysym="Delete")
    pump(app, lambda: lines(two) == ["[x] b"])
    assert lines(one) == ["[x] b"]


def test_a_background_thread_adds_items_to_both_windows(app: TodoApp) -> None:
    one, two = app.windows
    app.toggle_feeder(interval=0.01, limit=3)
    assert one.auto.cget("text") == "Stop"
    expected = [f"[ ] background item {i}" for i in (1, 2, 3)]
    pump(app, lambda: lines(one) == expected and lines(two) == expected)


def add_and_close(path: Path, text: str) -> None:
    app = TodoApp(path)
    type_text(app, app.windows[0].entry, text)
    pump(app, lambda: lines(app.windows[1]) == [f"[ ] {text}"])
    app.close()


def test_the_list_survives_a_restart(xvfb_display: str, tmp_path: Path) -> None:
    path = tmp_path / "todo.livedb"
    add_and_close(path, "keep me")
    gc.collect()
    second = TodoApp(path)
    try:
        pump(second, lambda: lines(second.windows[0]) == ["[ ] keep me"])
    finally:
        second.close()
