#!/usr/bin/env bash
# Sends a message to $ROOM and prints it as stored (with its seq):
#   ./send.sh TEXT [CLIENT_MSG_ID]
#   REPLY_TO=MESSAGE_ID ./send.sh TEXT    quotes a message of the room
#   THREAD=ROOT_ID ./send.sh TEXT         replies in the thread of a top-level message
# A retry with the same CLIENT_MSG_ID returns the same message, stored once.
set -euo pipefail
: "${GRPCURL:=grpcurl}" "${ADDR:=127.0.0.1:50051}" "${TOKEN:?log in first: export TOKEN=\$(./login.sh USER PASSWORD)}" "${ROOM:?set ROOM to a room id}"
TEXT=${1:?usage: send.sh TEXT [CLIENT_MSG_ID]}

BODY=$(python3 -c 'import json, sys; print(json.dumps(dict(zip(["room_id", "text", "client_msg_id", "reply_to_id", "thread_root_id"], sys.argv[1:]))))' \
  "$ROOM" "$TEXT" "${2:-}" "${REPLY_TO:-}" "${THREAD:-}")
"$GRPCURL" -plaintext -H "authorization: Bearer $TOKEN" -d "$BODY" "$ADDR" chat.v1.ChatService/SendMessage
