"""`@query`, `@mutation` and `@action`: registered functions, their checks and contexts.

A decorated handler becomes a `QueryFunction`, `MutationFunction` or `ActionFunction`
holding its compiled argument and result checks; its type remembers the handler's
return type, so `db.query(fn, args)` is typed as what `fn` returns.

The context of a query or a mutation *is* its transaction (one object per call): a
`QueryCtx` is a `Reader` that also carries `auth`, and `ctx.db` is the context itself.
What contexts offer beyond the database (`ctx.storage`, `ctx.scheduler`, the actions'
`run_*` calls) comes from a `Services` object the database facade provides, so this
layer names none of the features above it.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import threading
from collections.abc import Callable, Coroutine, Mapping
from itertools import chain
from operator import is_, itemgetter
from typing import (
    TYPE_CHECKING,
    Any,
    Concatenate,
    Generic,
    ParamSpec,
    Protocol,
    TypeVar,
    overload,
)

from ._catalog import Catalog
from ._errors import LiveDBError, ValidationError
from ._identity import UserIdentity
from ._ids import Id
from ._kernel import Kernel, State
from ._query import Reader, Writer
from ._results import PaginationResult
from ._store import Store
from ._validators import Mismatch, Object, Validator, as_validator, check_value
from ._values import encoded_list, reencode, type_name

R = TypeVar("R")
P = ParamSpec("P")

QUERY, MUTATION, ACTION = "query", "mutation", "action"


class QueryFiles(Protocol):
    """`ctx.storage` in a query: stored files' metadata and URLs."""

    def get_metadata(self, id: str) -> dict[str, Any] | None: ...
    def get_url(self, id: str) -> str | None: ...


class MutationFiles(QueryFiles, Protocol):
    """`ctx.storage` in a mutation: also `delete` (with the commit)."""

    def delete(self, id: str) -> None: ...


class ActionFiles(MutationFiles, Protocol):
    """`ctx.storage` in an action: also `store` and `get` (file bytes)."""

    def store(self, data: Any, content_type: str | None = None) -> Id: ...
    def get(self, id: str) -> bytes | None: ...


class Scheduling(Protocol):
    """`ctx.scheduler`: schedule a `@mutation` or `@action` by delay or time, or cancel."""

    def run_after(self, seconds: float, fn: Any, args: Mapping[str, Any] | None = None
                  ) -> Id: ...
    def run_at(self, timestamp: float, fn: Any, args: Mapping[str, Any] | None = None
               ) -> Id: ...
    def cancel(self, id: str) -> None: ...


class Services(Protocol):
    """What contexts reach beyond the database itself (the facade provides it)."""

    def query_storage(self, ctx: QueryCtx) -> QueryFiles: ...
    def mutation_storage(self, ctx: MutationCtx) -> MutationFiles: ...
    def mutation_scheduler(self, ctx: MutationCtx) -> Scheduling: ...
    def action_storage(self) -> ActionFiles: ...
    def action_scheduler(self) -> Scheduling: ...
    def vector_search(self, table: str, index: str, vector: Any, limit: int,
                      filter: Any) -> list[dict[str, Any]]: ...
    def run_query(self, fn: Any, args: Mapping[str, Any] | None,
                  identity: UserIdentity | None) -> Any: ...
    def run_mutation(self, fn: Any, args: Mapping[str, Any] | None,
                     identity: UserIdentity | None) -> Any: ...
    def run_action(self, fn: Any, args: Mapping[str, Any] | None,
                   identity: UserIdentity | None) -> Any: ...


class Auth:
    """`ctx.auth`: who is calling, in queries, mutations and actions."""

    __slots__ = ("_identity",)

    def __init__(self, identity: UserIdentity | None) -> None:
        self._identity = identity

    def get_user_identity(self) -> UserIdentity | None:
        """The caller's identity, or None for an anonymous call.

        It is the `identity=` of `db.query`/`db.mutation`/..., the identity of the client
        that made the call, or the identity a `PasswordAuth` session token stands for. An
        action's `ctx.run_*` calls carry the action's identity; scheduled calls and crons
        run with none.

        Returns:
            A `UserIdentity`, or None.

        Examples:
            >>> from livedb import Database, UserIdentity, query
            >>> @query
            ... def whoami(ctx):
            ...     identity = ctx.auth.get_user_identity()
            ...     return None if identity is None else identity.subject
            >>> db = Database()
            >>> db.query(whoami, identity=UserIdentity("ada")), db.query(whoami)
            ('ada', None)
            >>> db.close()
        """
        return self._identity


NO_AUTH = Auth(None)


def auth_for(identity: UserIdentity | None) -> Auth:
    """`ctx.auth` for a call made as `identity`; `TypeError` for anything else."""
    if identity is None:
        return NO_AUTH
    if not isinstance(identity, UserIdentity):
        raise TypeError(f"identity must be a livedb.UserIdentity or None, got "
                        f"{type_name(identity)}")
    return Auth(identity)


