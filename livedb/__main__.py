"""`python -m livedb`: a short demo of a schema, mutations and a live query."""

from __future__ import annotations

import sys

from . import Database, define_schema, define_table, mutation, query, v

schema = define_schema({
    "messages": define_table({"channel": v.string(), "author": v.string(), "body": v.string()})
    .index("by_channel", ["channel"]),
})


@mutation(args={"channel": v.string(), "author": v.string(), "body": v.string()},
          returns=v.id("messages"))
def send(ctx, channel, author, body):
    return ctx.db.insert("messages", {"channel": channel, "author": author, "body": body})


@query(args={"channel": v.string()})
def latest(ctx, channel):
    return (ctx.db.query("messages")
            .with_index("by_channel", lambda q: q.eq("channel", channel))
            .order("desc").take(3))


def demo() -> None:
    with Database(schema) as db:
        def show(messages: list[dict]) -> None:
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


def main(argv: list[str]) -> int:
    if argv and argv[0] not in ("demo",):
        print(f"usage: python -m livedb [demo]; unknown command {argv[0]!r}", file=sys.stderr)
        return 2
    demo()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
