#!/usr/bin/env bash
# Creates (once) a Python virtual environment with py3amf, the independent AMF implementation the
# interoperability tests use, and prints the path of its python. Idempotent; safe to run often.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="target/py3amf-venv"
python="$venv/bin/python"
if ! "$python" -c "import pyamf" 2>/dev/null; then
    rm -rf "$venv"
    python3 -m venv "$venv" >&2
    "$venv/bin/pip" install --quiet --disable-pip-version-check "py3amf==0.9.1" >&2
fi
echo "$PWD/$python"
