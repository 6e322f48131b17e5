"""ChatClient and the terminal program against a real chat-server process."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import pytest

from chat_client import ChatClient, ChatError, pb, pb_grpc

PASSWORD = "correct horse battery"
# The server's send rate (10 a second, bursts of 20) lifted, for the tests
# that send more than a resume resends.
UNTHROTTLED = ("--send-rate", "100000", "--send-burst", "100000")
PACKAGE_DIR = Path(__file__).resolve().parent.parent


def user(server, name: str, **options) -> ChatClient:
    client = ChatClient(server.address, **options)
    client.register(name, PASSWORD)
    client.login(name, PASSWORD)
    return client


class Collector:
    """Drains an event stream in a thread, so tests can wait with a timeout."""

    def __init__(self, stream):
        self.stream = stream
        self.events: queue.Queue = queue.Queue()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            for event in self.stream:
                self.events.put(event)
        except BaseException as error:  # noqa: BLE001 - reported by the test
            self.error = error

    def next(self, kind: str, timeout: float = 10.0, predicate=lambda e: True):
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                event = self.events.get(timeout=max(remaining, 0.01))
            except queue.Empty:
                raise AssertionError(f"no {kind} event within {timeout}s (error: {self.error!r})")
            if event.WhichOneof("event") == kind and predicate(event):
                return event

    def messages(self, count: int, timeout: float = 10.0) -> list[pb.Message]:
        return [self.next("message", timeout).message for _ in range(count)]

    def close(self):
        self.stream.close()
        self.thread.join(5)


class Watchdog:
    """Closes a stream (ending a blocked iteration) if a test overruns."""

    def __init__(self, stream, seconds: float):
        self.timer = threading.Timer(seconds, stream.close)

    def __enter__(self):
        self.timer.start()
        return self

    def __exit__(self, *exc):
        self.timer.cancel()


def take_messages(stream, count: int) -> list[pb.Message]:
    """Pulls `count` message events from the stream in this thread."""
    messages = []
    for event in stream:
        if event.WhichOneof("event") == "message":
            messages.append(event.message)
            if len(messages) == count:
                return messages
    raise AssertionError(f"the stream ended after {len(messages)} of {count} messages")


def take_until_ready(stream) -> pb.ServerEvent:
    for event in stream:
        if event.WhichOneof("event") == "ready":
            return event
    raise AssertionError("the stream ended before ready")


def test_register_and_login(server):
    client = ChatClient(server.address)
    registered = client.register("alice", PASSWORD)
    assert registered.username == "alice" and registered.id
    logged_in = client.login("alice", PASSWORD)
    assert logged_in.id == registered.id
    assert client.session_id and client.access_token

    with pytest.raises(ChatError) as wrong:
        ChatClient(server.address).login("alice", "not the password")
    assert wrong.value.code == grpc.StatusCode.UNAUTHENTICATED
    assert wrong.value.details == "invalid username or password"

    with pytest.raises(ChatError) as taken:
        client.register("ALICE", PASSWORD)
    assert taken.value.code == grpc.StatusCode.ALREADY_EXISTS

    with pytest.raises(ChatError) as anonymous:
        ChatClient(server.address).list_rooms()
    assert anonymous.value.code == grpc.StatusCode.UNAUTHENTICATED


def test_rooms(server):
    alice, bob = user(server, "alice"), user(server, "bob")
    room = alice.create_room("general")
    assert room.name == "general" and room.joined and room.kind == pb.ROOM_KIND_GROUP

    seen = bob.find_room("general")
    assert seen is not None and seen.id == room.id and not seen.joined
    assert bob.join_room(room.id).joined
    assert [r.id for r in bob.list_rooms() if r.joined] == [room.id]

    direct = alice.open_direct_room("bob")
    assert direct.kind == pb.ROOM_KIND_DIRECT
    assert bob.open_direct_room("alice").id == direct.id

    with pytest.raises(ChatError) as missing:
        alice.open_direct_room("nobody")
    assert missing.value.code == grpc.StatusCode.NOT_FOUND


def test_list_rooms_follows_every_page(server):
    alice, bob = user(server, "alice"), user(server, "bob")
    created = [alice.create_room(f"room-{i}") for i in range(7)]
    for room in created[1::2]:
        bob.join_room(room.id)
    direct = alice.open_direct_room("bob")

    # Three pages of three for alice: every room once, in order of creation.
    listed = alice.list_rooms(page_size=3)
    assert [r.id for r in listed] == [r.id for r in created] + [direct.id]
    # The server's default page size gives the same.
    assert [r.id for r in alice.list_rooms()] == [r.id for r in listed]

    # bob sees every group room, and only his own direct room.
    assert [r.id for r in bob.list_rooms(page_size=2)] == [r.id for r in listed]
    mine = bob.list_rooms(page_size=2, joined_only=True)
    assert [r.id for r in mine] == [r.id for r in created[1::2]] + [direct.id]
    assert all(r.joined for r in mine)
    assert [r.name for r in bob.iter_rooms(page_size=1, joined_only=True)] == [r.name for r in mine]
    assert bob.find_room("room-6").id == created[6].id


def test_an_event_stream_starts_only_the_rooms_one_is_in(server):
    alice, bob = user(server, "alice"), user(server, "bob")
    rooms = [alice.create_room(f"room-{i}") for i in range(5)]
    joined = bob.join_room(rooms[3].id)
    assert joined.last_seq >= 1, "a join is an event of the room's log"
    stream = bob.events()
    try:
        # From the room's last seq: after bob's own join.
        assert stream.cursors.as_dict() == {rooms[3].id: joined.last_seq}
    finally:
        stream.close()


def test_change_password_ends_the_other_sessions(server):
    alice = user(server, "alice")
    phone = ChatClient(server.address)
    phone.login("alice", PASSWORD)
    assert phone.list_rooms() == []

    with pytest.raises(ChatError) as wrong:
        alice.change_password("not the password", "a brand new secret")
    assert (wrong.value.code, wrong.value.details) == (grpc.StatusCode.PERMISSION_DENIED, "wrong password")

    alice.change_password(PASSWORD, "a brand new secret")
    # This session goes on; the other one is refused.
    assert alice.create_room("still-mine").joined
    with pytest.raises(ChatError) as revoked:
        phone.list_rooms()
    assert revoked.value.code == grpc.StatusCode.UNAUTHENTICATED

    with pytest.raises(ChatError) as old:
        ChatClient(server.address).login("alice", PASSWORD)
    assert (old.value.code, old.value.details) == (
        grpc.StatusCode.UNAUTHENTICATED, "invalid username or password")
    fresh = ChatClient(server.address)
    assert fresh.login("alice", "a brand new secret").username == "alice"
    assert [r.name for r in fresh.list_rooms()] == ["still-mine"]


def test_revoke_other_sessions_returns_how_many_ended(server):
    alice = user(server, "alice")
    others = [ChatClient(server.address) for _ in range(2)]
    for other in others:
        other.login("alice", PASSWORD)
    events = Collector(others[0].events())
    try:
        events.next("ready")
        assert alice.revoke_other_sessions() == 2
        for other in others:
            with pytest.raises(ChatError) as refused:
                other.list_rooms()
            assert refused.value.code == grpc.StatusCode.UNAUTHENTICATED
        # The other session's open stream ends, and does not come back.
        events.thread.join(10)
        assert isinstance(events.error, ChatError)
        assert events.error.code == grpc.StatusCode.UNAUTHENTICATED
    finally:
        events.close()
    # The calling session still works, and nothing is left to revoke.
    assert alice.create_room("general").joined
    assert alice.revoke_other_sessions() == 0


def test_send_history_and_live_events(server):
    alice, bob = user(server, "alice"), user(server, "bob")
    room = alice.create_room("general")
    joined = bob.join_room(room.id).last_seq  # the join's own seq
    events = Collector(bob.events())
    try:
        events.next("ready")
        sent = [alice.send(room.id, f"line {i}") for i in range(1, 4)]
        assert [m.seq for m in sent] == [joined + 1, joined + 2, joined + 3]
        received = events.messages(3)
        assert [(m.seq, m.text, m.sender.username) for m in received] == [
            (m.seq, m.text, "alice") for m in sent]
        assert [m.text for m in received] == ["line 1", "line 2", "line 3"]
        assert events.stream.cursors.get(room.id) == sent[2].seq

        page = bob.history(room.id)
        assert [m.text for m in page.messages] == ["line 1", "line 2", "line 3"]
        assert not page.has_more
        older = bob.history(room.id, before_seq=sent[2].seq, limit=1)
        assert [m.seq for m in older.messages] == [sent[1].seq] and older.has_more
    finally:
        events.close()


def take_log_events(stream, count: int) -> list[pb.ServerEvent]:
    """Pulls `count` events of a room's log (messages, member changes...) from the stream."""
    from chat_client._common import event_seq

    taken = []
    for event in stream:
        if event_seq(event) is not None:
            taken.append(event)
            if len(taken) == count:
                return taken
    raise AssertionError(f"the stream ended after {len(taken)} of {count} log events")


