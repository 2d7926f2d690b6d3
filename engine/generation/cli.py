"""``abengine generate``: write variants of a base copy from the command line.

Example::

    abengine generate --base "Try our new running shoes" --attributes urgency,social_proof -n 4
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time

import click
from pydantic import ValidationError
from tqdm import tqdm

from engine.generation.config import GenerationSettings
from engine.generation.models import GenerationRequest, GenerationResult
from engine.generation.service import CountingSensor, GenerationService, GenerationUnavailable
from engine.generation.templates import available_versions, load_template


def _split(value: str | None) -> list[str]:
    return [p.strip() for p in (value or "").split(",") if p.strip()]


def _validation_message(err: ValidationError) -> str:
    parts = []
    for e in err.errors():
        field = ".".join(str(x) for x in e["loc"]) or "request"
        value = f" (got {e['input']!r})" if isinstance(e.get("input"), str | int | float) else ""
        parts.append(f"{field}{value}: {e['msg']}")
    return "; ".join(parts)


@click.group(invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--base", help="The current copy to rewrite (required unless a sub-command is given).")
@click.option("--goal", help="What the copy should achieve, e.g. 'more sign-ups'.")
@click.option("--attributes", help="Comma-separated marketing attributes: urgency,social_proof,curiosity,...")
@click.option("--audience", help="Audience segment, e.g. 'first-time runners'.")
@click.option("--tone", help="Tone of voice, e.g. friendly.")
@click.option("--language", default="en", show_default=True, help="BCP-47 language tag of the output.")
@click.option("--min-chars", default=10, show_default=True, type=int, help="Shortest acceptable variant.")
@click.option("--max-chars", default=120, show_default=True, type=int, help="Longest acceptable variant.")
@click.option("-n", "n", default=4, show_default=True, type=int, help="How many candidates to return.")
@click.option("--banned", help="Comma-separated phrases no candidate may contain.")
@click.option("--seed", type=int, help="Seed for reproducible sampling (random when unset).")
@click.option("--template", help="Prompt template version (see `abengine generate templates`).")
@click.option("--backend", type=click.Choice(["local", "vllm"]), help="Override ABENGINE_GEN_BACKEND.")
@click.option("--vllm-url", help="Override ABENGINE_GEN_VLLM_BASE_URL (e.g. http://127.0.0.1:8000).")
@click.option("--vllm-model", help="Override ABENGINE_GEN_VLLM_MODEL (default: first served model).")
@click.option(
    "--dedup",
    type=click.Choice(["minilm", "lexical"]),
    help="Near-duplicate embedder (override the setting).",
)
@click.option("--timeout", type=float, help="Time limit of the whole request in seconds.")
@click.option("--json", "as_json", is_flag=True, help="Print the full result (with provenance) as JSON.")
@click.pass_context
def generate(ctx: click.Context, **opts: object) -> None:
    """Write candidate variants of a base copy with an LLM, validated and de-duplicated.

    The backend is the vLLM sidecar (`vllm`) or SmolLM2-135M in-process on the CPU (`local`), chosen by
    ABENGINE_GEN_BACKEND or --backend. Candidates that are too short or long, contain a banned phrase,
    copy the base or repeat another candidate are dropped and counted. Exit code 3 when the backend is
    unavailable (the HTTP API answers 503 in that case).
    """
    if ctx.invoked_subcommand is not None:
        return
    if not opts["base"]:
        raise click.UsageError("--base is required (the copy to rewrite)")
    try:
        request = GenerationRequest(
            base=opts["base"],
            goal=opts["goal"],
            attributes=_split(opts["attributes"]),  # type: ignore[arg-type]
            audience=opts["audience"],
            tone=opts["tone"],
            language=opts["language"],
            min_chars=opts["min_chars"],
            max_chars=opts["max_chars"],
            n=opts["n"],
            banned_phrases=_split(opts["banned"]),  # type: ignore[arg-type]
            seed=opts["seed"],
            template=opts["template"],
        )
        overrides = {
            k: v
            for k, v in {
                "backend": opts["backend"],
                "vllm_base_url": opts["vllm_url"],
                "vllm_model": opts["vllm_model"],
                "dedup_embedder": opts["dedup"],
                "request_timeout_s": opts["timeout"],
            }.items()
            if v is not None
        }
        settings = GenerationSettings(**overrides)
        if request.template:
            load_template(request.template)
    except ValidationError as err:
        raise click.UsageError(_validation_message(err)) from None
    except ValueError as err:
        raise click.UsageError(str(err)) from None
    try:
        service = GenerationService.from_settings(settings, sensor=CountingSensor())
    except (FileNotFoundError, ValueError) as err:
        raise click.UsageError(str(err)) from None
    result = asyncio.run(_run(service, request, show_progress=not opts["as_json"]))
    if opts["as_json"]:
        click.echo(result.model_dump_json(indent=2))
    else:
        _print(result)


async def _run(
    service: GenerationService, request: GenerationRequest, show_progress: bool
) -> GenerationResult:
    bar = tqdm(total=request.n, desc="candidates", unit="cand", disable=not show_progress, file=sys.stderr)

    def progress(accepted: int, calls: int) -> None:
        bar.n = accepted
        bar.set_postfix(calls=calls)
        bar.refresh()

    try:
        return await service.generate(request, progress=progress)
    except GenerationUnavailable as err:
        bar.close()
        click.echo(f"Error: {err}", err=True)
        sys.exit(3)
    finally:
        bar.close()
        await service.aclose()


def _print(result: GenerationResult) -> None:
    click.echo(
        f"{len(result.candidates)} candidate(s) from {result.backend}/{result.model} "
        f"(template {result.template_version}, {result.calls} call(s), {result.latency_s:.1f} s)"
    )
    for i, c in enumerate(result.candidates, 1):
        click.echo(f"  {i}. {c.text}    [sim to base {c.similarity_to_base:.2f}, seed {c.provenance.seed}]")
    if result.dropped:
        dropped = ", ".join(f"{k}={v}" for k, v in sorted(result.dropped.items()))
        click.echo(f"dropped {sum(result.dropped.values())} of {result.raw_count} raw: {dropped}")
    if result.incomplete:
        click.echo(f"incomplete: {result.incomplete}")


@generate.command("templates")
@click.option("--show", "version", help="Print this template rendered for an example request.")
def templates_cmd(version: str | None) -> None:
    """List the versioned prompt templates (newest last), or render one."""
    if version is None:
        for v in available_versions():
            click.echo(f"{v}\t{load_template(v).description}")
        return
    try:
        template = load_template(version)
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint="--show") from None
    example = GenerationRequest(
        base="Try our new running shoes", goal="sell more shoes", attributes=["urgency", "social_proof"]
    )
    for message in template.render(example, k=3).messages:
        click.echo(f"--- {message.role}\n{message.content}")


@generate.command("sidecar")
@click.option("--port", default=8000, show_default=True, type=int, help="Loopback port to serve on.")
def sidecar_cmd(port: int) -> None:
    """Run the prepared vLLM CPU sidecar on 127.0.0.1 until Ctrl-C (see deploy/vllm/)."""
    from engine.generation.sidecar import VllmSidecar, prepared

    missing = prepared()
    if missing:
        raise click.UsageError(missing)
    sidecar = VllmSidecar(port=port)

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # leave the `with` below, which stops vLLM's whole process group

    # A background job has SIGINT ignored, so SIGTERM must stop it too (without orphaning vLLM).
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    click.echo(f"starting vLLM on {sidecar.base_url} ...", err=True)
    try:
        with sidecar:
            started = round(sidecar.started_in_s or 0, 1)
            click.echo(json.dumps({"base_url": sidecar.base_url, "started_in_s": started}))
            while sidecar.process is not None and sidecar.process.poll() is None:
                time.sleep(1.0)
    except KeyboardInterrupt:
        click.echo("stopped vLLM", err=True)
