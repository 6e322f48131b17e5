#!/usr/bin/env bash
# Tests the Node client, from any directory: installs its npm packages into
# node_modules, generates the code for ../../proto, compiles to dist/, then
# runs Node's test runner against a real chat-server (build it first:
# `cargo build`; CHAT_SERVER_BIN overrides ../../target/debug/chat-server).
set -euo pipefail
cd "$(dirname "$0")"
npm ci --no-audit --no-fund
npm run build
npm test
