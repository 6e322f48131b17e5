#!/usr/bin/env bash
# Ends every session of the user but $TOKEN's ("log out other devices") and
# prints how many ended: ./logout-others.sh
set -euo pipefail
: "${GRPCURL:=grpcurl}" "${ADDR:=127.0.0.1:50051}" "${TOKEN:?log in first: export TOKEN=\$(./login.sh USER PASSWORD)}"

"$GRPCURL" -plaintext -H "authorization: Bearer $TOKEN" "$ADDR" chat.v1.AuthService/RevokeOtherSessions |
  python3 -c 'import json, sys; print(json.load(sys.stdin).get("revoked", 0))'
