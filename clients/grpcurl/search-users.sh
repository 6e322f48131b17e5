#!/usr/bin/env bash
# Prints the users whose username or display name starts with PREFIX
# (without regard to case), one JSON object a line, by username:
#   ./search-users.sh PREFIX [LIMIT]
# PREFIX is 1 to 32 characters (InvalidArgument otherwise); LIMIT defaults to
# 0, the server's 20, and is capped at 20. Users who blocked you are left out.
set -euo pipefail
: "${GRPCURL:=grpcurl}" "${ADDR:=127.0.0.1:50051}" "${TOKEN:?log in first: export TOKEN=\$(./login.sh USER PASSWORD)}"
PREFIX=${1?usage: search-users.sh PREFIX [LIMIT]}

BODY=$(python3 -c 'import json, sys; print(json.dumps({"prefix": sys.argv[1], "limit": int(sys.argv[2])}))' "$PREFIX" "${2:-0}")
ANSWER=$("$GRPCURL" -plaintext -H "authorization: Bearer $TOKEN" -d "$BODY" "$ADDR" chat.v1.ChatService/SearchUsers)
python3 -c '
import json, sys
for user in json.load(sys.stdin).get("users", []):
    print(json.dumps(user, separators=(",", ":"), ensure_ascii=False))
' <<<"$ANSWER"
