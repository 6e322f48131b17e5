#!/usr/bin/env bash
# Sets your display name and prints you as you are now (compact JSON):
#   ./profile.sh 'Alice A.'   shown instead of your username where set
#   ./profile.sh ''           clears it
#   ./profile.sh              changes nothing: prints you as you are
# 0 to 64 characters, with no control, invisible or bidi-control characters
# (InvalidArgument otherwise). Everyone who shares a room with you, and your
# own streams, get a "profile" event (no seq: it is no room event).
set -euo pipefail
: "${GRPCURL:=grpcurl}" "${ADDR:=127.0.0.1:50051}" "${TOKEN:?log in first: export TOKEN=\$(./login.sh USER PASSWORD)}"
[ $# -le 1 ] || { echo "usage: profile.sh [DISPLAY_NAME]" >&2; exit 2; }

# No argument leaves display_name unset (not empty, which would clear it).
BODY=$(python3 -c 'import json, sys; print(json.dumps({"display_name": sys.argv[1]} if len(sys.argv) > 1 else {}))' "$@")
ANSWER=$("$GRPCURL" -plaintext -H "authorization: Bearer $TOKEN" -d "$BODY" "$ADDR" chat.v1.ChatService/UpdateProfile)
python3 -c 'import json, sys; print(json.dumps(json.load(sys.stdin)["user"], separators=(",", ":"), ensure_ascii=False))' <<<"$ANSWER"
