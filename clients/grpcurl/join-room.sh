#!/usr/bin/env bash
# Joins a group room by name (or id) and prints its id: export ROOM=$(./join-room.sh NAME)
set -euo pipefail
: "${GRPCURL:=grpcurl}" "${ADDR:=127.0.0.1:50051}" "${TOKEN:?log in first: export TOKEN=\$(./login.sh USER PASSWORD)}"
NAME=${1:?usage: join-room.sh NAME_OR_ID}

# Find the room's id in ListRooms, every page of it (list-rooms.sh).
ID=$("$(dirname "$0")/list-rooms.sh" |
  python3 -c '
import json, sys
ids = [r["id"] for r in map(json.loads, sys.stdin.readlines()) if sys.argv[1] in (r["name"], r["id"])]
if not ids:
    sys.exit(1)
print(ids[0])
' "$NAME") ||
  { echo "no room named $NAME" >&2; exit 1; }
"$GRPCURL" -plaintext -H "authorization: Bearer $TOKEN" -d "{\"room_id\": \"$ID\"}" "$ADDR" chat.v1.ChatService/JoinRoom |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["room"]["id"])'