# -- contexts ----------------------------------------------------------------------------


class QueryCtx(Reader):
    """The context of a query: what its handler gets as `ctx`.

    Use it for type annotations (`def handler(ctx: QueryCtx, ...)`); livedb makes one for
    each call. It is valid only during that call: do not keep it or hand it to another
    thread.

    Attributes:
        db: The database at the query's snapshot, read-only: `get`, `query`,
            `normalize_id`, `system`. (The context itself: `ctx.db is ctx`.)
        auth: Who is calling: `ctx.auth.get_user_identity()`.
        storage: Stored files' metadata and URLs: `get_metadata`, `get_url`.

    Examples:
        >>> from livedb import Database, Id, QueryCtx, query, v
        >>> @query(args={"id": v.id("notes")})
        ... def get_note(ctx: QueryCtx, id: Id) -> dict | None:
        ...     return ctx.db.get(id)
        >>> db = Database()
        >>> note_id = db.mutation(lambda ctx: ctx.db.insert("notes", {"text": "hi"}))
        >>> db.query(get_note, {"id": note_id})["text"]
        'hi'
        >>> db.close()
    """

    __slots__ = ("auth", "_services")

    def __init__(self, store: Store, catalog: Catalog, ts: int, record: bool,
                 search_indexes: Any, auth: Auth, services: Services) -> None:
        Reader.__init__(self, store, catalog, ts, record, search_indexes)
        self.auth = auth
        """`ctx.auth.get_user_identity()`: who is calling."""
        self._services = services

    @property
    def db(self) -> QueryCtx:
        """The database as this query sees it, read-only: `get`, `query`, `normalize_id`,
        `system`, all at the query's one snapshot."""
        return self

    @property
    def storage(self) -> QueryFiles:
        """Stored files as this query sees them: `get_url` and `get_metadata` (the bytes
        themselves are read in actions, with `ctx.storage.get`)."""
        return self._services.query_storage(self)


class MutationCtx(Writer):
    """The context of a mutation: what its handler gets as `ctx`.

    Everything a mutation does through its context is one transaction: its reads see its
    own earlier writes, and its writes, file deletions and scheduled calls all commit
    together when the handler returns, or not at all if it raises. Use it for type
    annotations; it is valid only during its call.

    Attributes:
        db: The database in this transaction: the reads of a query plus `insert`,
            `patch`, `replace` and `delete`. (The context itself: `ctx.db is ctx`.)
        auth: Who is calling: `ctx.auth.get_user_identity()`.
        storage: Stored files: `get_metadata`, `get_url`, and `delete` (committed with
            the mutation).
        scheduler: `run_after`, `run_at` and `cancel`, committed with the mutation.

    Examples:
        >>> from livedb import Database, Id, MutationCtx, mutation, v
        >>> @mutation(args={"id": v.id("notes")})
        ... def expire(ctx, id):
        ...     ctx.db.delete(id)
        >>> @mutation(args={"text": v.string()})
        ... def add_for_a_minute(ctx: MutationCtx, text: str) -> Id:
        ...     note_id = ctx.db.insert("notes", {"text": text})
        ...     ctx.scheduler.run_after(60, expire, {"id": note_id})
        ...     return note_id
        >>> now = [1000.0]
        >>> db = Database(clock=lambda: now[0])
        >>> note_id = db.mutation(add_for_a_minute, {"text": "hi"})
        >>> now[0] += 60
        >>> db.run_scheduled()
        1
        >>> db.query(lambda ctx: ctx.db.get(note_id)) is None
        True
        >>> db.close()
    """

    __slots__ = ("auth", "_services")

    def __init__(self, store: Store, catalog: Catalog, ts: int, record: bool,
                 search_indexes: Any, auth: Auth, services: Services) -> None:
        Writer.__init__(self, store, catalog, ts, record, search_indexes)
        self.auth = auth
        """`ctx.auth.get_user_identity()`: who is calling."""
        self._services = services

    @property
    def db(self) -> MutationCtx:
        """The database in this transaction: the reads of a query (seeing this mutation's
        own writes) plus `insert`, `patch`, `replace` and `delete`."""
        return self

    @property
    def storage(self) -> MutationFiles:
        """Stored files in this transaction: `get_url`, `get_metadata`, and `delete`
        (committed with the mutation; the bytes go once it commits)."""
        return self._services.mutation_storage(self)

    @property
    def scheduler(self) -> Scheduling:
        """Scheduled calls: `run_after`, `run_at` and `cancel`. They commit with this
        mutation, or not at all if it raises."""
        return self._services.mutation_scheduler(self)


