"""One pipelined Redis connection for the decide path's reads: an asyncio protocol over hiredis.

Why not ``redis.asyncio`` here: its command path (connection pool, retry and observability wrappers,
asyncio streams, a timeout of its own inside the caller's) costs ~36 µs of CPU per ``MGET`` of one
key on the development machine, against ~5 µs for the same command written to a transport and
parsed by hiredis (``bench/bench_memory_reads.py``, PERFORMANCE.md); at 2,000 decisions a second a
decide round holds one or two decisions, so the decide path sends about one read per decision.
Everything else (writes, scripts, admin) stays on ``redis.asyncio``; this class does one thing, and
hiredis does the RESP work (``pack_command``, ``Reader``).

Replies come back in the order commands were written (RESP2, no pub/sub), so each call's future
waits in a FIFO. A caller that gives up (its deadline cancels the await) leaves its slot in the FIFO;
its late reply is read and dropped, and the connection stays up — unlike a client that must drop a
connection whose reply it stopped reading. A server that stops answering without closing the
connection would let those slots pile up: past ``max_in_flight`` unanswered calls the connection is
reset (its calls fail, the next call reconnects), so the queue is bounded. A lost connection fails
every waiting call with
:class:`ConnectionError`; the next call reconnects, at most once per ``retry_after_s`` while Redis
stays unreachable, so a degraded decide path does not pay a connection attempt per request.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
import time
from typing import Any

import hiredis
from redis.connection import SSLConnection, parse_url


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.reader = hiredis.Reader()
        self.waiters: collections.deque[asyncio.Future[Any]] = collections.deque()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while (reply := self.reader.gets()) is not False:
            if not self.waiters:  # a reply nobody asked for: the stream is out of step, drop it
                self.transport.close()  # type: ignore[union-attr]
                return
            fut = self.waiters.popleft()
            if fut.done():  # its caller gave up (deadline): the reply is dropped, the order kept
                continue
            if isinstance(reply, hiredis.ReplyError):
                fut.set_exception(reply)
            else:
                fut.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        while self.waiters:
            fut = self.waiters.popleft()
            if not fut.done():
                fut.set_exception(ConnectionError(f"Redis connection lost: {exc!r}"))


class PipelinedConnection:
    """A lazily (re)connected, pipelined Redis connection: ``await conn.call("MGET", *keys)``.

    ``url`` as redis-py reads it (``redis://``, ``rediss://``, ``unix://``; user, password and db are
    honoured). The caller bounds each call's time (``asyncio.timeout``); connecting is bounded by
    ``connect_timeout_s``.
    """

    def __init__(
        self,
        url: str,
        *,
        connect_timeout_s: float = 0.5,
        retry_after_s: float = 0.1,
        max_in_flight: int = 1024,
    ) -> None:
        self.options = parse_url(url)
        self.max_in_flight = max_in_flight
        self.connect_timeout_s = connect_timeout_s
        self.retry_after_s = retry_after_s
        self._protocol: _Protocol | None = None
        self._connecting: asyncio.Task[_Protocol] | None = None
        self._failed_at = -float("inf")
        self._last_error: BaseException | None = None

    async def call(self, *args: str | bytes | int | float) -> Any:
        """Send one command and wait for its reply (a Redis error reply raises ``hiredis.ReplyError``)."""
        protocol = self._protocol
        if protocol is None or protocol.transport is None or protocol.transport.is_closing():
            protocol = await self._connect()
        if len(protocol.waiters) >= self.max_in_flight:  # the server stopped answering: reset
            protocol.transport.close()  # type: ignore[union-attr]
            raise ConnectionError(f"Redis left {len(protocol.waiters)} calls unanswered; connection reset")
        return await self._send(protocol, args)

    @staticmethod
    def _send(protocol: _Protocol, args: tuple[Any, ...]) -> asyncio.Future[Any]:
        fut = asyncio.get_running_loop().create_future()
        protocol.transport.write(hiredis.pack_command(args))  # type: ignore[union-attr]
        protocol.waiters.append(fut)
        return fut

    async def _connect(self) -> _Protocol:
        if time.monotonic() - self._failed_at < self.retry_after_s:
            raise ConnectionError(f"Redis unreachable (retrying shortly): {self._last_error!r}")
        if self._connecting is None:  # one attempt, shared by every call waiting for it
            self._connecting = asyncio.get_running_loop().create_task(self._open())
            self._connecting.add_done_callback(self._settled)
        # shielded: a caller's deadline must not cancel the attempt the others share
        return await asyncio.shield(self._connecting)

    def _settled(self, task: asyncio.Task[_Protocol]) -> None:
        self._connecting = None
        if not task.cancelled():
            task.exception()  # retrieved here: its callers may all have given up meanwhile

    async def _open(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        o = self.options
        protocol: _Protocol | None = None
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                if "path" in o:
                    _, protocol = await loop.create_unix_connection(_Protocol, o["path"])
                else:
                    _, protocol = await loop.create_connection(
                        _Protocol, o.get("host", "localhost"), int(o.get("port", 6379)), ssl=self._ssl()
                    )
                if o.get("password"):
                    auth = (o["username"], o["password"]) if o.get("username") else (o["password"],)
                    await self._send(protocol, ("AUTH", *auth))
                if int(o.get("db", 0)):
                    await self._send(protocol, ("SELECT", int(o["db"])))
        except Exception as exc:
            self._failed_at, self._last_error = time.monotonic(), exc
            if protocol is not None and protocol.transport is not None:
                protocol.transport.close()
            raise ConnectionError(f"cannot connect to Redis: {exc!r}") from exc
        self._protocol = protocol
        return protocol

    def _ssl(self) -> ssl.SSLContext | None:
        if self.options.get("connection_class") is not SSLConnection:
            return None
        context = ssl.create_default_context(cafile=self.options.get("ssl_ca_certs"))
        if str(self.options.get("ssl_cert_reqs", "required")).lower() in ("none", "optional"):
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    async def aclose(self) -> None:
        if self._protocol is not None and self._protocol.transport is not None:
            self._protocol.transport.close()
        self._protocol = None
