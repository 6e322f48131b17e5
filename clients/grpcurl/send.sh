#!/usr/bin/env bash
# Sends a message to $ROOM and prints it as stored (with its seq):
#   ./send.sh TEXT [CLIENT_MSG_ID]
# A retry with the same CLIENT_MSG_ID returns the same message, stored once.
set -euo pipefail
: "${GRPCURL:=grpcurl}" "${ADDR:=127.0.0.1:50051}" "${TOKEN:?log in first: export TOKEN=\$(./login.sh USER PASSWORD)}" "${ROOM:?set ROOM to a room id}"
TEXT=${1:?usage: send.sh TEXT [CLIENT_MSG_ID]}

BODY=$(python3 -c 'import json, sys; print(json.dumps({"room_id": sys.argv[1], "text": sys.argv[2], "client_msg_id": sys.argv[3]}))' "$ROOM" "$TEXT" "${2:-}")
"$GRPCURL" -plaintext -H "authorization: Bearer $TOKEN" -d "$BODY" "$ADDR" chat.v1.ChatService/SendMessage
