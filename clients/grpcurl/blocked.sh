#!/usr/bin/env bash
# Prints the users you block, one JSON object a line, by username: ./blocked.sh
set -euo pipefail
: "${GRPCURL:=grpcurl}" "${ADDR:=127.0.0.1:50051}" "${TOKEN:?log in first: export TOKEN=\$(./login.sh USER PASSWORD)}"

ANSWER=$("$GRPCURL" -plaintext -H "authorization: Bearer $TOKEN" -d '{}' "$ADDR" chat.v1.ChatService/ListBlockedUsers)
python3 -c '
import json, sys
for user in json.load(sys.stdin).get("users", []):
    print(json.dumps(user, separators=(",", ":"), ensure_ascii=False))
' <<<"$ANSWER"