class ActionCtx:
    """The context of an action: what its handler gets as `ctx`.

    An action may do I/O (network, files, slow computations); it is not a transaction, so
    it has no `ctx.db`. It reads and writes through `run_query` and `run_mutation`, each
    its own transaction carrying the action's identity; what a mutation committed stays
    committed if the action fails later. Use it for type annotations; it is valid only
    during its call.

    Attributes:
        auth: Who is calling: `ctx.auth.get_user_identity()`.
        storage: Stored files: `store`, `get`, `get_metadata`, `get_url`, `delete`, each
            committed at once.
        scheduler: `run_after`, `run_at` and `cancel`, each committed at once.

    Examples:
        >>> from livedb import ActionCtx, Database, action, mutation, query, v
        >>> @query
        ... def count(ctx):
        ...     return len(ctx.db.query("notes").collect())
        >>> @mutation(args={"text": v.string()})
        ... def add(ctx, text):
        ...     return ctx.db.insert("notes", {"text": text})
        >>> @action(args={"text": v.string()})
        ... def add_and_count(ctx: ActionCtx, text: str) -> int:
        ...     ctx.run_mutation(add, {"text": text})
        ...     return ctx.run_query(count)
        >>> db = Database()
        >>> db.action(add_and_count, {"text": "hi"})
        1
        >>> db.close()
    """

    __slots__ = ("_services", "_identity", "auth")

    def __init__(self, services: Services, identity: UserIdentity | None) -> None:
        self._services = services
        self._identity = identity
        self.auth = auth_for(identity)
        """`ctx.auth.get_user_identity()`: who is calling."""

    @property
    def storage(self) -> ActionFiles:
        """Stored files: `store`, `get`, `get_metadata`, `get_url` and `delete`, each
        committed at once (an action is not a transaction)."""
        return self._services.action_storage()

    @property
    def scheduler(self) -> Scheduling:
        """Scheduled calls: `run_after`, `run_at` and `cancel`, each committed at once (an
        action is not a transaction)."""
        return self._services.action_scheduler()

    @property
    def db(self) -> Any:
        """Actions have no `ctx.db`: an action is not a transaction. Reading it raises
        `LiveDBError` saying to use `ctx.run_query` and `ctx.run_mutation` instead."""
        raise LiveDBError("actions have no ctx.db: an action is not a transaction; read with "
                          "ctx.run_query(...) and write with ctx.run_mutation(...)")

    @overload
    def run_query(self, fn: QueryFunction[R], args: Mapping[str, Any] | None = None) -> R: ...
    @overload
    def run_query(self, fn: Callable[[QueryCtx], R],
                  args: Mapping[str, Any] | None = None) -> R: ...
    def run_query(self, fn: Any, args: Mapping[str, Any] | None = None) -> Any:  # noqa: E301
        """Run a query with the action's identity and return its result.

        Each call reads the newest snapshot: two calls may see different data.

        Args:
            fn: A `@query` function, or any callable `fn(ctx)`.
            args: The arguments, as one dict, or None.

        Returns:
            The query's result (your own copy).

        Raises:
            ValidationError: Bad arguments or result.
            LiveDBError: The database is closed.

        Examples:
            >>> from livedb import Database, action
            >>> @action
            ... def count_notes(ctx):
            ...     return ctx.run_query(lambda ctx: len(ctx.db.query("notes").collect()))
            >>> db = Database()
            >>> db.action(count_notes)
            0
            >>> db.close()
        """
        return self._services.run_query(fn, args, self._identity)

    @overload
    def run_mutation(self, fn: MutationFunction[R],
                     args: Mapping[str, Any] | None = None) -> R: ...
    @overload
    def run_mutation(self, fn: Callable[[MutationCtx], R],
                     args: Mapping[str, Any] | None = None) -> R: ...
    def run_mutation(self, fn: Any, args: Mapping[str, Any] | None = None) -> Any:  # noqa: E301
        """Run a mutation, as its own transaction, with the action's identity.

        It is committed and durable when this returns, whatever the action does next.

        Args:
            fn: A `@mutation` function, or any callable `fn(ctx)`.
            args: The arguments, as one dict, or None.

        Returns:
            The mutation's result.

        Raises:
            ValidationError: Bad arguments, a write that does not fit the schema, or a bad
                result (nothing is written).
            DocumentNotFoundError: A patch, replace or delete of a missing document.
            LiveDBError: The database is closed.

        Examples:
            >>> from livedb import Database, action, mutation, v
            >>> @mutation(args={"text": v.string()})
            ... def add(ctx, text):
            ...     return ctx.db.insert("notes", {"text": text})
            >>> @action
            ... def add_greeting(ctx):
            ...     return ctx.run_mutation(add, {"text": "hello"})
            >>> db = Database()
            >>> db.action(add_greeting).table
            'notes'
            >>> db.close()
        """
        return self._services.run_mutation(fn, args, self._identity)

    @overload
    def run_action(self, fn: ActionFunction[R], args: Mapping[str, Any] | None = None) -> R:
        ...
    @overload
    def run_action(self, fn: Callable[[ActionCtx], R],
                   args: Mapping[str, Any] | None = None) -> R: ...
    def run_action(self, fn: Any, args: Mapping[str, Any] | None = None) -> Any:  # noqa: E301
        """Run another action, with this action's identity, and return its result.

        Args:
            fn: An `@action` function (it may be `async def`), or any callable `fn(ctx)`.
            args: The arguments, as one dict, or None.

        Returns:
            The action's result.

        Raises:
            ValidationError: Bad arguments or result.
            LiveDBError: The database is closed.

        Examples:
            >>> from livedb import Database, action, v
            >>> @action(args={"n": v.int64()})
            ... def double(ctx, n):
            ...     return 2 * n
            >>> @action
            ... def quadruple_three(ctx):
            ...     return ctx.run_action(double, {"n": ctx.run_action(double, {"n": 3})})
            >>> db = Database()
            >>> db.action(quadruple_three)
            12
            >>> db.close()
        """
        return self._services.run_action(fn, args, self._identity)

    def vector_search(self, table: str, index: str, vector: Any, limit: int = 10,
                      filter: Any = None) -> list[dict[str, Any]]:
        """The documents of `table` most similar to `vector`, best first.

        Similarity is the cosine similarity between `vector` and each document's vector in
        vector index `index` (see `TableDefinition.vector_index`), at the newest snapshot.
        Fetch the documents themselves with `ctx.run_query`.

        Args:
            table: The table.
            index: A vector index of the table.
            vector: A list of numbers (or a numpy array) with the index's dimensions.
            limit: How many results at most, 1 to 256.
            filter: None, or a function of `q` returning `q.eq(field, value)` on one of the
                index's filter fields, or `q.or_(...)` of such expressions.

        Returns:
            A list of `{"_id": Id, "_score": float}`, highest score first.

        Raises:
            ValidationError: An unknown vector index, a vector of the wrong length or with
                non-finite numbers, a bad `limit`, or a filter on a field that is not a
                filter field of the index.
            TypeError: `filter` is not callable.

        Examples:
            >>> from livedb import Database, define_schema, define_table, v
            >>> schema = define_schema({"movies": define_table(
            ...     {"title": v.string(), "genre": v.string(), "embedding": v.array(v.float64())}
            ... ).vector_index("by_embedding", vector_field="embedding", dimensions=2,
            ...                filter_fields=["genre"])})
            >>> db = Database(schema)
            >>> for title, genre, embedding in [("Up", "comedy", [1.0, 0.0]),
            ...                                 ("Heat", "drama", [0.0, 1.0])]:
            ...     _ = db.mutation(lambda ctx: ctx.db.insert(
            ...         "movies", {"title": title, "genre": genre, "embedding": embedding}))
            >>> found = db.action(lambda ctx: ctx.vector_search(
            ...     "movies", "by_embedding", [0.9, 0.1], limit=1,
            ...     filter=lambda q: q.or_(q.eq("genre", "comedy"), q.eq("genre", "drama"))))
            >>> [db.query(lambda ctx: ctx.db.get(hit["_id"])["title"]) for hit in found]
            ['Up']
            >>> db.close()
        """
        return self._services.vector_search(table, index, vector, limit, filter)


