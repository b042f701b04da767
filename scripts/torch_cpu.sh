# Sourced by setup.sh and check_install.sh: install_torch PYTHON puts the pinned torch into that
# Python's environment — on a machine without a GPU the CPU build (PyPI's torch for Linux is a CUDA
# build of several GB): PyTorch's CPU index first, the usual index where that cannot be reached.
install_torch() {
  local py=$1 torch="torch==${EDITLAB_TORCH_VERSION:-2.13.0}"
  "$py" -c "import torch" 2>/dev/null && return 0
  if command -v nvidia-smi >/dev/null 2>&1; then
    "$py" -m pip install --disable-pip-version-check -q "$torch"
    return
  fi
  "$py" -m pip install --disable-pip-version-check -q "$torch" --retries 0 \
      --index-url "${EDITLAB_TORCH_INDEX:-https://download.pytorch.org/whl/cpu}" 2>/dev/null \
    || "$py" -m pip install --disable-pip-version-check -q "$torch"
}
