#!/usr/bin/env bash
# Prints $ROOM's messages, oldest first: ./history.sh [BEFORE_SEQ [LIMIT]]
# (the newest 50 by default; BEFORE_SEQ pages further back).
set -euo pipefail
: "${GRPCURL:=grpcurl}" "${ADDR:=127.0.0.1:50051}" "${TOKEN:?log in first: export TOKEN=\$(./login.sh USER PASSWORD)}" "${ROOM:?set ROOM to a room id}"

"$GRPCURL" -plaintext -H "authorization: Bearer $TOKEN" \
  -d "{\"room_id\": \"$ROOM\", \"before_seq\": ${1:-0}, \"limit\": ${2:-0}}" "$ADDR" chat.v1.ChatService/History
