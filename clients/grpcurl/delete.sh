#!/usr/bin/env bash
# Erases one of your messages in $ROOM: it stays as a tombstone ("deleted",
# no text, no reactions). ./delete.sh MESSAGE_ID
# Someone else's message: PermissionDenied; deleting again succeeds.
set -euo pipefail
: "${GRPCURL:=grpcurl}" "${ADDR:=127.0.0.1:50051}" "${TOKEN:?log in first: export TOKEN=\$(./login.sh USER PASSWORD)}" "${ROOM:?set ROOM to a room id}"
ID=${1:?usage: delete.sh MESSAGE_ID}

BODY=$(python3 -c 'import json, sys; print(json.dumps({"room_id": sys.argv[1], "message_id": sys.argv[2]}))' "$ROOM" "$ID")
"$GRPCURL" -plaintext -H "authorization: Bearer $TOKEN" -d "$BODY" "$ADDR" chat.v1.ChatService/DeleteMessage >/dev/null
echo "deleted $ID"
