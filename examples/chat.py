"""A terminal chat (Textual): two panes, two users, one durable database, live everywhere.

    pip install ".[textual]" && python examples/chat.py [--db PATH]

Each pane signs in with `PasswordAuth` ("Create account" the first time) and gets its own
`Client`. Channels are a live list (type `/join NAME` to open one); messages are a live
paginated list ("Older" loads another page); sending shows the message at once, dimmed,
through an optimistic update until its commit arrives; the search box shows live
full-text results in the channel. Whatever one pane does, the other sees at once. The
chat lives in a file (default: the user's data directory), so it is there next time.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

from rich.text import Text
from textual.app import App, ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Button, Footer, Input, Label, OptionList, Static
from textual.widgets.option_list import Option

from livedb import (
    AppError,
    AuthError,
    Database,
    PaginationResult,
    ValidationError,
    define_schema,
    define_table,
    mutation,
    query,
    v,
)
from livedb._client import Client, OptimisticStore, PaginatedView
from livedb.auth import PasswordAuth
from livedb.ui import textual_dispatch

schema = define_schema({
    "channels": define_table({"name": v.string()}).index("by_name", ["name"]),
    "messages": define_table({"channel": v.string(), "author": v.string(), "body": v.string()})
        .index("by_channel", ["channel"])
        .search_index("search_body", search_field="body", filter_fields=["channel"]),
})

PAGE = 20


@query
def list_channels(ctx: Any) -> list[str]:
    return [c["name"] for c in ctx.db.query("channels").with_index("by_name").collect()]


@mutation(args={"name": v.string()})
def join_channel(ctx: Any, name: str) -> None:
    name = name.strip().lstrip("#").lower()
    if not name or len(name) > 24:
        raise AppError("a channel name has 1 to 24 characters")
    if ctx.db.query("channels").with_index("by_name", lambda q: q.eq("name", name)).first():
        return
    ctx.db.insert("channels", {"name": name})


@query(args={"channel": v.string(), "pagination_opts": v.any()})
def list_messages(ctx: Any, channel: str, pagination_opts: dict) -> PaginationResult:
    return (ctx.db.query("messages")
            .with_index("by_channel", lambda q: q.eq("channel", channel))
            .order("desc").paginate(pagination_opts))


@mutation(args={"channel": v.string(), "body": v.string()})
def send(ctx: Any, channel: str, body: str) -> str:
    identity = ctx.auth.get_user_identity()
    if identity is None:
        raise AppError("sign in to send messages")
    return ctx.db.insert("messages", {"channel": channel, "author": identity.email or "?",
                                      "body": body})


@query(args={"channel": v.string(), "text": v.string()})
def search_messages(ctx: Any, channel: str, text: str) -> list[dict]:
    if not text.strip():
        return []
    return (ctx.db.query("messages")
            .with_search_index("search_body",
                               lambda q: q.search("body", text).eq("channel", channel))
            .take(8))


def default_path() -> Path:
    """Where the chat lives by default: $XDG_DATA_HOME (or ~/.local/share)/livedb-examples."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local",
                                                           "share")
    return Path(base) / "livedb-examples" / "chat.livedb"


