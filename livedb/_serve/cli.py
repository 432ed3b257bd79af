"""`python -m livedb serve PACKAGE`: open the database, serve until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import inspect
import signal
import sys
import threading
from typing import Any

from .._database import Database
from .._errors import LiveDBError
from . import serve
from .registry import load


def add_parser(commands: Any) -> None:
    """Add the `serve` subcommand to `python -m livedb`'s subparsers."""
    parser = commands.add_parser(
        "serve", help="serve a package's functions to Convex clients (needs livedb[serve])",
        description="Serve PACKAGE's queries, mutations and actions over Convex's sync "
                    "protocol and HTTP API, so the convex npm client (ConvexClient, React "
                    "hooks, ConvexHttpClient) works against livedb.")
    parser.add_argument("package", help="the functions: a directory (like a Convex "
                                        "project's convex/ folder) or a dotted module name")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--path", help="the database file (default: in memory)")
    where.add_argument("--url", help="a database URL (e.g. postgresql://...)")
    parser.add_argument("--host", default="127.0.0.1", help="default: 127.0.0.1")
    parser.add_argument("--port", type=int, default=3210,
                        help="default: 3210; 0 picks a free port")
    parser.add_argument("--allow-origin", action="append", dest="origins", metavar="ORIGIN",
                        help="a browser origin allowed to connect (repeatable; default: any)")
    parser.add_argument("--token-ttl", type=float, default=3600.0, metavar="SECONDS",
                        help="lifetime of the JWTs handed out for session tokens")
    parser.add_argument("--no-sign-up", action="store_true",
                        help="turn off /api/auth/sign_up")


def run(args: argparse.Namespace) -> int:
    """Serve until interrupted; 0 on a clean stop, 1 (with a message) on an error."""
    try:
        package = load(args.package)
        options: dict[str, Any] = {"path": args.path, "crons": package.crons}
        if args.url is not None:
            if "url" not in inspect.signature(Database).parameters:
                raise LiveDBError("--url: this livedb cannot open database URLs")
            options["url"] = args.url
        db = Database(package.schema, **options)
    except (LiveDBError, OSError) as e:
        print(f"python -m livedb serve: error: {e}", file=sys.stderr)
        return 1
    stop = threading.Event()
    try:
        server = serve(db, package, host=args.host, port=args.port,
                       allowed_origins=args.origins or "*", token_ttl=args.token_ttl,
                       sign_up=not args.no_sign_up)
    except (LiveDBError, ValueError) as e:
        db.close()
        print(f"python -m livedb serve: error: {e}", file=sys.stderr)
        return 1
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print(f"livedb serve: {len(package.functions)} functions of {package.name} on "
          f"{server.url}", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.close()
        db.close()
    return 0
