#!/usr/bin/env bash
# Tests the Python client against the real server binary.
# Creates .venv here, installs the package with its test extras, generates
# the stubs from ../../proto and runs pytest. The server binary comes from
# CHAT_SERVER_BIN (default ../../target/debug/chat-server: run `cargo build`).
set -euo pipefail
cd "$(dirname "$0")"

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[test]'
.venv/bin/python generate.py

export CHAT_SERVER_BIN="${CHAT_SERVER_BIN:-$(pwd)/../../target/debug/chat-server}"
exec .venv/bin/python -m pytest -q "$@"
