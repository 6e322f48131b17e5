#!/usr/bin/env bash
# Creates a group room and prints its id: export ROOM=$(./create-room.sh NAME)
set -euo pipefail
: "${GRPCURL:=grpcurl}" "${ADDR:=127.0.0.1:50051}" "${TOKEN:?log in first: export TOKEN=\$(./login.sh USER PASSWORD)}"
NAME=${1:?usage: create-room.sh NAME}

BODY=$(python3 -c 'import json, sys; print(json.dumps({"name": sys.argv[1]}))' "$NAME")
"$GRPCURL" -plaintext -H "authorization: Bearer $TOKEN" -d "$BODY" "$ADDR" chat.v1.ChatService/CreateRoom |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["room"]["id"])'
