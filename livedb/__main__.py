"""`python -m livedb`: a short demo of a schema, mutations and a live query (the default),
and `export` / `import` of a database file to and from a ZIP of JSON Lines."""

from __future__ import annotations

import argparse
import importlib
import sys
import zipfile
from typing import Any

from . import (
    Database,
    Id,
    LiveDBError,
    MutationCtx,
    QueryCtx,
    define_schema,
    define_table,
    mutation,
    query,
    v,
)
from ._engines.postgres import describe
from ._serve import cli as serve_cli
from .export import TerminalProgress, export_zip, import_zip, is_url, open_location

schema = define_schema({
    "messages": define_table({"channel": v.string(), "author": v.string(), "body": v.string()})
    .index("by_channel", ["channel"]),
})


@mutation(args={"channel": v.string(), "author": v.string(), "body": v.string()},
          returns=v.id("messages"))
def send(ctx: MutationCtx, channel: str, author: str, body: str) -> Id:
    return ctx.db.insert("messages", {"channel": channel, "author": author, "body": body})


@query(args={"channel": v.string()})
def latest(ctx: QueryCtx, channel: str) -> list[dict[str, Any]]:
    return (ctx.db.query("messages")
            .with_index("by_channel", lambda q: q.eq("channel", channel))
            .order("desc").take(3))


def demo() -> None:
    with Database(schema) as db:
        def show(messages: list[dict[str, Any]]) -> None:
            print("  live #general:", " | ".join(f"{m['author']}: {m['body']}"
                                                  for m in messages) or "(empty)")

        print("subscribing to the latest 3 messages in #general")
        subscription = db.subscribe(latest, {"channel": "general"}, show)
        for author, body in [("ada", "hello"), ("bob", "hi ada"), ("ada", "shall we ship?"),
                             ("bob", "ship it")]:
            print(f"{author} sends {body!r} to #general")
            db.mutation(send, {"channel": "general", "author": author, "body": body})
        print("eve sends 'unrelated' to #random (the live query is not re-run)")
        db.mutation(send, {"channel": "random", "author": "eve", "body": "unrelated"})
        subscription.unsubscribe()
        print(f"stats: {db.stats()}")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m livedb",
        description="livedb: run the demo (default), or export / import a database file.")
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("demo", help="a short demo of mutations and a live query")
    export = commands.add_parser("export", help="write a database to a ZIP of JSON Lines")
    export.add_argument("database", help="the database: a file (e.g. app.livedb) or a "
                        "PostgreSQL URL (postgresql://user:pw@host/db); it may be in use")
    export.add_argument("zip", help="the ZIP file to write")
    load = commands.add_parser("import", help="load a ZIP written by export into a database")
    load.add_argument("database", help="the database: a file (created if missing) or a "
                      "PostgreSQL URL; it may be in use")
    load.add_argument("zip", help="the ZIP file to read")
    mode = load.add_mutually_exclusive_group()
    mode.add_argument("--append", action="store_const", const="append", dest="mode",
                      help="add to tables that already have documents")
    mode.add_argument("--replace", action="store_const", const="replace", dest="mode",
                      help="delete the documents of the imported tables first")
    load.add_argument("--schema", metavar="MODULE:NAME",
                      help="check the documents against this schema (e.g. myapp.db:schema)")
    serve_cli.add_parser(commands)
    return parser


def _load_schema(spec: str) -> Any:
    module, _, name = spec.partition(":")
    if not module or not name:
        raise LiveDBError(f"--schema {spec!r}: expected MODULE:NAME, e.g. myapp.db:schema")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise LiveDBError(f"--schema {spec!r}: {e}") from None


def _name(location: str) -> str:
    """A database's name for messages (a URL without its password)."""
    return describe(location) if is_url(location) else location


def _transfer(args: argparse.Namespace) -> str:
    if args.command == "export":
        progress = TerminalProgress("exporting") if sys.stderr.isatty() else None
        counts = export_zip(args.database, args.zip, progress=progress)
        verb = f"exported {_name(args.database)} to {args.zip}"
    else:
        progress = TerminalProgress("importing") if sys.stderr.isatty() else None
        mode = args.mode or "refuse"
        if args.schema:
            with open_location(args.database, _load_schema(args.schema)) as db:
                counts = import_zip(db, args.zip, mode=mode, progress=progress)
        else:
            counts = import_zip(args.database, args.zip, mode=mode, progress=progress)
        verb = f"imported {args.zip} into {_name(args.database)}"
    tables = ", ".join(f"{table} {count:,}" for table, count in counts.items()) or "no tables"
    return f"{verb}: {sum(counts.values()):,} documents ({tables})"


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if args.command in (None, "demo"):
        demo()
        return 0
    if args.command == "serve":
        return serve_cli.run(args)
    try:
        print(_transfer(args))
    except (LiveDBError, OSError, zipfile.BadZipFile) as e:
        print(f"python -m livedb {args.command}: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
