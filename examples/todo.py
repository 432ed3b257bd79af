"""A desktop todo list (Tk): two windows on one durable database, live in both.

    python examples/todo.py [--db PATH]

Type in either window and press Enter to add; double-click an item (or select it and
press space) to tick it; Delete removes it. Each window is its own `Client`: its edits
show in the other window at once, and in its own even before they commit (optimistic).
"Auto-add" starts a background thread that adds an item every second; its commits reach
both windows through the Tk dispatcher, as every update does. The list lives in a file
(default: the user's data directory), so it is still there next time.
"""

from __future__ import annotations

import argparse
import os
import threading
import tkinter as tk
from pathlib import Path
from typing import Any

from livedb import Database, define_schema, define_table, mutation, query, v
from livedb._client import Client, OptimisticStore
from livedb.ui import tie, tk_dispatch

schema = define_schema({
    "todos": define_table({"text": v.string(), "done": v.boolean()}),
})


@query
def list_todos(ctx: Any) -> list[dict]:
    return ctx.db.query("todos").collect()


@mutation(args={"text": v.string()})
def add_todo(ctx: Any, text: str) -> str:
    return ctx.db.insert("todos", {"text": text, "done": False})


@mutation(args={"id": v.id("todos")})
def toggle_todo(ctx: Any, id: str) -> None:
    todo = ctx.db.get(id)
    if todo is not None:
        ctx.db.patch(id, {"done": not todo["done"]})


@mutation(args={"id": v.id("todos")})
def remove_todo(ctx: Any, id: str) -> None:
    if ctx.db.get(id) is not None:
        ctx.db.delete(id)


def show_added(store: OptimisticStore, args: dict) -> None:
    """Optimistic add: the item shows at once, greyed until its commit replaces it."""
    todos = store.get_query(list_todos)
    if todos is not None:
        store.set_query(list_todos, None,
                        todos + [{"_id": "", "text": args["text"], "done": False}])


def default_path() -> Path:
    """Where the list lives by default: $XDG_DATA_HOME (or ~/.local/share)/livedb-examples."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local",
                                                           "share")
    return Path(base) / "livedb-examples" / "todo.livedb"


class TodoWindow:
    """One window's list, entry and buttons, kept current by a live query of its client."""

    def __init__(self, window: tk.Misc, client: Client, title: str,
                 app: TodoApp) -> None:
        self.client = client
        self.app = app
        window.title(title)  # type: ignore[attr-defined]
        self.entry = tk.Entry(window, width=32)
        self.entry.pack(fill="x", padx=6, pady=(6, 3))
        self.entry.bind("<Return>", self.on_add)
        self.listbox = tk.Listbox(window, height=12, activestyle="none")
        self.listbox.pack(fill="both", expand=True, padx=6)
        self.listbox.bind("<Double-Button-1>", self.on_toggle)
        self.listbox.bind("<space>", self.on_toggle)
        self.listbox.bind("<Delete>", self.on_remove)
        bar = tk.Frame(window)
        bar.pack(fill="x", padx=6, pady=6)
        self.status = tk.Label(bar, text="", anchor="w")
        self.status.pack(side="left", fill="x", expand=True)
        self.auto = tk.Button(bar, text="Auto-add", command=app.toggle_feeder)
        self.auto.pack(side="right")
        self.todos: list[dict] = []
        self.subscription = tie(client.subscribe(list_todos, None, self.show), window)

    def show(self, todos: list[dict]) -> None:
        """Redraw from a live result (runs on the Tk thread, via the dispatcher)."""
        self.todos = todos
        selected = self.listbox.curselection()
        self.listbox.delete(0, "end")
        for i, todo in enumerate(todos):
            self.listbox.insert("end", f"[{'x' if todo['done'] else ' '}] {todo['text']}")
            if not todo["_id"]:
                self.listbox.itemconfigure(i, foreground="grey")
        for i in selected:
            if i < len(todos):
                self.listbox.selection_set(i)
        left = sum(not t["done"] for t in todos)
        self.status.configure(text=f"{left} of {len(todos)} left")

    def selected(self) -> dict | None:
        chosen = self.listbox.curselection()
        if not chosen or chosen[0] >= len(self.todos) or not self.todos[chosen[0]]["_id"]:
            return None
        return self.todos[chosen[0]]

    def on_add(self, _event: object = None) -> None:
        text = self.entry.get().strip()
        if text:
            self.entry.delete(0, "end")
            self.client.mutation(add_todo, {"text": text}, optimistic_update=show_added)

    def on_toggle(self, event: Any = None) -> None:
        if event is not None and getattr(event, "y", None) is not None and event.num == 1:
            self.listbox.selection_clear(0, "end")
            self.listbox.selection_set(self.listbox.nearest(event.y))
        todo = self.selected()
        if todo is not None:
            self.client.mutation(toggle_todo, {"id": todo["_id"]})

    def on_remove(self, _event: object = None) -> None:
        todo = self.selected()
        if todo is not None:
            self.client.mutation(remove_todo, {"id": todo["_id"]})


class Feeder(threading.Thread):
    """A background thread adding an item every `interval` seconds (up to `limit`)."""

    def __init__(self, db: Database, interval: float = 1.0, limit: int | None = None) -> None:
        super().__init__(name="todo-feeder", daemon=True)
        self.db = db
        self.interval = interval
        self.limit = limit
        self.stopped = threading.Event()
        self.added = 0

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            self.added += 1
            self.db.mutation(add_todo, {"text": f"background item {self.added}"})
            if self.limit is not None and self.added >= self.limit:
                return


class TodoApp:
    """Two windows (the root and a Toplevel) on one database, each with its own client."""

    def __init__(self, path: str | os.PathLike[str], root: tk.Tk | None = None) -> None:
        self.root = root or tk.Tk()
        self.dispatch = tk_dispatch(self.root)
        self.db = Database(schema, path=os.fspath(path), dispatch=self.dispatch)
        self.feeder: Feeder | None = None
        self.second = tk.Toplevel(self.root)
        self.windows = [
            TodoWindow(self.root, self.db.client(), "Todo — window 1", self),
            TodoWindow(self.second, self.db.client(), "Todo — window 2", self),
        ]
        self.root.geometry("+20+20")
        self.second.geometry("+380+20")
        self.root.protocol("WM_DELETE_WINDOW", self.close)
        self.second.protocol("WM_DELETE_WINDOW", self.close)

    def toggle_feeder(self, interval: float = 1.0, limit: int | None = None) -> None:
        """Start (or stop) the background thread that adds items."""
        if self.feeder is not None and self.feeder.is_alive():
            self.feeder.stopped.set()
            self.feeder = None
            label = "Auto-add"
        else:
            self.feeder = Feeder(self.db, interval, limit)
            self.feeder.start()
            label = "Stop"
        for window in self.windows:
            window.auto.configure(text=label)

    def close(self) -> None:
        """Stop the feeder, close clients and the database, destroy the windows."""
        if self.feeder is not None:
            self.feeder.stopped.set()
            self.feeder.join()
        for window in self.windows:
            window.client.close()
        self.dispatch.stop()
        self.db.close()
        self.root.destroy()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default=str(default_path()), help="database file")
    args = parser.parse_args(argv)
    Path(args.db).parent.mkdir(parents=True, exist_ok=True)
    app = TodoApp(args.db)
    app.root.mainloop()


if __name__ == "__main__":
    main()
