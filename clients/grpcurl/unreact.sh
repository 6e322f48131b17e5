#!/usr/bin/env bash
# Removes your reaction from a message of $ROOM: ./unreact.sh MESSAGE_ID EMOJI
# Removing one that is not there succeeds.
set -euo pipefail
: "${GRPCURL:=grpcurl}" "${ADDR:=127.0.0.1:50051}" "${TOKEN:?log in first: export TOKEN=\$(./login.sh USER PASSWORD)}" "${ROOM:?set ROOM to a room id}"
ID=${1:?usage: unreact.sh MESSAGE_ID EMOJI} EMOJI=${2?usage: unreact.sh MESSAGE_ID EMOJI}

BODY=$(python3 -c 'import json, sys; print(json.dumps({"room_id": sys.argv[1], "message_id": sys.argv[2], "emoji": sys.argv[3]}))' "$ROOM" "$ID" "$EMOJI")
"$GRPCURL" -plaintext -H "authorization: Bearer $TOKEN" -d "$BODY" "$ADDR" chat.v1.ChatService/RemoveReaction >/dev/null
echo "removed $EMOJI"
