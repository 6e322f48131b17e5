#!/usr/bin/env bash
# CI for the web client, from any directory: installs what it needs, rebuilds
# the bundle and fails if the committed copy (dist/, src/gen/) is stale, then
# runs the end-to-end test against the server binary (build it first:
# `cargo build`; CHAT_SERVER_BIN overrides the default target/debug path).
set -euo pipefail
cd "$(dirname "$0")"

if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium
  else
    echo "Chromium is missing: install Debian's chromium package (as root: apt-get install chromium)" >&2
    exit 1
  fi
fi

npm ci --no-audit --no-fund
npm run build

# The committed bundle and generated code must be what the sources build.
stale=$(git status --porcelain -- dist src/gen)
if [ -n "$stale" ]; then
  echo "clients/web: the committed dist/ or src/gen/ is stale; run 'npm run build' in clients/web and commit:" >&2
  echo "$stale" >&2
  exit 1
fi

# What a cold load downloads stays under its budget (scripts/budget.mjs).
node scripts/budget.mjs

npm test