def test_membership_changes_are_log_events_that_move_the_cursor_and_resume_once(server):
    alice, bob, carol = user(server, "alice"), user(server, "bob"), user(server, "carol")
    room = alice.create_room("general")
    joined = bob.join_room(room.id).last_seq
    stream = bob.events()
    with Watchdog(stream, 30):
        take_until_ready(stream)
        carol.join_room(room.id)
        [join] = take_log_events(stream, 1)
        assert join.WhichOneof("event") == "member"
        assert (join.member.room_id, join.member.user.username, join.member.change) == (
            room.id, "carol", pb.MEMBER_CHANGE_JOINED)
        assert join.member.seq > joined
        assert stream.cursors.get(room.id) == join.member.seq

        # Missed while the stream is down: the leave and a message after
        # it come with the resume, once each, in seq order.
        stream.disconnect()
        carol.leave_room(room.id)
        alice.send(room.id, "carol has gone")
        leave, message = take_log_events(stream, 2)
        assert (leave.WhichOneof("event"), leave.member.user.username, leave.member.change) == (
            "member", "carol", pb.MEMBER_CHANGE_LEFT)
        assert (message.WhichOneof("event"), message.message.text) == ("message", "carol has gone")
        assert join.member.seq < leave.member.seq < message.message.seq
        assert stream.connections == 2
        assert stream.cursors.get(room.id) == message.message.seq

        alice.send(room.id, "and on")
        [live] = take_log_events(stream, 1)
        assert (live.WhichOneof("event"), live.message.text) == ("message", "and on"), "nothing twice"
    stream.close()


