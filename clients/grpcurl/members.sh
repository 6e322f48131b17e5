#!/usr/bin/env bash
# Prints $ROOM's members (members only), one JSON object a line: the owner
# first, then admins, then members, each by when they joined, with their
# role and whether they are online: ./members.sh
# ListMembers answers a page at a time; this follows next_page_token to the
# last page. PAGE_SIZE sets the members asked for per call (default 0: the
# server's 100; at most 1000).
set -euo pipefail
: "${GRPCURL:=grpcurl}" "${ADDR:=127.0.0.1:50051}" "${TOKEN:?log in first: export TOKEN=\$(./login.sh USER PASSWORD)}" "${ROOM:?set ROOM to a room id}"

PAGE_TOKEN=
while :; do
  BODY=$(python3 -c 'import json, sys; print(json.dumps({"room_id": sys.argv[1], "page_size": int(sys.argv[2]), "page_token": sys.argv[3]}))' \
    "$ROOM" "${PAGE_SIZE:-0}" "$PAGE_TOKEN")
  PAGE=$("$GRPCURL" -plaintext -H "authorization: Bearer $TOKEN" -d "$BODY" "$ADDR" chat.v1.ChatService/ListMembers)
  # The page's members, one a line, then "next=" and the next page's token
  # (empty on the last page).
  OUT=$(python3 -c '
import json, sys
page = json.loads(sys.argv[1])
for member in page.get("members", []):
    print(json.dumps(member, separators=(",", ":"), ensure_ascii=False))
print("next=" + page.get("nextPageToken", ""))
' "$PAGE")
  printf '%s\n' "$OUT" | sed '$d'
  PAGE_TOKEN=${OUT##*$'\n'}
  PAGE_TOKEN=${PAGE_TOKEN#next=}
  [ -n "$PAGE_TOKEN" ] || break
done
