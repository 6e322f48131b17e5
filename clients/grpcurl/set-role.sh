#!/usr/bin/env bash
# Sets a member's role in $ROOM (the owner only): ./set-role.sh USER_ID member|admin|owner
# "owner" hands the room to that member, and you become an admin. The room
# gets a "member" event (ROLE_CHANGED). User ids: members.sh.
set -euo pipefail
: "${GRPCURL:=grpcurl}" "${ADDR:=127.0.0.1:50051}" "${TOKEN:?log in first: export TOKEN=\$(./login.sh USER PASSWORD)}" "${ROOM:?set ROOM to a room id}"
USER_ID=${1:?usage: set-role.sh USER_ID member|admin|owner} ROLE=${2:?usage: set-role.sh USER_ID member|admin|owner}
case "$ROLE" in
  member | admin | owner) ;;
  *) echo "usage: set-role.sh USER_ID member|admin|owner" >&2; exit 2 ;;
esac

BODY=$(python3 -c 'import json, sys; print(json.dumps({"room_id": sys.argv[1], "user_id": sys.argv[2], "role": "MEMBER_ROLE_" + sys.argv[3].upper()}))' "$ROOM" "$USER_ID" "$ROLE")
"$GRPCURL" -plaintext -H "authorization: Bearer $TOKEN" -d "$BODY" "$ADDR" chat.v1.ChatService/SetMemberRole >/dev/null
echo "$USER_ID is now $ROLE"
