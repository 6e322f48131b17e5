#!/usr/bin/env bash
# Invites a user to $ROOM: ./invite.sh USERNAME
# Any member of a public room; admins and the owner of a private one. The
# invitee's streams get "invited" and list-rooms.sh shows the room with
# "invited": true; join-room.sh accepts, LeaveRoom declines. A member or a
# banned user: FailedPrecondition; an unknown user: NotFound.
set -euo pipefail
: "${GRPCURL:=grpcurl}" "${ADDR:=127.0.0.1:50051}" "${TOKEN:?log in first: export TOKEN=\$(./login.sh USER PASSWORD)}" "${ROOM:?set ROOM to a room id}"
USERNAME=${1:?usage: invite.sh USERNAME}

BODY=$(python3 -c 'import json, sys; print(json.dumps({"room_id": sys.argv[1], "username": sys.argv[2]}))' "$ROOM" "$USERNAME")
"$GRPCURL" -plaintext -H "authorization: Bearer $TOKEN" -d "$BODY" "$ADDR" chat.v1.ChatService/InviteToRoom >/dev/null
echo "invited $USERNAME"
