"""Small CLI commands that need no services: settings and the wire schemas."""

from __future__ import annotations

from pathlib import Path

import click

from engine.config import Settings


@click.command("config")
@click.option("--markdown", is_flag=True, help="Print the configuration table of README.md instead.")
def config_cmd(markdown: bool) -> None:
    """Print the effective settings (environment applied over defaults) as JSON.

    Each setting is read from the environment variable named in README's
    configuration table (``abengine config --markdown`` prints that table).
    """
    if markdown:
        click.echo(settings_table())
        return
    click.echo(Settings().model_dump_json(indent=2))


def settings_table() -> str:
    """README's configuration table, generated from the Settings model (the one source of truth)."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for model in _settings_models():
        for name, field in model.model_fields.items():
            alias = field.validation_alias
            prefix = str(model.model_config.get("env_prefix", ""))  # type: ignore[attr-defined]
            env = alias.choices[0] if hasattr(alias, "choices") else (prefix + name).upper()
            default = field.default if field.default is not None else "(unset)"
            rows.append(f"| `{env}` | `{default}` | {field.description or ''} |")
    return "\n".join(rows)


def _settings_models() -> list[type]:
    """Every settings model of the engine (generation settings live beside the generator)."""
    models: list[type] = [Settings]
    try:
        from engine.generation.config import GenerationSettings

        models.append(GenerationSettings)
    except ImportError:
        pass
    return models


@click.group("schemas")
def schemas_group() -> None:
    """The wire contract: pydantic models of requests, decisions and events."""


@schemas_group.command("export")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
def schemas_export(directory: Path) -> None:
    """Write one JSON Schema file per wire model into DIRECTORY.

    Producers in other languages validate their events against these files
    before sending them to Kafka.
    """
    from schemas.export import export_json_schemas

    for path in export_json_schemas(directory):
        click.echo(str(path))
