#!/usr/bin/env bash
# Moves your read marker in $ROOM forward to SEQ (every event up to it is
# read) and prints where it is now: ./mark-read.sh SEQ
# It never moves back, and stops at the room's last seq. Your streams, and
# the other members of a small room, get a "read" event.
set -euo pipefail
: "${GRPCURL:=grpcurl}" "${ADDR:=127.0.0.1:50051}" "${TOKEN:?log in first: export TOKEN=\$(./login.sh USER PASSWORD)}" "${ROOM:?set ROOM to a room id}"
SEQ=${1:?usage: mark-read.sh SEQ}

OUT=$("$GRPCURL" -plaintext -H "authorization: Bearer $TOKEN" -d "{\"room_id\": \"$ROOM\", \"seq\": $SEQ}" "$ADDR" chat.v1.ChatService/MarkRead)
python3 -c 'import json, sys; print(json.loads(sys.argv[1]).get("lastReadSeq", "0"))' "$OUT"
