#!/usr/bin/env bash
# Logs in and prints the access token: export TOKEN=$(./login.sh USER PASSWORD)
# The other scripts send it as `authorization: Bearer $TOKEN`.
set -euo pipefail
: "${GRPCURL:=grpcurl}" "${ADDR:=127.0.0.1:50051}"
USER_NAME=${1:?usage: login.sh USER PASSWORD} PASSWORD=${2:?usage: login.sh USER PASSWORD}

BODY=$(python3 -c 'import json, sys; print(json.dumps({"username": sys.argv[1], "password": sys.argv[2]}))' "$USER_NAME" "$PASSWORD")
"$GRPCURL" -plaintext -d "$BODY" "$ADDR" chat.v1.AuthService/Login |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["accessToken"])'
