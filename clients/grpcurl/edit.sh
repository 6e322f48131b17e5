#!/usr/bin/env bash
# Replaces the text of one of your messages in $ROOM and prints the message
# as it is now (with "editedAt"): ./edit.sh MESSAGE_ID TEXT
# Someone else's message: PermissionDenied; a deleted one: FailedPrecondition.
set -euo pipefail
: "${GRPCURL:=grpcurl}" "${ADDR:=127.0.0.1:50051}" "${TOKEN:?log in first: export TOKEN=\$(./login.sh USER PASSWORD)}" "${ROOM:?set ROOM to a room id}"
ID=${1:?usage: edit.sh MESSAGE_ID TEXT} TEXT=${2:?usage: edit.sh MESSAGE_ID TEXT}

BODY=$(python3 -c 'import json, sys; print(json.dumps({"room_id": sys.argv[1], "message_id": sys.argv[2], "text": sys.argv[3]}))' "$ROOM" "$ID" "$TEXT")
"$GRPCURL" -plaintext -H "authorization: Bearer $TOKEN" -d "$BODY" "$ADDR" chat.v1.ChatService/EditMessage