def test_a_member_removed_while_away_gets_an_error_for_the_room_and_the_stream_goes_on(server):
    alice, bob = user(server, "alice"), user(server, "bob")
    room, other = alice.create_room("general"), alice.create_room("other")
    bob.join_room(room.id)
    bob.join_room(other.id)
    stream = bob.events()
    with Watchdog(stream, 30):
        take_until_ready(stream)
        assert set(stream.cursors.as_dict()) == {room.id, other.id}
        stream.disconnect()
        # RemoveMember through the raw stub, as alice (the room's owner).
        alice._call(alice._chat.RemoveMember, pb.RemoveMemberRequest(room_id=room.id, user_id=bob.user.id))
        alice.send(other.id, "still here")
        # The room's error and the other room's catch-up come in either
        # order: rooms are not ordered among themselves.
        seen = []
        for event in stream:
            seen.append(event)
            kinds = {e.WhichOneof("event") for e in seen}
            if {"message", "error"} <= kinds:
                break
        errors = [e.error for e in seen if e.WhichOneof("event") == "error"]
        assert [(e.room_id, e.code) for e in errors] == [(room.id, grpc.StatusCode.PERMISSION_DENIED.value[0])]
        [message] = [e.message for e in seen if e.WhichOneof("event") == "message"]
        assert message.text == "still here"
        assert stream.cursors.as_dict() == {other.id: message.seq}, "the room is resumed no more"
    stream.close()


def test_presence_events(server):
    alice, bob = user(server, "alice"), user(server, "bob")
    room = alice.create_room("general")
    bob.join_room(room.id)
    events = Collector(bob.events())
    try:
        events.next("ready")
        alice_events = alice.events()
        alice_thread = Collector(alice_events)
        online = events.next("presence").presence
        assert (online.user.username, online.online) == ("alice", True)
        alice_thread.close()
        offline = events.next("presence").presence
        assert (offline.user.username, offline.online) == ("alice", False)
    finally:
        events.close()