# -- registered functions ------------------------------------------------------------------


class Function(Generic[R]):
    """A handler registered as a query, mutation or action, with its compiled checks:
    what `@query`, `@mutation` and `@action` return.

    Pass it to `db.query`, `db.mutation`, `db.action`, `db.subscribe`, a client, or the
    scheduler. Calling it directly calls the handler, `fn(ctx, **args)`, without any
    check (handy in tests). It keeps the handler's name, docstring and module.

    Attributes:
        name: The stable name, `"module:qualname"`: what the scheduler stores, and how
            `livedb.serve` finds it.
        kind: `"query"`, `"mutation"` or `"action"`.
        handler: The decorated function.
        args: The validator of the arguments (a `v.object`), or None.
        returns: The validator of the result, or None.

    Examples:
        >>> from livedb import query
        >>> @query
        ... def count_notes(ctx):
        ...     return len(ctx.db.query("notes").collect())
        >>> count_notes.kind, count_notes.name.endswith(":count_notes")
        ('query', True)
    """

    __slots__ = ("kind", "handler", "name", "args", "returns", "check_args",
                 "check_returns", "is_async", "__wrapped__", "__dict__")

    kind: str

    def __init__(self, handler: Callable[..., R], args: Any = None,
                 returns: Any = None) -> None:
        kind = self.kind
        if not callable(handler):
            raise TypeError(f"@{kind} decorates a function, got {type_name(handler)}")
        self.handler = handler
        self.name = function_name(handler)
        self.args: Validator | None = (None if args is None
                                       else as_validator(args, f"@{kind}(args=...)"))
        self.returns: Validator | None = (None if returns is None
                                          else as_validator(returns, f"@{kind}(returns=...)"))
        self.check_args = None if self.args is None else self.args.compile(stored=False)
        self.check_returns = (None if self.returns is None
                              else self.returns.compile(stored=False))
        self.is_async = inspect.iscoroutinefunction(handler)
        if self.is_async and kind != ACTION:
            raise TypeError(f"{self.name}: only actions may be async; queries and mutations "
                            "are plain functions")
        if isinstance(self.args, Object):
            _check_optional_defaults(self.name, handler, self.args)
        self.__wrapped__ = handler
        functools.update_wrapper(self, handler)

    def __call__(self, ctx: Any, **args: Any) -> R:
        return self.handler(ctx, **args)

    def __repr__(self) -> str:
        return f"<livedb {self.kind} {self.name}>"


