#!/usr/bin/env bash
# A ChatStream fed from stdin: each line is a ClientEvent in JSON, e.g.
#   {"send": {"room_id": "...", "text": "hi", "client_msg_id": "m-1"}}
#   {"typing": {"room_id": "..."}}
#   {"ping": {"nonce": 7}}
# or, with ROOM set, plain text to send to that room. Server events are
# printed as they come; the stream stays open after stdin ends (Ctrl-C stops).
set -euo pipefail
: "${GRPCURL:=grpcurl}" "${ADDR:=127.0.0.1:50051}" "${TOKEN:?log in first: export TOKEN=\$(./login.sh USER PASSWORD)}"

python3 -u -c '
import json, sys, uuid
for line in sys.stdin:
    line = line.strip()
    if line.startswith("{") or not line:
        print(line, flush=True)
    elif sys.argv[1]:
        print(json.dumps({"send": {"room_id": sys.argv[1], "text": line, "client_msg_id": str(uuid.uuid4())}}), flush=True)
    else:
        print("set ROOM to send plain text; skipped: " + line, file=sys.stderr)
' "${ROOM:-}" | "$GRPCURL" -plaintext -H "authorization: Bearer $TOKEN" -d @ "$ADDR" chat.v1.ChatService/ChatStream
