#!/usr/bin/env bash
# Creates .venv with finsentry and its test tools. Idempotent: a second run is quick.
#
# torch is installed first and pinned (FINSENTRY_TORCH, default torch==2.13.0), since an
# unpinned torch pulls a multi-GB CUDA build; on a GPU machine set FINSENTRY_TORCH=torch.
set -euo pipefail
cd "$(dirname "$0")"
python="${PYTHON:-python3}"
torch_spec="${FINSENTRY_TORCH:-torch==2.13.0}"

[ -x .venv/bin/python ] || "$python" -m venv .venv
pip=(.venv/bin/python -m pip --disable-pip-version-check -q)
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
    echo "setup: installing $torch_spec"
    "${pip[@]}" install "$torch_spec"
fi
echo "setup: installing finsentry and its dependencies into .venv"
"${pip[@]}" install -e '.[dev]'
echo "setup: done"