class QueryFunction(Function[R]):
    """A function registered with `@query` (see `Function`); its type parameter is the
    handler's return type, so `db.query(fn, ...)` is typed as what the handler returns."""

    __slots__ = ()
    kind = QUERY

    if TYPE_CHECKING:  # typed with its context: a query is not a callable of a MutationCtx
        def __call__(self, ctx: QueryCtx, **args: Any) -> R: ...


class MutationFunction(Function[R]):
    """A function registered with `@mutation` (see `Function`); its type parameter is the
    handler's return type."""

    __slots__ = ()
    kind = MUTATION

    if TYPE_CHECKING:
        def __call__(self, ctx: MutationCtx, **args: Any) -> R: ...


class ActionFunction(Function[R]):
    """A function registered with `@action` (see `Function`); its type parameter is the
    handler's result, awaited if it is async."""

    __slots__ = ()
    kind = ACTION

    if TYPE_CHECKING:  # an async handler called directly returns its coroutine
        def __call__(self, ctx: ActionCtx, **args: Any) -> Any: ...


class _ActionDecorator(Protocol):
    """`@action(args=..., returns=...)`: keeps the result type (awaited, if async)."""

    @overload
    def __call__(self, handler: Callable[Concatenate[ActionCtx, P], Coroutine[Any, Any, R]],
                 /) -> ActionFunction[R]: ...
    @overload
    def __call__(self, handler: Callable[Concatenate[ActionCtx, P], R], /
                 ) -> ActionFunction[R]: ...


_KINDS: dict[str, type[Function[Any]]] = {QUERY: QueryFunction, MUTATION: MutationFunction,
                                          ACTION: ActionFunction}


def _check_optional_defaults(name: str, handler: Callable[..., Any], args: Object) -> None:
    """An omitted `v.optional` argument is not passed: its parameter needs a default."""
    try:
        parameters = inspect.signature(handler).parameters
    except (TypeError, ValueError):
        return
    for field, validator in args.fields.items():
        parameter = parameters.get(field)
        if (validator.optional and parameter is not None
                and parameter.default is inspect.Parameter.empty
                and parameter.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                       inspect.Parameter.KEYWORD_ONLY)):
            raise TypeError(f"{name}: argument {field!r} is v.optional(...), so a call may "
                            f"omit it, but parameter {field!r} has no default; give it one "
                            f"(e.g. {field}=None)")


def function_name(fn: Callable[..., Any]) -> str:
    """The stable `"module:qualname"` name of a function."""
    return f"{getattr(fn, '__module__', None)}:{getattr(fn, '__qualname__', repr(fn))}"


@overload
def query(fn: Callable[Concatenate[QueryCtx, P], R], /) -> QueryFunction[R]: ...
@overload
def query(*, args: Any = None, returns: Any = None
          ) -> Callable[[Callable[Concatenate[QueryCtx, P], R]], QueryFunction[R]]: ...
