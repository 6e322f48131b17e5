#!/usr/bin/env bash
# Creates a group room and prints its id: export ROOM=$(./create-room.sh NAME)
#   TOPIC='what it is for' ./create-room.sh NAME   with a topic (0 to 512 characters)
#   VISIBILITY=private ./create-room.sh NAME        listed to its members and invitees only
# You are its owner. Creating is no event of the room's log (its last seq is 0).
set -euo pipefail
: "${GRPCURL:=grpcurl}" "${ADDR:=127.0.0.1:50051}" "${TOKEN:?log in first: export TOKEN=\$(./login.sh USER PASSWORD)}"
NAME=${1:?usage: create-room.sh NAME}
case "${VISIBILITY:-public}" in
  public) VIS=ROOM_VISIBILITY_PUBLIC ;;
  private) VIS=ROOM_VISIBILITY_PRIVATE ;;
  *) echo "VISIBILITY must be public or private" >&2; exit 2 ;;
esac

BODY=$(python3 -c 'import json, sys; print(json.dumps({"name": sys.argv[1], "topic": sys.argv[2], "visibility": sys.argv[3]}))' "$NAME" "${TOPIC:-}" "$VIS")
"$GRPCURL" -plaintext -H "authorization: Bearer $TOKEN" -d "$BODY" "$ADDR" chat.v1.ChatService/CreateRoom |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["room"]["id"])'
