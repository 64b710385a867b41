#!/usr/bin/env bash
# Creates .venv with finsentry and its test tools from requirements.lock (every package
# pinned with its hashes, the CPU build of torch included). Idempotent: a second run is quick.
#
#   ./setup.sh          install from the lock
#   ./setup.sh --lock   refresh requirements.lock from pyproject.toml (pip-tools, in a
#                       throwaway venv), then install from it
#
# On a GPU machine set FINSENTRY_TORCH to the torch you want (e.g. FINSENTRY_TORCH=torch==2.13.0
# for PyPI's CUDA build): it is installed first, and the lock's CPU torch is skipped.
set -euo pipefail
cd "$(dirname "$0")"
python="${PYTHON:-python3}"
torch_pin="torch==2.13.0"
lock=requirements.lock

if [ "${1:-}" = "--lock" ]; then
    tools="$(mktemp -d)"
    trap 'rm -rf "$tools"' EXIT
    "$python" -m venv "$tools"
    "$tools/bin/python" -m pip --disable-pip-version-check -q install "pip-tools==7.6.2"
    echo "setup: resolving $lock"
    "$tools/bin/pip-compile" --quiet --generate-hashes --extra dev --strip-extras \
        --allow-unsafe --unsafe-package torch -c <(echo "$torch_pin") \
        --no-emit-index-url --no-emit-find-links --output-file "$lock" pyproject.toml
fi

[ -x .venv/bin/python ] || "$python" -m venv .venv
pip=(.venv/bin/python -m pip --disable-pip-version-check -q)
if [ -n "${FINSENTRY_TORCH:-}" ]; then
    echo "setup: installing $FINSENTRY_TORCH, then the lock without its CPU torch"
    "${pip[@]}" install "$FINSENTRY_TORCH"
    # torch is the lock's only "unsafe" package, in the section that ends the file.
    "${pip[@]}" install --require-hashes -r <(sed '/^# The following packages are considered to be unsafe/,$d' "$lock")
else
    echo "setup: installing $lock"
    "${pip[@]}" install --require-hashes -r "$lock"
fi
echo "setup: installing finsentry itself"
"${pip[@]}" install --no-deps --no-build-isolation -e .
echo "setup: done"
