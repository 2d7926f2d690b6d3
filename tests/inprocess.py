"""An engine Runtime and its HTTP API in a background thread (no faust): fast API tests
against a real broker and real Redis."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from aiohttp import web

from engine.api import create_http_app
from engine.config import Settings
from engine.runtime import Runtime
from engine.services.embedded import free_port


@contextmanager
def serve_api(settings: Settings, bootstrap: str, redis_url: str) -> Iterator[tuple[str, Runtime]]:
    """Yield (base URL, runtime) of an API served from a thread with its own event loop."""
    port = free_port()
    settings = settings.model_copy(update={"http_port": port})
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    box: dict[str, object] = {}

    async def main() -> None:
        runtime = Runtime(settings, bootstrap_servers=bootstrap, redis_url=redis_url, embedded_kafka=True)
        await runtime.start()
        runner = web.AppRunner(create_http_app(runtime), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        box["runtime"], box["runner"], box["stop"] = runtime, runner, asyncio.Event()
        ready.set()
        await box["stop"].wait()  # type: ignore[attr-defined]
        await runner.cleanup()
        await runtime.stop()

    thread = threading.Thread(target=lambda: loop.run_until_complete(main()), daemon=True)
    thread.start()
    if not ready.wait(60):
        raise TimeoutError("in-process API did not start")
    try:
        yield f"http://127.0.0.1:{port}", box["runtime"]  # type: ignore[misc]
    finally:
        loop.call_soon_threadsafe(box["stop"].set)  # type: ignore[attr-defined]
        thread.join(30)
