#!/usr/bin/env bash
# Lifts a block: ./unblock.sh USERNAME
# Unblocking someone not blocked succeeds; an unknown user: NotFound.
set -euo pipefail
: "${GRPCURL:=grpcurl}" "${ADDR:=127.0.0.1:50051}" "${TOKEN:?log in first: export TOKEN=\$(./login.sh USER PASSWORD)}"
USERNAME=${1:?usage: unblock.sh USERNAME}

BODY=$(python3 -c 'import json, sys; print(json.dumps({"username": sys.argv[1]}))' "$USERNAME")
"$GRPCURL" -plaintext -H "authorization: Bearer $TOKEN" -d "$BODY" "$ADDR" chat.v1.ChatService/UnblockUser >/dev/null
echo "unblocked $USERNAME"