def test_resume_after_disconnect_gets_missed_messages_once_in_order(server):
    alice, bob = user(server, "alice"), user(server, "bob")
    room = alice.create_room("general")
    joined = bob.join_room(room.id).last_seq  # the join's own seq
    stream = bob.events()
    with Watchdog(stream, 30):
        take_until_ready(stream)
        for i in range(1, 4):
            alice.send(room.id, f"before {i}")
        assert [m.seq for m in take_messages(stream, 3)] == [joined + i for i in range(1, 4)]

        # Drop the stream; the iterator reconnects only when pulled, so these
        # are all sent while bob is disconnected.
        stream.disconnect()
        for i in range(4, 9):
            alice.send(room.id, f"missed {i}")
        missed = take_messages(stream, 5)
        assert [(m.seq, m.text) for m in missed] == [(joined + i, f"missed {i}") for i in range(4, 9)]
        assert stream.connections == 2

        alice.send(room.id, "live 9")
        assert [(m.seq, m.text) for m in take_messages(stream, 1)] == [(joined + 9, "live 9")]
    stream.close()


def test_resume_across_a_server_restart(server):
    alice, bob = user(server, "alice"), user(server, "bob")
    room = alice.create_room("general")
    joined = bob.join_room(room.id).last_seq  # the join's own seq
    events = Collector(bob.events())
    try:
        events.next("ready")
        alice.send(room.id, "one")
        assert [m.seq for m in events.messages(1)] == [joined + 1]

        server.restart()  # same port and database; streams end with UNAVAILABLE
        for text in ("two", "three", "four"):
            alice.send(room.id, text)  # the same client: its channel reconnects
        received = events.messages(3, timeout=20)
        assert [(m.seq, m.text) for m in received] == [
            (joined + 2, "two"), (joined + 3, "three"), (joined + 4, "four")]
        assert events.stream.connections >= 2
        with pytest.raises(AssertionError):
            events.next("message", timeout=1)  # nothing twice
    finally:
        events.close()


def test_a_frozen_server_is_noticed_and_every_message_arrives_once_after_the_thaw(start_server):
    # SIGSTOP keeps the server's sockets open and silent, as a hung server or
    # a dead network would: only the heartbeat watchdog can tell.
    server = start_server("--heartbeat-interval", "1s")
    alice, bob = user(server, "alice"), user(server, "bob")
    room = alice.create_room("general")
    joined = bob.join_room(room.id).last_seq  # the join's own seq
    events = Collector(bob.events())
    try:
        events.next("ready")
        assert events.stream.heartbeat_interval == 1.0
        alice.send(room.id, "before")
        received = events.messages(1)

        # Longer than the watchdog's two intervals and a second; alice's
        # send waits for the thaw.
        os.kill(server.proc.pid, signal.SIGSTOP)
        try:
            during = threading.Thread(target=alice.send, args=(room.id, "while frozen"))
            during.start()
            time.sleep(4.5)
            stalls_while_frozen = events.stream.stalls
        finally:
            os.kill(server.proc.pid, signal.SIGCONT)
        during.join(15)
        alice.send(room.id, "after")
        received += events.messages(2, timeout=20)

        assert stalls_while_frozen >= 1, "the watchdog gave the silent stream up"
        assert events.stream.connections >= 2
        assert [(m.seq, m.text) for m in received] == [
            (joined + 1, "before"),
            (joined + 2, "while frozen"),
            (joined + 3, "after"),
        ]
        with pytest.raises(AssertionError):
            events.next("message", timeout=1)  # nothing twice
    finally:
        events.close()


def test_send_is_idempotent(server):
    alice = user(server, "alice")
    room = alice.create_room("general")
    first = alice.send(room.id, "only once", client_msg_id="fixed-id-1")
    again = alice.send(room.id, "only once", client_msg_id="fixed-id-1")
    assert (again.id, again.seq) == (first.id, first.seq)
    assert first.client_msg_id == "fixed-id-1"
    assert [m.text for m in alice.history(room.id).messages] == ["only once"]

    auto_a = alice.send(room.id, "same text")
    auto_b = alice.send(room.id, "same text")
    assert auto_a.client_msg_id != auto_b.client_msg_id
    assert (auto_a.seq, auto_b.seq) == (2, 3)


