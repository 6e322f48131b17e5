#!/usr/bin/env bash
# Prints every room the user can see, one JSON object a line, in order of
# creation:
#   ./list-rooms.sh            every group room and one's direct rooms
#   ./list-rooms.sh --joined   only the rooms one is in
# ListRooms answers a page at a time; this follows next_page_token to the
# last page. PAGE_SIZE sets the rooms asked for per call (default 0: the
# server's 100; at most 1000).
set -euo pipefail
: "${GRPCURL:=grpcurl}" "${ADDR:=127.0.0.1:50051}" "${TOKEN:?log in first: export TOKEN=\$(./login.sh USER PASSWORD)}"
case "${1:-}" in
  "") JOINED=false ;;
  --joined) JOINED=true ;;
  *) echo "usage: list-rooms.sh [--joined]" >&2; exit 2 ;;
esac

PAGE_TOKEN=
while :; do
  BODY=$(python3 -c 'import json, sys; print(json.dumps({"page_size": int(sys.argv[1]), "page_token": sys.argv[2], "joined_only": sys.argv[3] == "true"}))' \
    "${PAGE_SIZE:-0}" "$PAGE_TOKEN" "$JOINED")
  PAGE=$("$GRPCURL" -plaintext -H "authorization: Bearer $TOKEN" -d "$BODY" "$ADDR" chat.v1.ChatService/ListRooms)
  # The page's rooms, one a line, then "next=" and the next page's token
  # (empty on the last page).
  OUT=$(python3 -c '
import json, sys
page = json.loads(sys.argv[1])
for room in page.get("rooms", []):
    print(json.dumps(room, separators=(",", ":")))
print("next=" + page.get("nextPageToken", ""))
' "$PAGE")
  printf '%s\n' "$OUT" | sed '$d'
  PAGE_TOKEN=${OUT##*$'\n'}
  PAGE_TOKEN=${PAGE_TOKEN#next=}
  [ -n "$PAGE_TOKEN" ] || break
done
