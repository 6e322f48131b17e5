#!/usr/bin/env bash
# Removes a member from $ROOM: ./remove-member.sh USER_ID [REASON]
#   BAN=1 ./remove-member.sh USER_ID [REASON]   also refuses their later joins and invitations
# Admins remove members; the owner removes admins too; nobody removes the
# owner. A user who is not a member can be banned too. The room, and the
# removed user's streams, get a "member" event (REMOVED or BANNED, with the
# reason); theirs then hear nothing more of the room. User ids: members.sh.
set -euo pipefail
: "${GRPCURL:=grpcurl}" "${ADDR:=127.0.0.1:50051}" "${TOKEN:?log in first: export TOKEN=\$(./login.sh USER PASSWORD)}" "${ROOM:?set ROOM to a room id}"
USER_ID=${1:?usage: remove-member.sh USER_ID [REASON]}
case "${BAN:-0}" in
  0 | "") BAN=false WHAT=removed ;;
  1) BAN=true WHAT=banned ;;
  *) echo "BAN must be 0 or 1" >&2; exit 2 ;;
esac

BODY=$(python3 -c 'import json, sys; print(json.dumps({"room_id": sys.argv[1], "user_id": sys.argv[2], "ban": sys.argv[3] == "true", "reason": sys.argv[4]}))' \
  "$ROOM" "$USER_ID" "$BAN" "${2:-}")
"$GRPCURL" -plaintext -H "authorization: Bearer $TOKEN" -d "$BODY" "$ADDR" chat.v1.ChatService/RemoveMember >/dev/null
echo "$WHAT $USER_ID"
