#!/usr/bin/env bash
# Changes the logged-in user's password: ./change-password.sh CURRENT NEW
# The server checks CURRENT (PermissionDenied "wrong password" when wrong),
# then ends every other session of the account; $TOKEN's session goes on.
set -euo pipefail
: "${GRPCURL:=grpcurl}" "${ADDR:=127.0.0.1:50051}" "${TOKEN:?log in first: export TOKEN=\$(./login.sh USER PASSWORD)}"
CURRENT=${1:?usage: change-password.sh CURRENT NEW} NEW=${2:?usage: change-password.sh CURRENT NEW}

BODY=$(python3 -c 'import json, sys; print(json.dumps({"current_password": sys.argv[1], "new_password": sys.argv[2]}))' "$CURRENT" "$NEW")
"$GRPCURL" -plaintext -H "authorization: Bearer $TOKEN" -d @ "$ADDR" chat.v1.AuthService/ChangePassword <<<"$BODY" >/dev/null
echo "password changed; other sessions ended"
