"""Dispatchers that hand live-query callbacks to a UI toolkit's own thread.

Pass one as `Database(..., dispatch=...)`. livedb then gives every callback (of a
subscription, of a client's subscriptions, and a client mutation's future) to the
dispatcher, which runs it later on the UI thread. The committing thread never waits for
the UI, no callback runs inside a commit, and a busy UI gets the newest result rather
than a backlog: updates still waiting to be delivered are coalesced, and results never
go backwards.

No toolkit is imported until its dispatcher is asked for, and none is a dependency of
livedb (`pip install "livedb[textual]"` or `"livedb[qt]"`; Tk comes with Python).

| toolkit | how a callback reaches the UI thread | dispatcher |
| --- | --- | --- |
| asyncio | `loop.call_soon_threadsafe` | `asyncio_dispatch(loop)` |
| Tk | a queue drained by `root.after()` polling | `tk_dispatch(root)` |
| Qt | a signal with a queued connection to the main thread | `qt_dispatch()` |
| Textual | `app.call_later` (a thread-safe message) | `textual_dispatch(app)` |

A dispatcher is any callable given a zero-argument function, which it must run later on
the right thread and return at once; write your own for another toolkit.
"""

from __future__ import annotations

import asyncio
import logging
import queue
from collections.abc import Callable
from typing import Any

log = logging.getLogger("livedb")

Thunk = Callable[[], Any]
Dispatch = Callable[[Thunk], Any]


def _run(fn: Thunk) -> None:
    try:
        fn()
    except Exception:
        log.exception("livedb: a dispatched callback raised")


# -- asyncio ---------------------------------------------------------------------------


def asyncio_dispatch(loop: asyncio.AbstractEventLoop | None = None) -> Dispatch:
    """Deliver callbacks on an asyncio event loop's thread.

    Each callback is handed over with `loop.call_soon_threadsafe`, the one loop method
    other threads may call. Once the loop is closed, deliveries are dropped: nobody is
    left to see them. A callback that raises is logged (logger ``"livedb"``) and does
    not stop the loop.

    Args:
        loop: The loop to deliver on. Default: the running loop (so call it from a
            coroutine).

    Returns:
        A dispatcher for `Database(..., dispatch=...)`.

    Raises:
        RuntimeError: `loop` is None and no loop is running in this thread.

    Examples:
        >>> import asyncio
        >>> from livedb import Database
        >>> from livedb.ui import asyncio_dispatch
        >>> async def main():
        ...     db = Database(dispatch=asyncio_dispatch())
        ...     seen = []
        ...     db.subscribe(lambda ctx: len(ctx.db.query("notes").collect()), None,
        ...                  seen.append)
        ...     await asyncio.sleep(0.01)          # the loop delivers the first result
        ...     db.mutation(lambda ctx: ctx.db.insert("notes", {"text": "hi"}))
        ...     await asyncio.sleep(0.01)
        ...     db.close()
        ...     return seen
        >>> asyncio.run(main())
        [0, 1]
    """
    if loop is None:
        loop = asyncio.get_running_loop()
    target = loop

    def dispatch(fn: Thunk) -> None:
        try:
            target.call_soon_threadsafe(_run, fn)
        except RuntimeError:
            if not target.is_closed():
                raise

    return dispatch


# -- Tk --------------------------------------------------------------------------------


class TkDispatch:
    """A thread-safe queue of callbacks that the Tk thread drains every `interval_ms`.

    Tk is not thread-safe: other threads may not even call `root.after`, so they only
    put callbacks on the queue, and a poll that `after` re-arms on the Tk thread runs
    them in order. Polling stops when the root window is destroyed (or on `stop()`).
    Calling the dispatcher is safe from any thread, so a worker thread may also use it
    to run its own code on the Tk thread (`dispatch(root.destroy)`).

    Made by `tk_dispatch`.

    Args:
        root: The application's `tkinter.Tk()` root.
        interval_ms: How often the queue is polled, in milliseconds (at least 1).

    Raises:
        ValueError: `interval_ms` is less than 1.
    """

    def __init__(self, root: Any, interval_ms: int = 10) -> None:
        import tkinter

        if interval_ms < 1:
            raise ValueError("tk_dispatch: interval_ms must be >= 1")
        self._tcl_error = tkinter.TclError
        self._root = root
        self._interval = int(interval_ms)
        self._queue: queue.SimpleQueue[Thunk] = queue.SimpleQueue()
        self._after: str | None = None
        self._stopped = False
        self._schedule()

    def __call__(self, fn: Thunk) -> None:
        self._queue.put(fn)

    def _schedule(self) -> None:
        try:
            self._after = self._root.after(self._interval, self._poll)
        except self._tcl_error:
            self._stopped = True

    def _poll(self) -> None:
        self._after = None
        self.drain()
        if not self._stopped:
            self._schedule()

    def drain(self) -> int:
        """Run the callbacks queued so far, now, on the calling thread (which must be Tk's).

        Callbacks they queue in turn wait for the next poll. The poll calls this itself;
        call it directly to deliver at once, e.g. in a test.

        Returns:
            How many callbacks ran.
        """
        count = self._queue.qsize()
        for _ in range(count):
            _run(self._queue.get_nowait())
        return count

    def stop(self) -> None:
        """Stop polling; callbacks still queued are not run. Call it on the Tk thread."""
        self._stopped = True
        if self._after is not None:
            try:
                self._root.after_cancel(self._after)
            except self._tcl_error:
                pass
            self._after = None


