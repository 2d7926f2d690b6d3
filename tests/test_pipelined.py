"""The decide path's pipelined Redis connection (engine/store/pipelined.py), against real Redis servers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import hiredis
import pytest
import redis

from engine.services.embedded import free_port
from engine.store.pipelined import PipelinedConnection
from tests.redis_process import RedisProcess


async def test_concurrent_calls_each_get_their_own_reply(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    client.mset({f"k{i}": f"value-{i}" for i in range(200)})
    conn = PipelinedConnection(redis_url)
    got = await asyncio.gather(*(conn.call("GET", f"k{i}") for i in range(200)))
    assert got == [f"value-{i}".encode() for i in range(200)]
    assert await conn.call("MGET", "k1", "missing", "k2") == [b"value-1", None, b"value-2"]
    await conn.aclose()
    client.close()


async def test_a_call_past_its_deadline_keeps_the_replies_in_order_and_the_connection_up(
    redis_url: str,
) -> None:
    client = redis.Redis.from_url(redis_url)
    client.set("k", "v")
    conn = PipelinedConnection(redis_url)
    await conn.call("PING")
    protocol = conn._protocol
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await conn.call("BLPOP", "empty-list", "0.3")  # answers nil after 0.3 s, long after the deadline
    # the next reply is the GET's, not the abandoned BLPOP's nil, on the same connection
    assert await conn.call("GET", "k") == b"v"
    assert conn._protocol is protocol and not protocol.waiters
    await conn.aclose()
    client.close()


async def test_an_error_reply_raises_and_the_connection_goes_on(redis_url: str) -> None:
    conn = PipelinedConnection(redis_url)
    await conn.call("SET", "text", "not a number")
    with pytest.raises(hiredis.ReplyError, match="not an integer"):
        await conn.call("INCR", "text")
    assert await conn.call("INCR", "n") == 1
    await conn.aclose()


async def test_a_killed_connection_fails_its_calls_and_the_next_call_reconnects(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    conn = PipelinedConnection(redis_url)
    own_id = await conn.call("CLIENT", "ID")
    waiting = asyncio.ensure_future(conn.call("BLPOP", "empty-list", "5"))
    await asyncio.sleep(0.05)
    assert client.client_kill_filter(_id=own_id) == 1
    with pytest.raises(ConnectionError, match="lost"):
        await asyncio.wait_for(waiting, 2.0)
    assert await conn.call("CLIENT", "ID") != own_id  # a new connection
    await conn.aclose()
    client.close()


async def test_an_unreachable_server_fails_fast_and_is_not_retried_on_every_call() -> None:
    conn = PipelinedConnection(f"redis://127.0.0.1:{free_port()}", retry_after_s=10.0)
    t0 = time.perf_counter()
    with pytest.raises(ConnectionError, match="cannot connect"):
        await conn.call("PING")
    with pytest.raises(ConnectionError, match="retrying shortly"):
        await conn.call("PING")  # within retry_after_s: no new attempt
    assert time.perf_counter() - t0 < 1.0
    await conn.aclose()


async def test_a_server_that_stops_answering_does_not_queue_calls_without_bound() -> None:
    async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.read(65536):  # accepts every command, answers none
            pass

    server = await asyncio.start_server(mute, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    conn = PipelinedConnection(f"redis://127.0.0.1:{port}", max_in_flight=50)
    for _ in range(50):
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.01):
                await conn.call("GET", "k")
    assert len(conn._protocol.waiters) == 50  # type: ignore[union-attr]
    with pytest.raises(ConnectionError, match="unanswered"):
        await conn.call("GET", "k")
    await asyncio.sleep(0.05)
    # the reset connection is gone with its queue
    assert conn._protocol.transport is None  # type: ignore[union-attr]
    await conn.aclose()
    server.close()
    await server.wait_closed()


@pytest.fixture()
def password_redis(tmp_path: Path) -> Iterator[str]:
    server = RedisProcess(tmp_path, "--requirepass", "s3cret")
    server.start()
    try:
        yield f"redis://:s3cret@127.0.0.1:{server.port}"
    finally:
        server.stop()


async def test_memory_reads_degrade_while_redis_is_down_and_resume_after_a_restart(tmp_path: Path) -> None:
    import numpy as np

    from engine.memory.store import UserMemoryStore

    server = RedisProcess(tmp_path)
    server.start()
    store = UserMemoryStore(f"redis://127.0.0.1:{server.port}", width=4, timeout_s=0.2)
    store.reads_connection.retry_after_s = 0.05
    try:
        record = np.ones((1, 4), np.float32)
        assert await store.put_many({"u": record}) and len((await store.read(["u"]))["u"]) == 1
        server.stop()
        t0 = time.perf_counter()
        assert await store.read(["u"]) is None and await store.read(["u"]) is None  # degraded, at once
        assert time.perf_counter() - t0 < 0.5 and store.degraded_reads == 2
        server.start()  # empty (nothing saved): reads answer again, as empty memories
        await asyncio.sleep(0.1)
        assert await store.read(["u"]) == {"u": None}
        assert await store.put_many({"u": record}) and len((await store.read(["u"]))["u"]) == 1
        assert store.degraded_reads == 2
    finally:
        await store.aclose()
        server.stop()


async def test_password_and_database_from_the_url(password_redis: str, redis_url: str) -> None:
    client = redis.Redis.from_url(f"{password_redis}/3")
    client.set("k", "in db 3")
    conn = PipelinedConnection(f"{password_redis}/3")
    assert await conn.call("GET", "k") == b"in db 3"
    await conn.aclose()
    anonymous = PipelinedConnection(password_redis.replace(":s3cret@", ""))
    with pytest.raises(hiredis.ReplyError, match="NOAUTH"):  # no password: the server refuses
        await anonymous.call("GET", "k")
    await anonymous.aclose()
    unix = PipelinedConnection(f"{redis_url}?db=2")  # the embedded server's unix socket, db 2
    redis.Redis.from_url(f"{redis_url}?db=2").set("u", "in db 2")
    assert await unix.call("GET", "u") == b"in db 2"
    await unix.aclose()
    client.close()