def test_calls_and_streams_outlive_the_access_token(start_server):
    server = start_server("--access-token-ttl", "3s")
    alice = user(server, "alice")
    lazy = user(server, "bob", refresh_before_expiry=False)
    room = alice.create_room("general")
    joined = lazy.join_room(room.id).last_seq  # the join's own seq
    events = Collector(lazy.events())
    try:
        events.next("ready")
        first_token = lazy.access_token
        # The server accepts a token up to 5 s (its leeway) past its 3 s
        # lifetime; streams end when it expires.
        time.sleep(9)
        raw = pb_grpc.ChatServiceStub(grpc.insecure_channel(server.address))
        with pytest.raises(grpc.RpcError) as expired:
            raw.ListRooms(pb.ListRoomsRequest(),
                          metadata=(("authorization", f"Bearer {first_token}"),), timeout=5)
        assert expired.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert expired.value.details() == "access token expired"

        # Refreshed ahead of expiry:
        assert alice.send(room.id, "still here").seq == joined + 1
        assert alice.refreshes >= 1
        # Refreshed after the server said "access token expired" (the stream
        # already did so when it was ended at expiry):
        assert [r.id for r in lazy.list_rooms() if r.joined] == [room.id]
        assert lazy.refreshes >= 1 and lazy.access_token != first_token
        # The event stream, ended at expiry, resumed with a fresh token.
        assert [m.text for m in events.messages(1)] == ["still here"]
        assert events.stream.connections >= 2
    finally:
        events.close()


def test_reactive_refresh_retries_once(start_server):
    server = start_server("--access-token-ttl", "3s")
    lazy = user(server, "bob", refresh_before_expiry=False)
    time.sleep(9)
    assert lazy.list_rooms() == []
    assert lazy.refreshes == 1


def test_resync_pages_history_for_a_large_gap(start_server):
    server = start_server("--sqlite-synchronous", "normal", *UNTHROTTLED)
    alice, bob = user(server, "alice"), user(server, "bob")
    room = alice.create_room("general")
    joined = bob.join_room(room.id).last_seq  # the join's own seq
    stream = bob.events()
    with Watchdog(stream, 120):
        take_until_ready(stream)
        alice.send(room.id, "m1")
        assert [m.seq for m in take_messages(stream, 1)] == [joined + 1]
        stream.disconnect()
        total = 1105  # more than the 1000 a resume resends
        for i in range(2, total + 1):
            alice.send(room.id, f"m{i}")
        received = take_messages(stream, total - 1)
        assert [m.seq for m in received] == list(range(joined + 2, joined + total + 1))
        assert [m.text for m in received[:2]] == ["m2", "m3"]
        assert stream.resyncs == 1
    stream.close()


def test_terminal_program(server):
    bob = user(server, "bob")
    room = bob.create_room("general")
    events = Collector(bob.events())
    events.next("ready")
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PACKAGE_DIR), env.get("PYTHONPATH")]))
    proc = subprocess.Popen(
        [sys.executable, "-m", "chat_client", "--server", server.address, "--user", "alice",
         "--password", PASSWORD, "--register", "--room", "general"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(l.rstrip("\n")) for l in proc.stdout], daemon=True).start()
    seen: list[str] = []

    def expect(wanted: str, timeout: float = 10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=0.1)
            except queue.Empty:
                continue
            seen.append(line)
            if line == wanted:
                return
        raise AssertionError(f"{wanted!r} not printed; output so far: {seen!r}")

    try:
        expect("* registered alice")
        expect("* joined #general as alice (Ctrl-D or /quit to leave)")
        expect("* bob is online")
        presence = events.next("presence").presence
        assert (presence.user.username, presence.online) == ("alice", True)

        proc.stdin.write("hello bob\n")
        proc.stdin.flush()
        got = events.next("message").message
        assert (got.sender.username, got.text, got.room_id) == ("alice", "hello bob", room.id)

        bob.send(room.id, "hi alice")
        expect("<bob> hi alice")

        proc.stdin.close()  # end of input: the program leaves
        assert proc.wait(10) == 0
        gone = events.next("presence").presence
        assert (gone.user.username, gone.online) == ("alice", False)
        assert not any(l.startswith("<alice>") for l in seen), "own lines are not echoed"
    finally:
        if proc.poll() is None:
            proc.kill()
        events.close()
