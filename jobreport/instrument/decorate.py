"""``@job_metrics(...)`` on any kind of function: each call one run, over what the call
really does.

- a plain function: the call;
- a coroutine function (``async def``, or a function ``inspect.markcoroutinefunction``
  marked): the awaited body, as ``async with``;
- a generator or an async generator function: the iteration, from the first ``next()``
  to the end: exhausted (success; a generator's return value passed on), raising (the
  exception goes on unchanged), or closed early (``break``, ``close()``, or dropped and
  collected: the consumer had enough, a success; so is an async generator whose closing
  asyncio cancels as the loop ends, while it waited for its consumer). A generator never
  iterated is no run: its body never ran.

The wrapper is of the same kind as the function (``inspect.iscoroutinefunction`` and
friends stay true) and keeps its signature (``functools.wraps``, ``ParamSpec``).
``current_job()`` is the run's inside a generator's steps only, never in its consumer's
code between them.
"""

from __future__ import annotations

import atexit
import functools
import threading
import weakref
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator
from contextvars import Token
from types import TracebackType
from typing import Any, Literal, ParamSpec, Protocol, TypeVar, cast

from jobreport.logger import log, notice_once
from jobreport.outcomes import cancelled

__all__ = ["Scope", "decorate"]

P = ParamSpec("P")
R = TypeVar("R")


class Scope(Protocol):
    """What a decorated call needs of its run (``JobMetrics``)."""

    def __enter__(self) -> Any: ...
    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> Literal[False]: ...
    async def __aenter__(self) -> Any: ...
    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None,
                        tb: TracebackType | None) -> Literal[False]: ...
    def _begin(self) -> None: ...
    def _activate(self) -> Token[Any]: ...
    def _deactivate(self, token: Token[Any]) -> None: ...
    def _end(self, exc: BaseException | None) -> None: ...
    async def _end_async(self, exc: BaseException | None) -> None: ...


class _Current:
    """A step of a generator's body, with its run as ``current_job()`` (and only then)."""

    __slots__ = ("scope", "token")

    def __init__(self, scope: Scope) -> None:
        self.scope = scope

    def __enter__(self) -> None:
        self.token = self.scope._activate()

    def __exit__(self, *exc: object) -> None:
        self.scope._deactivate(self.token)


#: The runs of generators begun and not ended: a generator left suspended when the program
#: ends is closed by the interpreter only as it tears itself down (if ever), too late to
#: record anything, so its run is ended at exit, as closed early.
_suspended: weakref.WeakSet[Any] = weakref.WeakSet()
_hooked: list[bool] = []
_lock = threading.Lock()


def _track(scope: Scope) -> None:
    with _lock:
        _suspended.add(scope)
        if not _hooked:
            atexit.register(_end_suspended)
            _hooked.append(True)


def _end_suspended() -> None:
    with _lock:
        scopes = list(_suspended)
        _suspended.clear()
    for scope in scopes:
        scope._end(None)  # a second end, when the generator is closed later, is no-op


def decorate(func: Callable[P, R], fresh: Callable[[], Scope]) -> Callable[P, R]:
    """``func`` reporting each call as one run of a ``fresh()`` scope."""
    # inspect (with ast, dis, tokenize: 4-5 ms) only here: `with job_metrics(...)` never
    # needs it
    import inspect

    if inspect.isasyncgenfunction(func):
        return cast(Callable[P, R], _async_generator(func, fresh))
    if inspect.isgeneratorfunction(func):
        return cast(Callable[P, R], _generator(func, fresh))
    if inspect.iscoroutinefunction(func):
        return cast(Callable[P, R], _coroutine(func, fresh))
    return _function(func, fresh)


def _function(func: Callable[P, R], fresh: Callable[[], Scope]) -> Callable[P, R]:
    @functools.wraps(func)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        with fresh():
            result = func(*args, **kwargs)
        import inspect  # (loaded by decorate already)

        if inspect.isawaitable(result) and notice_once(f"awaitable {id(func)}"):
            log.warning("jobreport: %s returned an awaitable, but is not a coroutine "
                        "function: its runs end when the awaitable is made, not when it is "
                        "awaited; decorate the async def itself",
                        getattr(func, "__qualname__", func))
        return result

    return run


def _coroutine(func: Callable[..., Awaitable[Any]],
               fresh: Callable[[], Scope]) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(func)
    async def run(*args: Any, **kwargs: Any) -> Any:
        async with fresh():
            return await func(*args, **kwargs)

    return run


def _generator(func: Callable[..., Generator[Any, Any, Any]],
               fresh: Callable[[], Scope]) -> Callable[..., Generator[Any, Any, Any]]:
    @functools.wraps(func)
    def run(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
        scope = fresh()
        scope._begin()  # at the first next(): a generator never iterated is no run
        _track(scope)
        try:
            with _Current(scope):
                inner = func(*args, **kwargs)
            sent: Any = None
            thrown: BaseException | None = None
            while True:
                with _Current(scope):  # the run's during each step, not between
                    item = inner.send(sent) if thrown is None else inner.throw(thrown)
                try:
                    sent, thrown = (yield item), None
                except GeneratorExit:
                    with _Current(scope):
                        inner.close()  # what it raises on closing fails the run
                    raise
                except BaseException as e:  # thrown in by the consumer: the body's to handle
                    sent, thrown = None, e
        except StopIteration as stop:  # exhausted
            scope._end(None)
            return stop.value
        except GeneratorExit:  # closed early: the consumer had enough
            scope._end(None)
            raise
        except BaseException as e:
            scope._end(e)
            raise

    return run


def _async_generator(func: Callable[..., AsyncGenerator[Any, Any]],
                     fresh: Callable[[], Scope]) -> Callable[..., AsyncGenerator[Any, Any]]:
    @functools.wraps(func)
    async def run(*args: Any, **kwargs: Any) -> AsyncGenerator[Any, Any]:
        scope = fresh()
        scope._begin()  # at the first step: an async generator never iterated is no run
        _track(scope)
        sent: Any = None
        thrown: BaseException | None = None
        try:
            with _Current(scope):
                inner = func(*args, **kwargs)
            while True:
                with _Current(scope):
                    item = await (inner.asend(sent) if thrown is None
                                  else inner.athrow(thrown))
                try:
                    sent, thrown = (yield item), None
                except GeneratorExit:
                    with _Current(scope):
                        await inner.aclose()
                    raise
                except BaseException as e:
                    sent, thrown = None, e
        except StopAsyncIteration:  # exhausted
            await scope._end_async(None)
        except GeneratorExit:
            # closed early (aclose(), or collected): nothing may be awaited now, so the end
            # is handed to a thread, which the program waits for at its exit
            scope._end(None)
            raise
        except BaseException as e:
            if e is thrown and cancelled(e):
                # cancelled while it waited for its consumer, not in a step of its own: left
                # unfinished (asyncio.run cancels the closing of an async generator dropped
                # as the program ends), which is closing early
                scope._end(None)
            else:
                await scope._end_async(e)
            raise

    return run
