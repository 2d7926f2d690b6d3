"""gather_all: every awaitable finishes before the first failure is raised, unwrapped."""

from __future__ import annotations

import asyncio
import doctest

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

import engine.concurrency
from engine.concurrency import gather_all


def test_doctests() -> None:
    assert doctest.testmod(engine.concurrency).failed == 0


def test_a_failure_waits_for_the_others_and_is_raised_as_itself() -> None:
    finished: list[str] = []

    async def slow() -> str:
        await asyncio.sleep(0.05)
        finished.append("slow")
        return "slow"

    async def broken() -> str:
        raise RedisConnectionError("down")

    with pytest.raises(RedisConnectionError, match="down"):  # not an ExceptionGroup: callers catch it
        asyncio.run(gather_all([broken(), slow()]))
    assert finished == ["slow"]  # nothing left running behind the failure


def test_results_keep_their_order() -> None:
    async def after(x: int) -> int:
        await asyncio.sleep(0.01 * (3 - x))
        return x

    assert asyncio.run(gather_all(after(i) for i in range(3))) == [0, 1, 2]
