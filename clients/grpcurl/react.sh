#!/usr/bin/env bash
# Adds your reaction to a message of $ROOM: ./react.sh MESSAGE_ID EMOJI
# One emoji ("👍", "❤️"), else InvalidArgument; twice changes nothing; a
# deleted message: FailedPrecondition; at most 20 different emoji of yours
# per message (ResourceExhausted).
set -euo pipefail
: "${GRPCURL:=grpcurl}" "${ADDR:=127.0.0.1:50051}" "${TOKEN:?log in first: export TOKEN=\$(./login.sh USER PASSWORD)}" "${ROOM:?set ROOM to a room id}"
ID=${1:?usage: react.sh MESSAGE_ID EMOJI} EMOJI=${2?usage: react.sh MESSAGE_ID EMOJI}

BODY=$(python3 -c 'import json, sys; print(json.dumps({"room_id": sys.argv[1], "message_id": sys.argv[2], "emoji": sys.argv[3]}))' "$ROOM" "$ID" "$EMOJI")
"$GRPCURL" -plaintext -H "authorization: Bearer $TOKEN" -d "$BODY" "$ADDR" chat.v1.ChatService/AddReaction >/dev/null
echo "added $EMOJI"
