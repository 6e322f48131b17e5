#!/usr/bin/env bash
# Lifts a ban in $ROOM (admins and the owner): ./unban.sh USER_ID
# Lifting a ban that is not there succeeds. The user may then join or be
# invited again (a banned user is no member: take the id from where you
# banned them, or from the BANNED "member" event).
set -euo pipefail
: "${GRPCURL:=grpcurl}" "${ADDR:=127.0.0.1:50051}" "${TOKEN:?log in first: export TOKEN=\$(./login.sh USER PASSWORD)}" "${ROOM:?set ROOM to a room id}"
USER_ID=${1:?usage: unban.sh USER_ID}

BODY=$(python3 -c 'import json, sys; print(json.dumps({"room_id": sys.argv[1], "user_id": sys.argv[2]}))' "$ROOM" "$USER_ID")
"$GRPCURL" -plaintext -H "authorization: Bearer $TOKEN" -d "$BODY" "$ADDR" chat.v1.ChatService/UnbanMember >/dev/null
echo "unbanned $USER_ID"