class ChatPane(Vertical):
    """One user's view: sign-in, then channels, live messages, a send box and search."""

    def __init__(self, title: str, id: str) -> None:
        super().__init__(id=id)
        self.border_title = title
        self.client: Client | None = None
        self.email = ""
        self.channel = "general"
        self.view: PaginatedView | None = None
        self.search_sub: Any = None
        self.channels_sub: Any = None

    def compose(self) -> ComposeResult:
        with Vertical(id="signin"):
            yield Input(placeholder="email", id="email")
            yield Input(placeholder="password (8+ characters)", password=True, id="password")
            with Horizontal(id="signin-buttons"):
                yield Button("Sign in", id="sign-in", variant="primary")
                yield Button("Create account", id="sign-up")
            yield Label("", id="signin-error")
        with Vertical(id="chat"):
            yield Label("", id="whoami")
            with Horizontal(id="main"):
                yield OptionList(id="channels")
                with Vertical(id="conversation"):
                    yield Button("Older", id="older", compact=True)
                    with VerticalScroll(id="messages-scroll"):
                        yield Static("", id="messages")
                    yield Input(placeholder="message (or /join channel)", id="compose")
            yield Input(placeholder="search this channel", id="search")
            yield Static("", id="results")

    def on_mount(self) -> None:
        self.query_one("#chat").display = False

    @property
    def app_(self) -> ChatApp:
        return self.app  # type: ignore[return-value]

    # -- sign-in ------------------------------------------------------------------------

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id in ("sign-in", "sign-up"):
            self.sign_in(create=event.button.id == "sign-up")
        elif event.button.id == "older" and self.view is not None:
            self.view.load_more(PAGE)

    def sign_in(self, create: bool = False) -> None:
        email = self.query_one("#email", Input).value.strip()
        password = self.query_one("#password", Input).value
        auth = self.app_.auth
        try:
            session = (auth.sign_up if create else auth.sign_in)(email, password)
        except (AuthError, ValidationError) as e:
            self.query_one("#signin-error", Label).update(str(e))
            return
        self.email = auth.identity(session.token).email or email
        self.client = self.app_.db.client(token=session.token)
        self.query_one("#signin").display = False
        self.query_one("#chat").display = True
        self.query_one("#whoami", Label).update(f"signed in as {self.email}")
        self.channels_sub = self.client.subscribe(list_channels, None, self.show_channels)
        self.open_channel(self.channel)
        self.query_one("#compose", Input).focus()

    # -- channels -----------------------------------------------------------------------

    def show_channels(self, names: list[str]) -> None:
        channels = self.query_one("#channels", OptionList)
        channels.clear_options()
        channels.add_options([Option(f"#{name}", id=name) for name in names])
        if self.channel in names:
            channels.highlighted = names.index(self.channel)

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        if event.option.id and event.option.id != self.channel:
            self.open_channel(event.option.id)

    def open_channel(self, name: str) -> None:
        assert self.client is not None
        self.channel = name
        if self.view is not None:
            self.view.close()
        self.query_one("#messages", Static).update(Text(f"#{name}: loading…"))
        self.view = self.client.paginated(list_messages, {"channel": name}, PAGE,
                                          on_update=self.show_messages)
        self.search(self.query_one("#search", Input).value)

    # -- messages -----------------------------------------------------------------------

    def show_messages(self, view: PaginatedView) -> None:
        if view is not self.view:
            return
        text = Text()
        for message in reversed(view.results):
            pending = not message["_id"]
            text.append(f"{message['author']}: ", style="bold" if not pending else "dim")
            text.append(message["body"], style="dim italic" if pending else "")
            text.append("  (sending…)\n" if pending else "\n", style="dim")
        if not view.results:
            text.append(f"#{self.channel} is empty: say hello", style="dim")
        self.query_one("#messages", Static).update(text)
        self.query_one("#older", Button).display = view.status == "can_load_more"
        self.query_one("#messages-scroll", VerticalScroll).scroll_end(animate=False)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if event.input.id in ("email", "password"):
            self.sign_in()
            return
        if event.input.id != "compose" or self.client is None:
            return
        body = event.value.strip()
        event.input.value = ""
        if body.startswith("/join "):
            name = body[6:].strip().lstrip("#").lower()
            self.client.mutation(join_channel, {"name": name})
            self.open_channel(name)
        elif body:
            self.send(body)

    def send(self, body: str) -> None:
        """Send with an optimistic update: the first page shows the message at once."""
        assert self.client is not None and self.view is not None
        first_page = self.view.page_args[0]
        author = self.email

        def show_now(store: OptimisticStore, args: dict) -> None:
            page = store.get_query(list_messages, first_page)
            if page is None:
                return
            mine = {"_id": "", "_creation_time": time.time(), "channel": args["channel"],
                    "author": author, "body": args["body"]}
            store.set_query(list_messages, first_page,
                            PaginationResult([mine, *page.page], page.is_done,
                                             page.continue_cursor))

        self.client.mutation(send, {"channel": self.channel, "body": body},
                             optimistic_update=show_now)

    # -- search -------------------------------------------------------------------------

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "search":
            event.stop()
            self.search(event.value)

    def search(self, text: str) -> None:
        if self.client is None:
            return
        if self.search_sub is not None:
            self.search_sub.unsubscribe()
        self.search_sub = self.client.subscribe(
            search_messages, {"channel": self.channel, "text": text}, self.show_results)

    def show_results(self, found: list[dict]) -> None:
        text = Text()
        if self.query_one("#search", Input).value.strip():
            text.append(f"{len(found)} found\n", style="bold")
        for message in found:
            text.append(f"{message['author']}: {message['body']}\n")
        self.query_one("#results", Static).update(text)

    def close(self) -> None:
        if self.client is not None:
            self.client.close()


class ChatApp(App):
    """Two chat panes side by side on one database (think: two people, one machine)."""

    CSS = """
    ChatPane { width: 1fr; border: round $accent; padding: 0 1; }
    #signin { height: auto; }
    #signin-buttons { height: auto; }
    #signin-error { color: $error; }
    #chat { height: 1fr; }
    #main { height: 1fr; }
    #channels { width: 16; height: 1fr; }
    #conversation { width: 1fr; }
    #messages-scroll { height: 1fr; }
    #results { height: auto; max-height: 9; color: $text-muted; }
    """
    TITLE = "livedb chat"
    BINDINGS = [("ctrl+q", "quit", "Quit")]

    def __init__(self, path: str | os.PathLike[str], **auth_options: Any) -> None:
        super().__init__()
        self.db = Database(schema, path=os.fspath(path), dispatch=textual_dispatch(self))
        self.auth = PasswordAuth(self.db, **auth_options)
        for name in ("general", "random"):
            self.db.mutation(join_channel, {"name": name})

    def compose(self) -> ComposeResult:
        with Horizontal():
            yield ChatPane("left", id="left")
            yield ChatPane("right", id="right")
        yield Footer()

    def on_unmount(self) -> None:
        for pane in self.query(ChatPane):
            pane.close()
        self.db.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default=str(default_path()), help="database file")
    args = parser.parse_args(argv)
    Path(args.db).parent.mkdir(parents=True, exist_ok=True)
    ChatApp(args.db).run()


if __name__ == "__main__":
    main()
