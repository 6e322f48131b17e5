#!/usr/bin/env bash
# Prints a thread of $ROOM: its root, then its replies oldest first:
#   ./thread.sh ROOT_ID [BEFORE_SEQ [LIMIT]]
# (the newest 50 replies by default; BEFORE_SEQ pages further back).
set -euo pipefail
: "${GRPCURL:=grpcurl}" "${ADDR:=127.0.0.1:50051}" "${TOKEN:?log in first: export TOKEN=\$(./login.sh USER PASSWORD)}" "${ROOM:?set ROOM to a room id}"
ROOT=${1:?usage: thread.sh ROOT_ID [BEFORE_SEQ [LIMIT]]}

BODY=$(python3 -c 'import json, sys; print(json.dumps({"room_id": sys.argv[1], "thread_root_id": sys.argv[2], "before_seq": int(sys.argv[3]), "limit": int(sys.argv[4])}))' \
  "$ROOM" "$ROOT" "${2:-0}" "${3:-0}")
"$GRPCURL" -plaintext -H "authorization: Bearer $TOKEN" -d "$BODY" "$ADDR" chat.v1.ChatService/ListThread
