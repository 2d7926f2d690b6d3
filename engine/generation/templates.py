"""Versioned prompt templates: YAML files under ``prompts/``, rendered with sandboxed Jinja2.

Templates are files, not strings in code, so a prompt change is a reviewed diff with a new version name,
and every candidate can name the exact template that produced it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from importlib.resources import files
from typing import Any

import yaml
from jinja2 import StrictUndefined
from jinja2.sandbox import SandboxedEnvironment

from engine.generation.models import KNOWN_ATTRIBUTES, GenerationRequest

_VERSION_RE = re.compile(r"^(?P<family>[a-z0-9_]+?)_v(?P<number>\d+)$")
_ENV = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False)


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: str
    content: str


@dataclass(frozen=True, slots=True)
class RenderedPrompt:
    """A prompt ready for a backend: chat messages, and the JSON schema its answer should follow."""

    template_version: str
    messages: tuple[ChatMessage, ...]
    schema: dict[str, Any]
    k: int

    def as_openai_messages(self) -> list[dict[str, str]]:
        return [{"role": m.role, "content": m.content} for m in self.messages]

    def as_text(self) -> str:
        """The prompt as plain text, for completion APIs that apply no chat template."""
        body = "\n\n".join(m.content for m in self.messages)
        return f"{body}\n\nAnswer:"


@dataclass(frozen=True, slots=True)
class PromptTemplate:
    """One versioned template file."""

    version: str
    description: str
    system: str
    user: str
    schema: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not _VERSION_RE.match(self.version):
            raise ValueError(f"template version {self.version!r} must look like 'name_vN'")
        for name in ("system", "user"):
            _ENV.parse(getattr(self, name))  # syntax errors surface at load, not at the first request

    def render(self, request: GenerationRequest, k: int) -> RenderedPrompt:
        """Fill the template for ``request``, asking for ``k`` variants."""
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        variables = {
            "base": request.base,
            "goal": request.goal,
            "attributes": [
                {"name": a, "meaning": KNOWN_ATTRIBUTES.get(a, a.replace("_", " "))}
                for a in request.attributes
            ],
            "audience": request.audience,
            "tone": request.tone,
            "language": request.language,
            "min_chars": request.min_chars,
            "max_chars": request.max_chars,
            "k": k,
        }
        messages = (
            ChatMessage("system", _ENV.from_string(self.system).render(**variables).strip()),
            ChatMessage("user", _ENV.from_string(self.user).render(**variables).strip()),
        )
        return RenderedPrompt(self.version, messages, self.schema, k)


def _version_key(version: str) -> tuple[str, int]:
    match = _VERSION_RE.match(version)
    assert match is not None
    return match["family"], int(match["number"])


def available_versions() -> list[str]:
    """Every template version shipped in ``engine/generation/prompts``, oldest first."""
    names = [p.name.removesuffix(".yaml") for p in files("engine.generation.prompts").iterdir()]
    return sorted((n for n in names if _VERSION_RE.match(n)), key=_version_key)


@cache
def load_template(version: str | None = None, family: str = "variants") -> PromptTemplate:
    """Load template ``version`` (e.g. ``variants_v1``); None = the newest of ``family``."""
    versions = available_versions()
    if version is None:
        candidates = [v for v in versions if _version_key(v)[0] == family]
        if not candidates:
            raise ValueError(f"no prompt template of family {family!r} in engine/generation/prompts")
        version = candidates[-1]
    if version not in versions:
        raise ValueError(f"unknown prompt template {version!r}; available: {', '.join(versions)}")
    raw = yaml.safe_load(files("engine.generation.prompts").joinpath(f"{version}.yaml").read_text("utf-8"))
    if not isinstance(raw, dict) or raw.get("version") != version:
        raise ValueError(f"prompt template file {version}.yaml must declare version: {version}")
    return PromptTemplate(
        version=raw["version"],
        description=raw.get("description", ""),
        system=raw["system"],
        user=raw["user"],
        schema=raw.get("schema") or {},
    )
