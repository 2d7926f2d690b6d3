"""A small but real OpenAI-compatible HTTP server (aiohttp) for the generation tests.

It speaks the parts of the protocol the ``vllm`` backend uses (``/v1/models``, ``/v1/chat/completions``,
``/v1/completions``), answers deterministically from the request's seed, and can be told to misbehave
the ways a sidecar does: reject optional fields with 400, fail with 5xx, or answer slowly.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

POOL = [
    "Last chance: our running shoes are 20% off until midnight",
    "Join 50,000 runners who already switched to these shoes",
    "What makes these the lightest trainers we have ever built?",
    "Only a few pairs left in your size - order today",
    "Rated 4.9 stars by marathon runners across the country",
    "Your next personal best starts with a better pair of shoes",
    "Ever wondered why pros never tie their laces twice?",
    "Free delivery ends Sunday: lace up your new trainers now",
    "Coaches recommend them for every kind of weekend jogger",
    "Feel the spring in every stride with our newest cushioning",
    "Three colours, one weekend sale, zero excuses left",
    "The trainers that sold out twice this year are back",
]

AnswerFn = Callable[[dict[str, Any], int, int], str]


def pool_answer(body: dict[str, Any], choice: int, k: int) -> str:
    """JSON with k distinct lines of POOL, chosen by the seed and the choice index."""
    seed = int(body.get("seed", 0))
    start = (seed + choice * k) % len(POOL)
    return json.dumps({"variants": [POOL[(start + i) % len(POOL)] for i in range(k)]})


def requested_k(body: dict[str, Any]) -> int:
    text = json.dumps(body.get("messages") or body.get("prompt"))
    match = re.search(r"Write (\d+) new version", text)
    return int(match.group(1)) if match else 1


@dataclass
class OpenAIServer:
    """Configure, then ``async with server: server.url``."""

    model: str = "tiny-test-model"
    reject: frozenset[str] = frozenset()  # optional fields answered with 400: n, seed, response_format, ...
    fail_first: int = 0  # the first N completion requests fail with ``fail_status``
    fail_status: int = 503
    always_fail: bool = False
    delay_s: float = 0.0
    answer: AnswerFn = pool_answer
    requests: list[dict[str, Any]] = field(default_factory=list)
    completion_calls: int = 0
    _server: TestServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return str(self._server.make_url("")).rstrip("/")

    async def __aenter__(self) -> OpenAIServer:
        app = web.Application()
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/completions", self._completions)
        self._server = TestServer(app, host="127.0.0.1")
        await self._server.start_server()
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        await self._server.close()

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": self.model, "object": "model"}]})

    async def _reply(self, request: web.Request, chat: bool) -> web.Response:
        body = await request.json()
        self.requests.append(body)
        self.completion_calls += 1
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.always_fail or self.completion_calls <= self.fail_first:
            return web.json_response({"error": {"message": "engine overloaded"}}, status=self.fail_status)
        for name in sorted(self.reject):
            if name in body and not (name == "n" and body[name] == 1):
                return web.json_response(
                    {"error": {"message": f"unsupported parameter: {name}", "type": "BadRequestError"}},
                    status=400,
                )
        if body.get("model") != self.model:
            return web.json_response(
                {"error": {"message": f"model {body.get('model')} not found"}}, status=404
            )
        k = requested_k(body)
        choices = []
        for i in range(int(body.get("n", 1))):
            text = self.answer(body, i, k)
            if chat:
                choices.append(
                    {"index": i, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
                )
            else:
                choices.append({"index": i, "text": text, "finish_reason": "stop"})
        return web.json_response(
            {"id": "cmpl-test", "object": "chat.completion", "model": self.model, "choices": choices}
        )

    async def _chat(self, request: web.Request) -> web.Response:
        return await self._reply(request, chat=True)

    async def _completions(self, request: web.Request) -> web.Response:
        return await self._reply(request, chat=False)
