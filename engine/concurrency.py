"""Concurrency helpers shared by ingestion and learning."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable
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
