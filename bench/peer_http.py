"""Reference endpoints measured in the same run as the engine: aiohttp + pydantic + uvloop
answering a decide-shaped request, optionally with one Redis GET (the floor the engine is
compared with). Run: python bench/peer_http.py PORT [REDIS_URL]."""

from __future__ import annotations

import sys

import redis.asyncio as aioredis
import uvloop
from aiohttp import web

from schemas import DecisionRequest


def main() -> None:
    port = int(sys.argv[1])
    redis_url = sys.argv[2] if len(sys.argv) > 2 else None
    client = aioredis.Redis.from_url(redis_url) if redis_url else None

    async def decide(request: web.Request) -> web.Response:
        req = DecisionRequest.model_validate_json(await request.read())
        if client is not None:
            await client.get(f"mem:{req.user_id}")
        return web.json_response({"variant_id": "a", "user_id": req.user_id})

    app = web.Application()
    app.router.add_post("/decide", decide)
    uvloop.install()
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


if __name__ == "__main__":
    main()