def query(fn: Any = None, /, *, args: Any = None, returns: Any = None) -> Any:  # noqa: E302
    """Register a query: a read-only function of `ctx` and its arguments.

    Use as `@query` or `@query(args=..., returns=...)`. A query reads one consistent
    snapshot; run it with `db.query(fn, args)`, watch it with `db.subscribe` or
    `db.watch`, or call it from an action with `ctx.run_query`. The handler receives
    `ctx` (a `QueryCtx`) and the validated arguments as keyword arguments; an omitted
    `v.optional` argument is not passed, so its parameter needs a default. The result
    type of the handler is kept, so `db.query(fn, ...)` is typed as what it returns.

    A registered function's stable name is `"module:qualname"`. Calling the returned
    object calls the handler directly: `fn(ctx, **args)`.

    Args:
        fn: The handler, `handler(ctx, **args)` (when used without parentheses).
        args: The arguments' validators: a dict of `v.*` validators (or a `v.object`).
            None: the arguments are not validated (any storable values).
        returns: A validator of the return value. None: any storable value, or a
            `PaginationResult`.

    Returns:
        A `QueryFunction` (or, with arguments, a decorator that makes one).

    Raises:
        TypeError: The handler is not callable, is `async def`, or has no default for a
            `v.optional` argument (raised when the function is defined).

    Examples:
        >>> from livedb import Database, query, v
        >>> @query(args={"channel": v.string(), "limit": v.optional(v.int64())})
        ... def latest(ctx, channel, limit=20):
        ...     return (ctx.db.query("messages").order("desc")
        ...             .filter(lambda m: m["channel"] == channel)
        ...             .take(limit))
        >>> db = Database()
        >>> _ = db.mutation(lambda ctx: ctx.db.insert("messages", {"channel": "a", "body": "hi"}))
        >>> [m["body"] for m in db.query(latest, {"channel": "a"})]
        ['hi']
        >>> db.query(latest, {"channel": 1})
        Traceback (most recent call last):
        livedb._errors.ValidationError: ...: args.channel: expected string, got int
        >>> db.close()
    """
    if fn is not None:
        return QueryFunction(fn, args, returns)
    return lambda handler: QueryFunction(handler, args, returns)


@overload
def mutation(fn: Callable[Concatenate[MutationCtx, P], R], /) -> MutationFunction[R]: ...
@overload
def mutation(*, args: Any = None, returns: Any = None
             ) -> Callable[[Callable[Concatenate[MutationCtx, P], R]], MutationFunction[R]]: ...
def mutation(fn: Any = None, /, *, args: Any = None, returns: Any = None) -> Any:  # noqa: E302
    """Register a mutation: a function that reads and writes as one serializable
    transaction (all its writes commit together, or none if it raises).

    Use as `@mutation` or `@mutation(args=..., returns=...)`; run it with
    `db.mutation(fn, args)`, from a client with `client.mutation`, from an action with
    `ctx.run_mutation`, or later with `ctx.scheduler.run_after`. The handler receives
    `ctx` (a `MutationCtx`) and the validated arguments as keyword arguments. A
    mutation that is scheduled must be defined at module level (it is found again by
    its `"module:qualname"` name).

    Args:
        fn: The handler, `handler(ctx, **args)` (when used without parentheses).
        args: The arguments' validators: a dict of `v.*` validators (or a `v.object`).
            None: the arguments are not validated.
        returns: A validator of the return value; a result that fails it rolls the
            mutation back. None: any storable value.

    Returns:
        A `MutationFunction` (or, with arguments, a decorator that makes one).

    Raises:
        TypeError: The handler is not callable, is `async def`, or has no default for a
            `v.optional` argument.

    Examples:
        >>> from livedb import Database, mutation, v
        >>> @mutation(args={"channel": v.string(), "body": v.string()}, returns=v.id("messages"))
        ... def send(ctx, channel, body):
        ...     return ctx.db.insert("messages", {"channel": channel, "body": body})
        >>> db = Database()
        >>> db.mutation(send, {"channel": "general", "body": "hi"}).table
        'messages'
        >>> db.close()
    """
    if fn is not None:
        return MutationFunction(fn, args, returns)
    return lambda handler: MutationFunction(handler, args, returns)


@overload
def action(fn: Callable[Concatenate[ActionCtx, P], Coroutine[Any, Any, R]], /
           ) -> ActionFunction[R]: ...
@overload
def action(fn: Callable[Concatenate[ActionCtx, P], R], /) -> ActionFunction[R]: ...
@overload
def action(*, args: Any = None, returns: Any = None) -> _ActionDecorator: ...
def action(fn: Any = None, /, *, args: Any = None, returns: Any = None) -> Any:  # noqa: E302
    """Register an action: a function that may do I/O (network, files) and calls queries
    and mutations with `ctx.run_query` / `ctx.run_mutation` (each its own transaction).

    Use as `@action` or `@action(args=..., returns=...)`; run it with
    `db.action(fn, args)`, from another action with `ctx.run_action`, or later with
    `ctx.scheduler.run_after` (defined at module level). The handler receives `ctx` (an
    `ActionCtx`) and the validated arguments as keyword arguments; it may be
    `async def`. An action is not a transaction: use it for side effects, and keep
    database logic in mutations.

    Args:
        fn: The handler, `handler(ctx, **args)` (when used without parentheses).
        args: The arguments' validators: a dict of `v.*` validators (or a `v.object`).
            None: the arguments are not validated.
        returns: A validator of the return value. None: any storable value.

    Returns:
        An `ActionFunction` (or, with arguments, a decorator that makes one).

    Raises:
        TypeError: The handler is not callable, or has no default for a `v.optional`
            argument.

    Examples:
        >>> import asyncio
        >>> from livedb import Database, action, v
        >>> @action(args={"seconds": v.float64()})
        ... async def wait(ctx, seconds):
        ...     await asyncio.sleep(seconds)
        ...     return seconds
        >>> db = Database()
        >>> db.action(wait, {"seconds": 0.01})
        0.01
        >>> db.close()
    """
    if fn is not None:
        return ActionFunction(fn, args, returns)
    return lambda handler: ActionFunction(handler, args, returns)


