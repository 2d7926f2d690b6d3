"""The ``vllm`` backend: the OpenAI-compatible HTTP API of a vLLM server (the GPU sidecar in production).

Resilience lives here because the sidecar is the one dependency of generation that can be slow or gone:
each attempt has a time limit, retryable failures (connection refused, time-out, 5xx, 429) back off
exponentially with jitter, a semaphore caps requests in flight, and a circuit breaker answers at once
while the server is down. Optional features (``n``, ``seed``, JSON-schema guided output in the three
spellings vLLM versions accept) are tried and dropped for good on the first 400 that rejects them, so
one client works with any vLLM version and with plain OpenAI-compatible servers.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from typing import Any, Literal

import aiohttp

from engine.generation.backends.base import BackendError, Sampling, TextBackend
from engine.generation.backends.breaker import CircuitBreaker
from engine.generation.templates import RenderedPrompt

GuidedStyle = Literal["response_format", "structured_outputs", "guided_json"]
GUIDED_STYLES: tuple[GuidedStyle, ...] = ("response_format", "structured_outputs", "guided_json")
_CONTEXT_ERROR_HINTS = ("context length", "maximum context", "too long", "max_tokens")


@dataclass(slots=True)
class ServerFeatures:
    """What the server accepted so far; a feature is dropped on the first 400 that names or follows it."""

    n: bool = True
    seed: bool = True
    guided: list[GuidedStyle] = field(default_factory=lambda: list(GUIDED_STYLES))

    def payload(self, schema: dict[str, Any], n: int, seed: int) -> dict[str, Any]:
        extra: dict[str, Any] = {}
        if self.n and n > 1:
            extra["n"] = n
        if self.seed:
            extra["seed"] = seed
        if schema and self.guided:
            style = self.guided[0]
            if style == "response_format":
                extra["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {"name": "variants", "schema": schema, "strict": True},
                }
            elif style == "structured_outputs":
                extra["structured_outputs"] = {"json": schema}
            else:
                extra["guided_json"] = schema
        return extra

    def drop_after_400(self, message: str, sent: dict[str, Any]) -> str | None:
        """Drop the feature the error names (else the most exotic one sent); None if none is left."""
        lowered = message.lower()
        guided_sent = bool(self.guided) and any(k in sent for k in GUIDED_STYLES)
        named = [k for k in ("response_format", "structured_outputs", "guided_json", "seed") if k in lowered]
        if guided_sent and (not named or named[0] in GUIDED_STYLES):
            return f"guided:{self.guided.pop(0)}"
        if "seed" in sent and (not named or "seed" in named):
            self.seed = False
            return "seed"
        if "n" in sent:
            self.n = False
            return "n"
        return None


class VllmBackend(TextBackend):
    """Client of ``/v1/chat/completions`` or ``/v1/completions`` of vLLM or any OpenAI-compatible server."""

    name = "vllm"

    def __init__(
        self,
        base_url: str,
        *,
        model: str | None = None,
        api: Literal["chat", "completions"] = "chat",
        api_key: str | None = None,
        timeout_s: float = 20.0,
        retries: int = 2,
        backoff_s: float = 0.25,
        max_concurrency: int = 8,
        breaker: CircuitBreaker | None = None,
        guided: bool = True,
        jitter_seed: int = 0,
    ) -> None:
        if timeout_s <= 0 or retries < 0 or backoff_s < 0 or max_concurrency < 1:
            raise ValueError("need timeout_s > 0, retries >= 0, backoff_s >= 0 and max_concurrency >= 1")
        self.base_url = base_url.rstrip("/")
        if self.base_url.endswith("/v1"):
            self.base_url = self.base_url[: -len("/v1")]
        self._model = model
        self.api = api
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.breaker = breaker or CircuitBreaker()
        self.features = ServerFeatures(guided=list(GUIDED_STYLES) if guided else [])
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.max_concurrency = max_concurrency
        self._rng = random.Random(jitter_seed)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._session: aiohttp.ClientSession | None = None
        self._semaphore = asyncio.Semaphore(max_concurrency)
        self._model_lock = asyncio.Lock()
        self.downgrades: list[str] = []

    @property
    def model(self) -> str:
        return self._model or "unknown"

    def _bind_loop(self) -> None:
        """Sessions, semaphores and locks belong to one event loop; callers that use ``asyncio.run`` per
        call (the LLM judge) get fresh ones on each new loop instead of errors from a closed one."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._loop = loop
            self._session = None
            self._semaphore = asyncio.Semaphore(self.max_concurrency)
            self._model_lock = asyncio.Lock()

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout_s), headers=self._headers
            )
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()

    # --- one HTTP exchange with time-out, retries, back-off and the breaker -------------------------
    async def _request(self, method: str, path: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        self._bind_loop()
        last: BackendError | None = None
        for attempt in range(self.retries + 1):
            if attempt and self.breaker.state == "closed":
                await asyncio.sleep(self.backoff_s * 2 ** (attempt - 1) * (0.5 + self._rng.random()))
            if not self.breaker.allow():
                detail = last.detail if last else "the sidecar kept failing"
                raise BackendError("circuit_open", f"{detail}; retry in {self.breaker.retry_in():.1f} s")
            try:
                body = await self._exchange(method, path, payload)
            except BackendError as err:
                if err.retryable:
                    self.breaker.record_failure()
                    last = err
                    continue
                # The server answered: it is up, the request was wrong (or needs a feature dropped).
                self.breaker.record_success()
                raise
            except BaseException:
                self.breaker.release()
                raise
            self.breaker.record_success()
            return body
        assert last is not None
        raise last

    async def _exchange(self, method: str, path: str, payload: dict[str, Any] | None) -> dict[str, Any]:
        url = f"{self.base_url}{path}"
        try:
            async with self._semaphore, self._client().request(method, url, json=payload) as response:
                text = await response.text()
                if response.status == 200:
                    try:
                        return await response.json(content_type=None)
                    except ValueError as err:
                        raise BackendError("bad_response", f"{path} answered non-JSON: {text[:200]}") from err
                retryable = response.status >= 500 or response.status == 429
                reason = "server_error" if retryable else "bad_request"
                detail = f"{path} answered HTTP {response.status}: {text[:300]}"
                raise BackendError(reason, detail, retryable=retryable, status=response.status)
        except TimeoutError as err:
            detail = f"{url} did not answer within {self.timeout_s} s"
            raise BackendError("timeout", detail, retryable=True) from err
        except aiohttp.ClientConnectionError as err:
            raise BackendError("unreachable", f"{url}: {err}", retryable=True) from err
        except aiohttp.ClientError as err:
            raise BackendError("bad_response", f"{url}: {err}", retryable=True) from err

    async def resolve_model(self) -> str:
        """The model to ask for: the configured one, else the first that ``/v1/models`` lists."""
        self._bind_loop()
        async with self._model_lock:
            if self._model is None:
                body = await self._request("GET", "/v1/models")
                try:
                    self._model = str(body["data"][0]["id"])
                except (KeyError, IndexError, TypeError) as err:
                    detail = f"/v1/models lists no model: {str(body)[:200]}"
                    raise BackendError("bad_response", detail) from err
        return self._model

    # --- completions ------------------------------------------------------------------------------------
    async def complete(self, prompt: RenderedPrompt, *, n: int, seed: int, sampling: Sampling) -> list[str]:
        model = await self.resolve_model()
        base: dict[str, Any]
        if self.api == "chat":
            path, base = "/v1/chat/completions", {"messages": prompt.as_openai_messages()}
        else:
            path, base = "/v1/completions", {"prompt": prompt.as_text()}
        base |= {
            "model": model,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "max_tokens": sampling.max_tokens,
        }
        while True:
            sent = base | self.features.payload(prompt.schema, n, seed)
            try:
                if "n" in sent or n == 1:
                    body = await self._request("POST", path, sent)
                    texts = self._texts(body)
                else:
                    # No `n` on this server: n single requests, seeds seed, seed+1, ... (concurrent, capped).
                    bodies = await asyncio.gather(
                        *(
                            self._request("POST", path, sent | ({"seed": seed + i} if "seed" in sent else {}))
                            for i in range(n)
                        )
                    )
                    texts = [t for b in bodies for t in self._texts(b)]
                return texts
            except BackendError as err:
                if err.status != 400 or any(h in err.detail.lower() for h in _CONTEXT_ERROR_HINTS):
                    raise
                dropped = self.features.drop_after_400(err.detail, sent)
                if dropped is None:
                    raise
                self.downgrades.append(dropped)

    def _texts(self, body: dict[str, Any]) -> list[str]:
        try:
            choices = body["choices"]
            if self.api == "chat":
                return [str(c["message"]["content"] or "") for c in choices]
            return [str(c["text"]) for c in choices]
        except (KeyError, TypeError) as err:
            raise BackendError("bad_response", f"unexpected completion body: {str(body)[:200]}") from err
