"""`@query`, `@mutation` and `@action`: registered functions, their checks and contexts."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from operator import is_
from typing import TYPE_CHECKING, Any, TypeVar, overload

from ._errors import LiveDBError, ValidationError
from ._ids import Id
from ._query import PaginationResult
from ._validators import Mismatch, Object, Validator, as_validator, check_value
from ._values import type_name

if TYPE_CHECKING:
    from .auth import UserIdentity

F = TypeVar("F", bound=Callable[..., Any])

QUERY, MUTATION, ACTION = "query", "mutation", "action"


class Function:
    """A handler registered as a query, mutation or action, with compiled checks.

    Calling it directly calls the handler: `fn(ctx, **args)`.
    """

    __slots__ = ("kind", "handler", "name", "args", "returns", "check_args",
                 "check_returns", "is_async", "__wrapped__", "__dict__")

    def __init__(self, kind: str, handler: Callable[..., Any], args: Any = None,
                 returns: Any = None) -> None:
        if not callable(handler):
            raise TypeError(f"@{kind} decorates a function, got {type_name(handler)}")
        self.kind = kind
        self.handler = handler
        self.name = function_name(handler)
        self.args = None if args is None else as_validator(args, f"@{kind}(args=...)")
        self.returns = None if returns is None else as_validator(returns, f"@{kind}(returns=...)")
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

    def __call__(self, ctx: Any, **args: Any) -> Any:
        return self.handler(ctx, **args)

    def __repr__(self) -> str:
        return f"<livedb {self.kind} {self.name}>"


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


def _decorator(kind: str, fn: Any, args: Any, returns: Any) -> Any:
    if fn is not None:
        return Function(kind, fn, args, returns)
    return lambda handler: Function(kind, handler, args, returns)


@overload
def query(fn: F) -> Function: ...
@overload
def query(fn: None = None, *, args: Any = None, returns: Any = None) -> Callable[[F], Function]:
    ...
def query(fn: Any = None, *, args: Any = None, returns: Any = None) -> Any:  # noqa: E302
    """Register a read-only function; `args`/`returns` are validators or dicts of them."""
    return _decorator(QUERY, fn, args, returns)


@overload
def mutation(fn: F) -> Function: ...
@overload
def mutation(fn: None = None, *, args: Any = None, returns: Any = None
             ) -> Callable[[F], Function]: ...
def mutation(fn: Any = None, *, args: Any = None, returns: Any = None) -> Any:  # noqa: E302
    """Register a function that writes, run as one serializable, all-or-nothing transaction."""
    return _decorator(MUTATION, fn, args, returns)


@overload
def action(fn: F) -> Function: ...
@overload
def action(fn: None = None, *, args: Any = None, returns: Any = None
           ) -> Callable[[F], Function]: ...
def action(fn: Any = None, *, args: Any = None, returns: Any = None) -> Any:  # noqa: E302
    """Register a function that may do I/O and call queries and mutations (not transactional)."""
    return _decorator(ACTION, fn, args, returns)


_ADHOC: dict[Any, Function] = {}


def resolve(fn: Any, kind: str) -> Function:
    """The registered Function for `fn`, wrapping a plain callable as an ad-hoc one."""
    if fn.__class__ is Function:
        if fn.kind != kind:
            raise TypeError(f"{fn.name} is a {fn.kind}; it cannot be run as a {kind}")
        return fn
    if not callable(fn):
        raise TypeError(f"expected a @{kind} function or a callable fn(ctx), got "
                        f"{type_name(fn)}")
    key = (fn, kind)
    found = _ADHOC.get(key)
    if found is None:
        found = Function(kind, fn)
        found.__dict__["adhoc"] = True
        if len(_ADHOC) > 4096:
            _ADHOC.clear()
        _ADHOC[key] = found
    return found


def check_args(fn: Function, args: Any) -> dict:
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
        return check_value(args, 1) if fn.check_args is None else fn.check_args(args, 1)
    except Mismatch as e:
        raise ValidationError(f"{fn.name}: {e.render('args')}") from None


def check_result(fn: Function, result: Any, trusted: dict[int, tuple] | None = None) -> Any:
    """Validate a return value against `returns=`, or else as a value of the storable kinds.

    No size or length limit applies (a query may return 100k documents). Documents the
    function read and left unchanged (`trusted`) are not walked again: they were checked
    when written. Any change to one, at any depth, makes it checked in full.
    """
    value = result.page if result.__class__ is PaginationResult else result
    try:
        if fn.check_returns is not None:
            checked = fn.check_returns(value, 1)
            if result is value:
                result = value = checked
        _check_storable(value, trusted or {})
    except Mismatch as e:
        raise ValidationError(f"{fn.name}: {e.render('return value')}") from None
    return result


def _check_storable(value: Any, trusted: dict[int, tuple]) -> None:
    """Check `value` is of the storable kinds, skipping unchanged documents it read."""
    if trusted:
        entry = trusted.get(id(value))
        if entry is not None and entry[0] is value:
            if not _unchanged(value, entry):
                check_value(value, 1)
            return
        if value.__class__ is list:
            get = trusted.get
            for i, item in enumerate(value):
                entry = get(id(item))
                if entry is not None and entry[0] is item and _unchanged(item, entry):
                    continue
                try:
                    check_value(item, 2)
                except Mismatch as e:
                    e.path.append(i)
                    raise
            return
    check_value(value, 1)


_flat = frozenset({str, int, float, bool, bytes, type(None), Id}).issuperset
"""Whether an unchanged document's values are all leaves (an int read is in range)."""


