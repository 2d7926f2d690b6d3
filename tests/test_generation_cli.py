"""``abengine generate`` end to end against a real OpenAI-compatible server, and its input errors."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Iterator

import pytest
from click.testing import CliRunner
from generation_openai_server import POOL, OpenAIServer

from engine.cli import main


@pytest.fixture()
def server_url() -> Iterator[str]:
    """The test OpenAI server on its own loop in a thread (the CLI runs asyncio.run itself)."""
    loop = asyncio.new_event_loop()
    server = OpenAIServer()
    ready = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(server.__aenter__())
        ready.set()
        loop.run_forever()
        loop.run_until_complete(server.__aexit__())

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(10)
    yield server.url
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["generate", *args])
    return result.exit_code, result.output


def test_generate_json_through_vllm_backend(server_url: str) -> None:
    code, out = invoke(
        "--base", "Try our new running shoes", "--attributes", "urgency,social_proof", "-n", "3",
        "--seed", "4", "--backend", "vllm", "--vllm-url", server_url, "--dedup", "lexical", "--json",
    )  # fmt: skip
    assert code == 0, out
    result = json.loads(out)
    assert len(result["candidates"]) == 3 and all(c["text"] in POOL for c in result["candidates"])
    assert result["candidates"][0]["provenance"]["attributes"] == ["urgency", "social_proof"]


def test_generate_human_output(server_url: str) -> None:
    code, out = invoke("--base", "Try our new running shoes", "-n", "2", "--backend", "vllm",
                       "--vllm-url", server_url, "--dedup", "lexical")  # fmt: skip
    assert code == 0, out
    assert "2 candidate(s) from vllm/tiny-test-model (template variants_v1" in out


def test_unreachable_backend_exits_3_with_reason() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    code, out = invoke("--base", "Hello there", "--backend", "vllm", "--vllm-url", f"http://127.0.0.1:{port}",
                       "--dedup", "lexical")  # fmt: skip
    assert code == 3 and "generation unavailable (unreachable)" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "--base is required"),
        (("--base", "x", "--attributes", "9lives"), "attributes.0 (got '9lives')"),
        (("--base", "x", "-n", "0"), "n (got 0)"),
        (
            ("--base", "x", "--min-chars", "90", "--max-chars", "20"),
            "min_chars (90) must not exceed max_chars",
        ),
        (("--base", "x", "--template", "variants_v9"), "unknown prompt template 'variants_v9'"),
        (
            (
                "--base",
                "x" * 1001,
            ),
            "base",
        ),
    ],
)
def test_bad_input_is_a_usage_error(args: tuple[str, ...], message: str) -> None:
    code, out = invoke(*args)
    assert code == 2 and message in out and "Traceback" not in out


def test_templates_command() -> None:
    code, out = invoke("templates")
    assert code == 0 and "variants_v1\tRewrite a base copy" in out and "single_v1\t" in out
    code, out = invoke("templates", "--show", "variants_v1")
    assert code == 0 and "--- user" in out and "Write 3 new versions" in out
    code, out = invoke("templates", "--show", "nope_v1")
    assert code == 2 and "unknown prompt template" in out


def test_vllm_backend_survives_one_event_loop_per_call(server_url: str) -> None:
    """Callers such as the LLM judge run ``asyncio.run`` per completion with one backend object."""
    from engine.generation.backends.base import Sampling
    from engine.generation.backends.vllm import VllmBackend
    from engine.generation.models import GenerationRequest
    from engine.generation.templates import load_template

    backend = VllmBackend(server_url, timeout_s=5.0)
    prompt = load_template().render(GenerationRequest(base="Try our new running shoes"), 1)
    texts = [asyncio.run(backend.complete(prompt, n=1, seed=s, sampling=Sampling())) for s in (1, 2)]
    assert all(json.loads(t[0])["variants"] for t in texts) and texts[0] != texts[1]
