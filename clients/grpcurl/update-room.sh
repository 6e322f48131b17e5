#!/usr/bin/env bash
# Changes $ROOM's name, topic or visibility (admins and the owner) and prints
# the room as it is now: ./update-room.sh [--name NAME] [--topic TOPIC] [--public|--private]
# What is not given is kept; --topic '' clears the topic. The members'
# streams get a "roomUpdated" event (a room event, with its own seq).
set -euo pipefail
: "${GRPCURL:=grpcurl}" "${ADDR:=127.0.0.1:50051}" "${TOKEN:?log in first: export TOKEN=\$(./login.sh USER PASSWORD)}" "${ROOM:?set ROOM to a room id}"
usage() { echo "usage: update-room.sh [--name NAME] [--topic TOPIC] [--public|--private]" >&2; exit 2; }
ARGS=("$ROOM")
while [ $# -gt 0 ]; do
  case "$1" in
    --name) [ $# -ge 2 ] || usage; ARGS+=(name "$2"); shift 2 ;;
    --topic) [ $# -ge 2 ] || usage; ARGS+=(topic "$2"); shift 2 ;;
    --public) ARGS+=(visibility ROOM_VISIBILITY_PUBLIC); shift ;;
    --private) ARGS+=(visibility ROOM_VISIBILITY_PRIVATE); shift ;;
    *) usage ;;
  esac
done
[ ${#ARGS[@]} -gt 1 ] || usage

BODY=$(python3 -c '
import json, sys
body = {"room_id": sys.argv[1]}
pairs = sys.argv[2:]
body.update(zip(pairs[0::2], pairs[1::2]))
print(json.dumps(body))
' "${ARGS[@]}")
"$GRPCURL" -plaintext -H "authorization: Bearer $TOKEN" -d "$BODY" "$ADDR" chat.v1.ChatService/UpdateRoom |
  python3 -c 'import json, sys; print(json.dumps(json.load(sys.stdin)["room"], indent=2, ensure_ascii=False))'
