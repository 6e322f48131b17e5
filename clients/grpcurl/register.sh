#!/usr/bin/env bash
# Creates an account: ./register.sh USER PASSWORD
# Prints the new user (id and username). ADDR defaults to 127.0.0.1:50051.
set -euo pipefail
: "${GRPCURL:=grpcurl}" "${ADDR:=127.0.0.1:50051}"
USER_NAME=${1:?usage: register.sh USER PASSWORD} PASSWORD=${2:?usage: register.sh USER PASSWORD}

BODY=$(python3 -c 'import json, sys; print(json.dumps({"username": sys.argv[1], "password": sys.argv[2]}))' "$USER_NAME" "$PASSWORD")
"$GRPCURL" -plaintext -d "$BODY" "$ADDR" chat.v1.AuthService/Register