_ADHOC: dict[Any, Function[Any]] = {}


def resolve(fn: Any, kind: str) -> Function[Any]:
    """The registered function for `fn`, wrapping a plain callable as an ad-hoc one."""
    if isinstance(fn, Function):
        if fn.kind != kind:
            raise TypeError(f"{fn.name} is a {fn.kind}; it cannot be run as a {kind}")
        return fn
    if not callable(fn):
        raise TypeError(f"expected a @{kind} function or a callable fn(ctx), got "
                        f"{type_name(fn)}")
    key = (fn, kind)
    found = _ADHOC.get(key)
    if found is None:
        found = _KINDS[kind](fn)
        found.__dict__["adhoc"] = True
        if len(_ADHOC) > 4096:
            _ADHOC.clear()
        _ADHOC[key] = found
    return found


def is_adhoc(fn: Function[Any]) -> bool:
    """Whether `fn` wraps a plain callable (not decorated: it cannot be scheduled)."""
    return bool(fn.__dict__.get("adhoc"))


def check_args(fn: Function[Any], args: Any) -> dict[str, Any]:
    """Validate call arguments, returning the dict the handler gets as keyword arguments.

    Arguments are values (storable kinds, nesting depth), but the size and length limits
    bind only what is stored, so they are not checked here."""
    if args.__class__ is not dict:
        if args is None:
            args = {}
        elif not isinstance(args, Mapping):
            raise ValidationError(f"{fn.name}: args must be a dict, got {type_name(args)}")
        else:
            args = dict(args)
    try:
        if fn.check_args is None:
            return check_value(args, 1)  # type: ignore[no-any-return]
        return fn.check_args(args, 1)  # type: ignore[no-any-return]
    except Mismatch as e:
        raise ValidationError(f"{fn.name}: {e.render('args')}") from None


Trusted = dict[int, tuple[dict[str, Any], bytes]]


def check_result(fn: Function[Any], result: Any, trusted: Trusted | None = None) -> Any:
    """Validate a return value against `returns=`, or else as a value of the storable kinds.

    No size or length limit applies (a query may return 100k documents). A document the
    function read and returns as it was (`trusted`: `id(doc) -> (doc, blob)`) is not
    walked: see `_unchanged`. A lone document and a list of documents, the common
    results, are recognised here without further calls.
    """
    if trusted and fn.check_returns is None:
        entry = trusted.get(id(result))
        if entry is not None and entry[0] is result:
            try:
                if (reencode(result) == entry[1]
                        and _LEAF_TYPES.issuperset(map(type, result.values()))):
                    return result
            except Exception:  # noqa: BLE001, S110 - not encodable as it was: walk it
                pass
    value = result.page if result.__class__ is PaginationResult else result
    try:
        if fn.check_returns is not None:
            # a validator's check passes only storable values: nothing more to check
            checked = fn.check_returns(value, 1)
            if result is value:
                result = checked
        elif trusted:
            _check_read(value, trusted)
        else:
            check_value(value, 1)
    except Mismatch as e:
        raise ValidationError(f"{fn.name}: {e.render('return value')}") from None
    return result


def _check_read(value: Any, trusted: Trusted) -> None:
    """Check `value` is of the storable kinds, judging documents it read by `_unchanged`
    instead of walking them."""
    entry = trusted.get(id(value))
    if entry is not None and entry[0] is value:
        if not _unchanged([value], [entry[1]]):
            check_value(value, 1)
        return
    if value.__class__ is list:
        entries = list(map(trusted.get, map(id, value)))
        if (None not in entries and all(map(is_, map(_first, entries), value))
                and _unchanged(value, list(map(_second, entries)))):
            return
        get = trusted.get
        read: list[dict[str, Any]] = []
        blobs: list[bytes] = []
        rest: list[int] = []
        for i, item in enumerate(value):
            entry = get(id(item))
            if entry is not None and entry[0] is item:
                read.append(item)
                blobs.append(entry[1])
            else:
                rest.append(i)
        if blobs and not _unchanged(read, blobs):
            rest = list(range(len(value)))
        for i in rest:
            try:
                check_value(value[i], 2)
            except Mismatch as e:
                e.path.append(i)
                raise
        return
    check_value(value, 1)


_LEAF_TYPES = frozenset({str, int, float, bool, bytes, type(None), Id})
_values = dict.values
_first: Callable[[Any], Any] = itemgetter(0)  # of trusted entries, None ruled out first
_second: Callable[[Any], Any] = itemgetter(1)