def tk_dispatch(root: Any, interval_ms: int = 10) -> TkDispatch:
    """Deliver callbacks on the Tk thread, through a queue it polls.

    Call it on the Tk thread (the one that created `root` and runs `mainloop()`),
    before `mainloop()`. See the live queries guide for a complete window.

    Args:
        root: The application's `tkinter.Tk()` root.
        interval_ms: How often the queue is polled, in milliseconds.

    Returns:
        A `TkDispatch`, the dispatcher for `Database(..., dispatch=...)`.

    Raises:
        ValueError: `interval_ms` is less than 1.
    """
    return TkDispatch(root, interval_ms)


# -- Qt --------------------------------------------------------------------------------


def _qt_core() -> Any:
    try:
        from PySide6 import QtCore  # pyright: ignore[reportMissingImports]  # (the qt extra)
    except ImportError:
        try:
            from PyQt6 import QtCore  # type: ignore[no-redef, unused-ignore]
        except ImportError:
            raise ImportError('qt_dispatch needs PySide6 or PyQt6: pip install "livedb[qt]"'
                              ) from None
    return QtCore


def qt_dispatch() -> Dispatch:
    """Deliver callbacks on the Qt main thread, through a signal with a queued connection.

    Uses PySide6 if it is installed, else PyQt6. Because the connection is queued, a
    callback dispatched even from the main thread runs later from the event loop, never
    inside the commit. Once the application is gone, deliveries are dropped. See the
    live queries guide for a complete window.

    Returns:
        A dispatcher for `Database(..., dispatch=...)`.

    Raises:
        ImportError: Neither PySide6 nor PyQt6 is installed
            (`pip install "livedb[qt]"`).
        RuntimeError: No `QApplication` exists yet: create it first.
    """
    QtCore = _qt_core()
    app = QtCore.QCoreApplication.instance()
    if app is None:
        raise RuntimeError("qt_dispatch: create the QApplication before the dispatcher")
    signal = getattr(QtCore, "Signal", None) or QtCore.pyqtSignal

    class _Invoker(QtCore.QObject):  # type: ignore[misc, name-defined]
        call = signal(object)

        def _run(self, fn: Thunk) -> None:
            _run(fn)

    invoker = _Invoker()
    if QtCore.QThread.currentThread() != app.thread():
        invoker.moveToThread(app.thread())
    invoker.call.connect(invoker._run, QtCore.Qt.ConnectionType.QueuedConnection)

    def dispatch(fn: Thunk) -> None:
        try:
            invoker.call.emit(fn)
        except RuntimeError:
            log.debug("livedb: Qt is shut down; an update was dropped")

    return dispatch


# -- Textual ---------------------------------------------------------------------------


def textual_dispatch(app: Any) -> Dispatch:
    """Deliver callbacks on a Textual app's thread, as `app.call_later` callbacks.

    `call_later` posts a message, which Textual makes thread-safe and which never waits
    (unlike `call_from_thread`, which blocks its caller and refuses the app's own
    thread). Subscribe once the app runs (e.g. in `on_mount`); once it closes, updates
    are dropped. See the live queries guide for a complete app.

    Args:
        app: The running `textual.app.App`.

    Returns:
        A dispatcher for `Database(..., dispatch=...)`.
    """

    def dispatch(fn: Thunk) -> None:
        app.call_later(_run, fn)

    return dispatch


# -- a subscription's lifetime ----------------------------------------------------------


def tie(subscription: Any, widget: Any) -> Any:
    """End `subscription` when `widget` goes away; returns `subscription`.

    A subscription holds its callback strongly, so a window closed without unsubscribing
    would stay alive and keep receiving updates. Tying it to the widget that shows it
    ends it with that widget: a Tk widget's `<Destroy>`, a Qt object's `destroyed`
    signal, a Textual widget's unmount. `subscription` is anything with `unsubscribe()`
    (a `Subscription`, a client subscription) or `close()` (a paginated view).

    Args:
        subscription: what to end.
        widget: a Tk widget, a Qt `QObject`, or a Textual `Widget`/`App`.

    Raises:
        TypeError: `widget` is none of these, or `subscription` cannot be ended.

    Example:
        ```python
        listbox = tkinter.Listbox(window)
        tie(db.subscribe(latest, {"channel": "general"}, show_in_listbox), listbox)
        ```
    """
    end = getattr(subscription, "unsubscribe", None) or getattr(subscription, "close", None)
    if not callable(end):
        raise TypeError(f"tie: expected a subscription or a paginated view, got "
                        f"{type(subscription).__name__}")
    destroyed = getattr(widget, "destroyed", None)
    if destroyed is not None and callable(getattr(destroyed, "connect", None)):
        destroyed.connect(lambda *_: end())
        return subscription
    if callable(getattr(widget, "run_worker", None)):
        widget.run_worker(_until_cancelled(end), group="livedb-tie", exit_on_error=False)
        return subscription
    if callable(getattr(widget, "bind", None)) and callable(getattr(widget, "winfo_exists",
                                                                     None)):
        def on_destroy(event: Any) -> None:
            if event.widget is widget:
                end()

        widget.bind("<Destroy>", on_destroy, add="+")
        return subscription
    raise TypeError(f"tie: {type(widget).__name__} is not a Tk widget, a Qt QObject or a "
                    "Textual widget")


async def _until_cancelled(end: Callable[[], Any]) -> None:
    """A Textual worker that waits until its widget unmounts (which cancels it)."""
    try:
        await asyncio.Event().wait()
    finally:
        end()


__all__ = ["TkDispatch", "asyncio_dispatch", "qt_dispatch", "textual_dispatch", "tie",
           "tk_dispatch"]
