#!/usr/bin/env bash
# Follows the live events of every room the user is in (Ctrl-C stops):
#   ./subscribe.sh             only what happens from now on
#   ./subscribe.sh AFTER_SEQ   first $ROOM's events after AFTER_SEQ (messages,
#                              edits, deletions, reactions, membership changes,
#                              room updates), then live
set -euo pipefail
: "${GRPCURL:=grpcurl}" "${ADDR:=127.0.0.1:50051}" "${TOKEN:?log in first: export TOKEN=\$(./login.sh USER PASSWORD)}"

BODY='{}'
if [ -n "${1:-}" ]; then
  BODY="{\"cursors\": [{\"room_id\": \"${ROOM:?set ROOM to resume in it}\", \"after_seq\": $1}]}"
fi
exec "$GRPCURL" -plaintext -H "authorization: Bearer $TOKEN" -d "$BODY" "$ADDR" chat.v1.ChatService/Subscribe