def _unchanged(docs: list[dict[str, Any]], blobs: list[bytes]) -> bool:
    """Whether documents read from storage are storable as they are, without walking them:
    each encodes to exactly the blob it was decoded from, and every value of each is of
    exactly a leaf type.

    Equal bytes mean the same keys in the same order and values of the same encoding;
    what encodes like a stored leaf but is another type (an `int` or `str` subclass, a
    `Decimal` or `datetime` encoding like a stored string, `bytearray` like bytes) fails
    the type test, and a tuple or set cannot encode like a leaf. A document holding a
    list or an object is not judged here (it is walked). Two C-level passes over all the
    documents at once (one encoding of the whole list)."""
    try:
        if reencode(docs) != encoded_list(blobs):
            return False
    except Exception:  # noqa: BLE001 - not encodable as it is: walk it
        return False
    return _LEAF_TYPES.issuperset(map(type, chain.from_iterable(map(_values, docs))))


# -- running functions -----------------------------------------------------------------------


class Runner:
    """Runs registered functions against a kernel: the call path of every `db.query`,
    `db.mutation` and `db.action` (args checked, a context built, the handler run, its
    result checked), and of livedb's own calls (scheduled functions, clients, serve).

    It does not check whether the database is still open: the facade refuses new calls
    once closing begins, while calls already under way (queued client mutations,
    running scheduled calls) finish through this runner until the kernel is closed.
    """

    __slots__ = ("kernel", "services", "_store", "_catalog")

    def __init__(self, kernel: Kernel, services: Services) -> None:
        self.kernel = kernel
        self.services = services
        self._store = kernel.store
        self._catalog = kernel.catalog

    def query(self, fn: Any, args: Mapping[str, Any] | None,
              identity: UserIdentity | None) -> Any:
        """Run a query at the newest snapshot; its checked result."""
        spec = fn if fn.__class__ is QueryFunction else resolve(fn, QUERY)
        kwargs = check_args(spec, args)
        auth = NO_AUTH if identity is None else auth_for(identity)
        kernel = self.kernel
        if kernel.state is State.CLOSED:
            raise LiveDBError("the database is closed")
        store = self._store
        ctx = QueryCtx(store, self._catalog, store.snapshot(), False, kernel.search_indexes,
                       auth, self.services)
        try:
            result = spec.handler(ctx, **kwargs)
        finally:
            store.release(ctx.ts)
        return check_result(spec, result, ctx.trusted)

    def mutation(self, fn: Any, args: Mapping[str, Any] | None,
                 identity: UserIdentity | None,
                 before_commit: Callable[[MutationCtx], Any] | None = None,
                 on_commit: Callable[[int], Any] | None = None) -> tuple[Any, int]:
        """Run a mutation as one transaction; `(its checked result, commit ts)` (ts 0 if it
        wrote nothing) once the commit is durable and visible.

        `before_commit(ctx)` runs after the handler, in its transaction: livedb's own
        writes that must commit with it (a scheduled call's state, a served request's
        outcome). `on_commit(ts)` is told the commit's timestamp before anyone sees it.
        """
        spec = fn if fn.__class__ is MutationFunction else resolve(fn, MUTATION)
        kwargs = check_args(spec, args)
        auth = NO_AUTH if identity is None else auth_for(identity)
        kernel = self.kernel
        services = self.services
        if kernel.writing:
            raise LiveDBError(f"{spec.name}: db.mutation cannot be called from inside a "
                              "mutation (use ctx.db directly, or run both from an action)")

        def body(ctx: MutationCtx) -> Any:
            result = check_result(spec, spec.handler(ctx, **kwargs), ctx.trusted)
            if before_commit is not None:
                before_commit(ctx)
            return result

        return kernel.write(body, MutationCtx, on_commit, False, (auth, services))

    def action(self, fn: Any, args: Mapping[str, Any] | None,
               identity: UserIdentity | None) -> Any:
        """Run an action (not a transaction; `async def` handlers too); its checked result."""
        spec = fn if fn.__class__ is ActionFunction else resolve(fn, ACTION)
        kwargs = check_args(spec, args)
        ctx = ActionCtx(self.services, identity)
        if self.kernel.state is State.CLOSED:
            raise LiveDBError("the database is closed")
        if spec.is_async:
            result = _run_coroutine(spec.handler(ctx, **kwargs))
        else:
            result = spec.handler(ctx, **kwargs)
            if asyncio.iscoroutine(result):
                result = _run_coroutine(result)
        return check_result(spec, result)


def _run_coroutine(coro: Any) -> Any:
    """Run an async action's coroutine to its end: here if no event loop runs in this
    thread, else in a thread of its own (the caller's loop cannot be re-entered)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["result"] = asyncio.run(coro)
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
            box["error"] = e

    worker = threading.Thread(target=run, name="livedb-action")
    worker.start()
    worker.join()
    if "error" in box:
        raise box["error"]
    return box["result"]
