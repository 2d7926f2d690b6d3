"""Concurrency helpers shared by ingestion and learning."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

T = TypeVar("T")


async def gather_all(aws: Iterable[Awaitable[T]]) -> list[T]:
    """Run ``aws`` concurrently and wait for every one; then raise the first failure, as raised.

    Unlike ``asyncio.gather``, nothing is left running behind a failure (a retried batch never races
    its own first attempt), and unlike a ``TaskGroup`` the error is not wrapped in an
    ``ExceptionGroup``, so callers keep catching ``RedisError`` and ``OSError`` as themselves.

    >>> async def ok(x: int) -> int:
    ...     return x
    >>> asyncio.run(gather_all([ok(1), ok(2)]))
    [1, 2]
    """
    results = await asyncio.gather(*aws, return_exceptions=True)
    for r in results:
        if isinstance(r, BaseException):
            raise r
    return results  # type: ignore[return-value]


async def in_turn(calls: Iterable[Callable[[], Awaitable[T]]], ahead: int = 1) -> list[T]:
    """Start ``calls`` in order, each once the one ``ahead + 1`` places before it has finished; their
    results in order. For Redis scripts: the next call is already sent while one runs, so no round trip
    sits idle between them, yet no more than ``ahead`` wait in Redis ahead of another client's command
    (all at once, a decide path's read could wait behind every one). Like :func:`gather_all`, nothing
    is left running behind a failure, which is raised as raised.

    >>> async def ok(x: int) -> int:
    ...     return x
    >>> asyncio.run(in_turn([lambda i=i: ok(i) for i in range(4)]))
    [0, 1, 2, 3]
    """
    tasks: list[asyncio.Future[T]] = []
    try:
        for call in calls:
            if len(tasks) > ahead:
                await tasks[len(tasks) - ahead - 1]
            tasks.append(asyncio.ensure_future(call()))
        return await gather_all(tasks)
    except BaseException:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
