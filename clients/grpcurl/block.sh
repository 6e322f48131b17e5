#!/usr/bin/env bash
# Blocks a user: ./block.sh USERNAME
# They can no longer open a direct room with you, send in one you share, or
# invite you to a room (PermissionDenied "you cannot message this user"), and
# your streams get no typing or presence from them; search-users.sh leaves
# you out of their searches. Messages in shared group rooms still arrive.
# Blocking twice succeeds; an unknown user: NotFound; yourself:
# InvalidArgument.
set -euo pipefail
: "${GRPCURL:=grpcurl}" "${ADDR:=127.0.0.1:50051}" "${TOKEN:?log in first: export TOKEN=\$(./login.sh USER PASSWORD)}"
USERNAME=${1:?usage: block.sh USERNAME}

BODY=$(python3 -c 'import json, sys; print(json.dumps({"username": sys.argv[1]}))' "$USERNAME")
"$GRPCURL" -plaintext -H "authorization: Bearer $TOKEN" -d "$BODY" "$ADDR" chat.v1.ChatService/BlockUser >/dev/null
echo "blocked $USERNAME"