def _unchanged(doc: dict, entry: tuple) -> bool:
    """Whether a read document still holds exactly the leaves it was read with."""
    values = entry[2]
    return (len(doc) == len(values) and tuple(doc) == entry[1]
            and all(map(is_, doc.values(), values)) and _flat(map(type, values)))


def accepts_ctx_only(fn: Function) -> bool:
    return bool(fn.__dict__.get("adhoc"))


class Auth:
    """`ctx.auth`: who is calling."""

    __slots__ = ("_identity",)

    def __init__(self, identity: UserIdentity | None) -> None:
        self._identity = identity

    def get_user_identity(self) -> UserIdentity | None:
        """The caller's identity, or None for an anonymous call."""
        return self._identity


NO_AUTH = Auth(None)


class QueryCtx:
    """The context of a query: `db` (read-only), `auth`, `storage`."""

    __slots__ = ("db", "auth", "_storage")

    def __init__(self, db: Any, auth: Auth, storage: Any = None) -> None:
        self.db = db
        self.auth = auth
        self._storage = storage

    @property
    def storage(self) -> Any:
        """File storage as a query sees it: `get_url`, `get_metadata` (built on first use)."""
        if self._storage is None:
            from ._storage import QueryStorage

            self._storage = QueryStorage(self.db)
        return self._storage


class MutationCtx:
    """The context of a mutation: `db` (reads and writes), `auth`, `storage`, `scheduler`."""

    __slots__ = ("db", "auth", "_storage", "_scheduler")

    def __init__(self, db: Any, auth: Auth, storage: Any = None, scheduler: Any = None) -> None:
        self.db = db
        self.auth = auth
        self._storage = storage
        self._scheduler = scheduler

    @property
    def storage(self) -> Any:
        """File storage in this transaction: `get_url`, `get_metadata`, `delete`."""
        if self._storage is None:
            from ._storage import MutationStorage

            self._storage = MutationStorage(self.db)
        return self._storage

    @property
    def scheduler(self) -> Any:
        """`run_after`, `run_at`, `cancel`: they commit with this mutation or not at all."""
        if self._scheduler is None:
            from ._scheduler import MutationScheduler

            self._scheduler = MutationScheduler(self.db)
        return self._scheduler


class ActionCtx:
    """The context of an action: `run_query`, `run_mutation`, `run_action`, `auth`, ...."""

    __slots__ = ("_db", "_identity", "auth", "_storage", "_scheduler")

    def __init__(self, db: Any, identity: UserIdentity | None, storage: Any = None,
                 scheduler: Any = None) -> None:
        self._db = db
        self._identity = identity
        self.auth = Auth(identity)
        self._storage = storage
        self._scheduler = scheduler

    @property
    def storage(self) -> Any:
        """File storage: `store`, `get`, `get_url`, `get_metadata`, `delete`."""
        if self._storage is None:
            from ._storage import ActionStorage

            self._storage = ActionStorage(self._db)
        return self._storage

    @property
    def scheduler(self) -> Any:
        """`run_after`, `run_at`, `cancel`, each committed at once (actions are not atomic)."""
        if self._scheduler is None:
            from ._scheduler import ActionScheduler

            self._scheduler = ActionScheduler(self._db)
        return self._scheduler

    @property
    def db(self) -> Any:
        """Actions have no `ctx.db` (they are not transactions): raises `LiveDBError`."""
        raise LiveDBError("actions have no ctx.db: an action is not a transaction; read with "
                          "ctx.run_query(...) and write with ctx.run_mutation(...)")

    def run_query(self, fn: Any, args: Mapping[str, Any] | None = None) -> Any:
        """Run a query with the action's identity and return its result."""
        return self._db._query(fn, args, self._identity)

    def run_mutation(self, fn: Any, args: Mapping[str, Any] | None = None) -> Any:
        """Run a mutation (its own transaction) with the action's identity."""
        return self._db._mutation(fn, args, self._identity, None)

    def run_action(self, fn: Any, args: Mapping[str, Any] | None = None) -> Any:
        """Run another action with the action's identity."""
        return self._db._action(fn, args, self._identity)

    def vector_search(self, table: str, index: str, vector: Any, limit: int = 10,
                      filter: Any = None) -> list[dict]:
        return self._db._vector_search(table, index, vector, limit, filter)


__all__ = ["Function", "query", "mutation", "action", "Validator"]
