"""AsyncChatClient against a real chat-server process (conftest.py starts it).

The same specification as test_client.py, for asyncio: calls, idempotent
sends, live events between two async clients, resume after a dropped stream
and a restarted server, the heartbeat watchdog against a frozen server,
token refresh, errors, concurrency, and closing.
"""

from __future__ import annotations

import asyncio
import os
import signal

import grpc
import grpc.aio
import pytest
import pytest_asyncio

from chat_client import AsyncChatClient, ChatClient, ChatError, pb

pytestmark = pytest.mark.asyncio

PASSWORD = "correct horse battery"
# The server's send rate (10 a second, bursts of 20) lifted, for the tests
# that send more than a resume resends.
UNTHROTTLED = ("--send-rate", "100000", "--send-burst", "100000")


@pytest_asyncio.fixture
async def connect():
    """A factory: `await connect(server, "alice")` -> a logged-in
    AsyncChatClient (registered first); with no name, not logged in. Every
    client made is closed after the test."""
    made: list[AsyncChatClient] = []

    async def make(server, name: str | None = None, **options) -> AsyncChatClient:
        client = AsyncChatClient(server.address, **options)
        made.append(client)
        if name is not None:
            await client.register(name, PASSWORD)
            await client.login(name, PASSWORD)
        return client

    yield make
    for client in made:
        await client.close()


class Collector:
    """Drains an event stream in a task, so tests can wait with a timeout."""

    def __init__(self, stream):
        self.stream = stream
        self.events: asyncio.Queue = asyncio.Queue()
        self.error: BaseException | None = None
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        try:
            async for event in self.stream:
                self.events.put_nowait(event)
        except Exception as error:  # noqa: BLE001 - reported by the test
            self.error = error

    async def next(self, kind: str, timeout: float = 10.0, predicate=lambda e: True) -> pb.ServerEvent:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            try:
                event = await asyncio.wait_for(self.events.get(), max(deadline - loop.time(), 0.01))
            except TimeoutError:
                raise AssertionError(f"no {kind} event within {timeout}s (error: {self.error!r})") from None
            if event.WhichOneof("event") == kind and predicate(event):
                return event

    async def messages(self, count: int, timeout: float = 10.0) -> list[pb.Message]:
        return [(await self.next("message", timeout)).message for _ in range(count)]

    async def nothing_more(self, seconds: float = 1.0) -> None:
        with pytest.raises(AssertionError):
            await self.next("message", timeout=seconds)

    async def close(self) -> None:
        await self.stream.aclose()
        await asyncio.wait_for(self.task, 5)


async def collect(client: AsyncChatClient, cursors=None) -> Collector:
    """A started event stream (its starting point fixed) drained by a task."""
    return Collector(await client.events(cursors))


async def take_messages(stream, count: int) -> list[pb.Message]:
    """Pulls `count` message events from the stream in this task."""
    messages = []
    async for event in stream:
        if event.WhichOneof("event") == "message":
            messages.append(event.message)
            if len(messages) == count:
                return messages
    raise AssertionError(f"the stream ended after {len(messages)} of {count} messages")


async def take_until_ready(stream) -> pb.ServerEvent:
    async for event in stream:
        if event.WhichOneof("event") == "ready":
            return event
    raise AssertionError("the stream ended before ready")


async def test_register_login_logout_and_async_with_closing_the_channel(server, connect):
    client = await connect(server)
    registered = await client.register("alice", PASSWORD)
    assert registered.username == "alice" and registered.id
    logged_in = await client.login("alice", PASSWORD)
    assert logged_in.id == registered.id
    assert client.user.id == registered.id and client.session_id and client.access_token

    with pytest.raises(ChatError) as wrong:
        await (await connect(server)).login("alice", "not the password")
    assert (wrong.value.code, wrong.value.details) == (
        grpc.StatusCode.UNAUTHENTICATED, "invalid username or password")
    with pytest.raises(ChatError) as taken:
        await client.register("ALICE", PASSWORD)
    assert taken.value.code == grpc.StatusCode.ALREADY_EXISTS
    with pytest.raises(ChatError) as anonymous:
        await (await connect(server)).list_rooms()
    assert anonymous.value.code == grpc.StatusCode.UNAUTHENTICATED

    await client.logout()
    assert client.access_token is None
    with pytest.raises(ChatError) as gone:
        await client.list_rooms()
    assert gone.value.code == grpc.StatusCode.UNAUTHENTICATED

    async with AsyncChatClient(server.address) as scoped:
        assert (await scoped.login("alice", PASSWORD)).id == registered.id
        assert await scoped.list_rooms() == []
    with pytest.raises(grpc.aio.UsageError):
        await scoped.list_rooms()  # the channel is closed


async def test_rooms_every_page_direct_rooms_and_leaving(server, connect):
    alice, bob = await connect(server, "alice"), await connect(server, "bob")
    created = [await alice.create_room(f"room-{i}") for i in range(5)]
    assert [r.name for r in created] == [f"room-{i}" for i in range(5)]
    assert all(r.joined and r.kind == pb.ROOM_KIND_GROUP for r in created)
    for room in created[1::2]:
        assert (await bob.join_room(room.id)).joined
    direct = await alice.open_direct_room("bob")
    assert direct.kind == pb.ROOM_KIND_DIRECT
    assert (await bob.open_direct_room("alice")).id == direct.id

    # Three pages of two for alice: every room once, in order of creation.
    listed = await alice.list_rooms(page_size=2)
    assert [r.id for r in listed] == [r.id for r in created] + [direct.id]
    mine = [r async for r in bob.iter_rooms(page_size=1, joined_only=True)]
    assert [r.id for r in mine] == [created[1].id, created[3].id, direct.id]
    assert (await bob.find_room("room-4")).id == created[4].id
    assert await bob.find_room("no-such-room") is None

    await bob.leave_room(created[1].id)
    assert [r.id for r in await bob.list_rooms(joined_only=True)] == [created[3].id, direct.id]
    with pytest.raises(ChatError) as direct_leave:
        await bob.leave_room(direct.id)
    assert direct_leave.value.code == grpc.StatusCode.FAILED_PRECONDITION
    with pytest.raises(ChatError) as missing:
        await alice.open_direct_room("nobody")
    assert missing.value.code == grpc.StatusCode.NOT_FOUND


async def test_send_history_and_an_idempotent_resend_returns_the_original(server, connect):
    alice = await connect(server, "alice")
    room, other = await alice.create_room("general"), await alice.create_room("other")
    sent = [await alice.send(room.id, f"line {i}") for i in range(1, 4)]
    assert [(m.seq, m.text, m.sender.username) for m in sent] == [
        (1, "line 1", "alice"), (2, "line 2", "alice"), (3, "line 3", "alice")]

    page = await alice.history(room.id)
    assert [m.text for m in page.messages] == ["line 1", "line 2", "line 3"] and not page.has_more
    older = await alice.history(room.id, before_seq=3, limit=1)
    assert [m.seq for m in older.messages] == [2] and older.has_more
    assert [m.seq for m in await alice.messages_between(room.id, 1, 0)] == [2, 3]

    first = await alice.send(room.id, "only once", client_msg_id="fixed-id-1")
    again = await alice.send(room.id, "only once", client_msg_id="fixed-id-1")
    assert (again.id, again.seq, again.client_msg_id) == (first.id, 4, "fixed-id-1")
    assert [m.text for m in (await alice.history(room.id)).messages].count("only once") == 1
    with pytest.raises(ChatError) as elsewhere:
        await alice.send(other.id, "only once", client_msg_id="fixed-id-1")
    assert elsewhere.value.code == grpc.StatusCode.ALREADY_EXISTS

    auto_a, auto_b = await alice.send(room.id, "same"), await alice.send(room.id, "same")
    assert auto_a.client_msg_id != auto_b.client_msg_id
    assert (auto_a.seq, auto_b.seq) == (5, 6)


async def test_live_events_flow_between_two_async_clients(server, connect):
    alice, bob = await connect(server, "alice"), await connect(server, "bob")
    room = await alice.create_room("general")
    # Bob's join is an event of the room's log: messages come after it.
    joined = (await bob.join_room(room.id)).last_seq
    assert joined >= 1
    bob_events = await collect(bob)
    alice_events = None
    try:
        ready = (await bob_events.next("ready")).ready
        assert ready.user.username == "bob"
        alice_events = await collect(alice)
        await alice_events.next("ready")
        online = (await bob_events.next("presence")).presence
        assert (online.user.username, online.online) == ("alice", True)
        assert sorted(u.username for u in await bob.list_online_users(room.id)) == ["alice", "bob"]

        for i in range(1, 4):
            await alice.send(room.id, f"line {i}")
        first_three = [(joined + i, f"line {i}", "alice") for i in range(1, 4)]
        assert [(m.seq, m.text, m.sender.username) for m in await bob_events.messages(3)] == first_three
        # Subscribe delivers one's own messages too.
        assert [(m.seq, m.text, m.sender.username) for m in await alice_events.messages(3)] == first_three

        await bob.send_typing(room.id)
        typing = (await alice_events.next("typing")).typing
        assert (typing.room_id, typing.user.username) == (room.id, "bob")
        await bob.send(room.id, "hi alice")
        assert [(m.seq, m.text, m.sender.username) for m in await alice_events.messages(1)] == [
            (joined + 4, "hi alice", "bob")]
        assert [m.seq for m in await bob_events.messages(1)] == [joined + 4]
        assert bob_events.stream.cursors.as_dict() == {room.id: joined + 4}
        await bob_events.nothing_more()
    finally:
        await bob_events.close()
        if alice_events is not None:
            await alice_events.close()


async def test_resume_after_a_dropped_stream_yields_the_missed_messages_once_in_order(server, connect):
    alice, bob = await connect(server, "alice"), await connect(server, "bob")
    room = await alice.create_room("general")
    joined = (await bob.join_room(room.id)).last_seq  # the join's own seq
    stream = await bob.events()
    async with asyncio.timeout(30):
        await take_until_ready(stream)
        for i in range(1, 4):
            await alice.send(room.id, f"before {i}")
        assert [m.seq for m in await take_messages(stream, 3)] == [joined + i for i in range(1, 4)]

        # Drop the stream; it reconnects only when pulled, so these are all
        # sent while bob is disconnected.
        stream.disconnect()
        for i in range(4, 9):
            await alice.send(room.id, f"missed {i}")
        missed = await take_messages(stream, 5)
        assert [(m.seq, m.text) for m in missed] == [(joined + i, f"missed {i}") for i in range(4, 9)]
        assert stream.connections == 2

        await alice.send(room.id, "live 9")
        assert [(m.seq, m.text) for m in await take_messages(stream, 1)] == [(joined + 9, "live 9")]
    await stream.aclose()


async def test_resume_across_a_server_restart_loses_and_repeats_nothing(server, connect):
    alice, bob = await connect(server, "alice"), await connect(server, "bob")
    room = await alice.create_room("general")
    joined = (await bob.join_room(room.id)).last_seq  # the join's own seq
    stream = await bob.events()
    async with asyncio.timeout(60):
        await take_until_ready(stream)
        await alice.send(room.id, "one")
        assert [m.seq for m in await take_messages(stream, 1)] == [joined + 1]

        # Same port and database; the stream ends with UNAVAILABLE. It is
        # not pulled meanwhile, so these are all sent before it resumes: only
        # its cursors bring them.
        await asyncio.to_thread(server.restart)
        for text in ("two", "three", "four"):
            await alice.send(room.id, text)  # the same client: its channel reconnects
        received = await take_messages(stream, 3)
        assert [(m.seq, m.text) for m in received] == [
            (joined + 2, "two"), (joined + 3, "three"), (joined + 4, "four")]
        assert stream.connections >= 2

        await alice.send(room.id, "five")
        assert [(m.seq, m.text) for m in await take_messages(stream, 1)] == [(joined + 5, "five")]
    await stream.aclose()


async def test_a_frozen_server_is_noticed_and_every_message_arrives_once_after_the_thaw(
    start_server, connect
):
    # SIGSTOP keeps the server's sockets open and silent, as a hung server or
    # a dead network would: only the heartbeat watchdog can tell.
    server = start_server("--heartbeat-interval", "1s")
    alice, bob = await connect(server, "alice"), await connect(server, "bob")
    room = await alice.create_room("general")
    joined = (await bob.join_room(room.id)).last_seq  # the join's own seq
    events = await collect(bob)
    try:
        await events.next("ready")
        assert events.stream.heartbeat_interval == 1.0
        await alice.send(room.id, "before")
        received = await events.messages(1)
        assert events.stream.stalls == 0

        # Longer than the watchdog's two intervals and a second; alice's
        # send waits for the thaw.
        os.kill(server.proc.pid, signal.SIGSTOP)
        try:
            during = asyncio.create_task(alice.send(room.id, "while frozen"))
            await asyncio.sleep(4.5)
            stalls_while_frozen = events.stream.stalls
        finally:
            os.kill(server.proc.pid, signal.SIGCONT)
        await asyncio.wait_for(during, 15)
        await alice.send(room.id, "after")
        received += await events.messages(2, timeout=20)

        assert stalls_while_frozen >= 1, "the watchdog gave the silent stream up"
        assert events.stream.connections >= 2
        assert [(m.seq, m.text) for m in received] == [
            (joined + 1, "before"), (joined + 2, "while frozen"), (joined + 3, "after")]
        await events.nothing_more()
    finally:
        await events.close()


async def test_a_resync_is_filled_from_history_in_seq_order(start_server, connect):
    server = start_server("--sqlite-synchronous", "normal", *UNTHROTTLED)
    alice, bob = await connect(server, "alice"), await connect(server, "bob")
    room = await alice.create_room("general")
    joined = (await bob.join_room(room.id)).last_seq  # the join's own seq
    stream = await bob.events()
    async with asyncio.timeout(120):
        await take_until_ready(stream)
        await alice.send(room.id, "m1")
        assert [m.seq for m in await take_messages(stream, 1)] == [joined + 1]
        stream.disconnect()
        total = 1105  # more than the 1000 a resume resends
        texts = [f"m{i}" for i in range(2, total + 1)]
        for start in range(0, len(texts), 50):
            await asyncio.gather(*(alice.send(room.id, t) for t in texts[start:start + 50]))
        received = await take_messages(stream, total - 1)
        assert [m.seq for m in received] == list(range(joined + 2, joined + total + 1))
        assert sorted(m.text for m in received) == sorted(texts)
        assert stream.resyncs == 1
    await stream.aclose()


async def test_errors_are_the_blocking_clients_chat_errors_with_their_status_codes(server, connect):
    alice, bob = await connect(server, "alice"), await connect(server, "bob")
    room = await alice.create_room("general")
    blocking = ChatClient(server.address)
    try:
        blocking.login("bob", PASSWORD)
        cases = [
            (grpc.StatusCode.UNAUTHENTICATED, "login", ("bob", "not the password")),
            (grpc.StatusCode.PERMISSION_DENIED, "change_password", ("not the password", "a new secret")),
            (grpc.StatusCode.PERMISSION_DENIED, "send", (room.id, "not a member")),
            (grpc.StatusCode.NOT_FOUND, "open_direct_room", ("nobody",)),
            (grpc.StatusCode.ALREADY_EXISTS, "create_room", ("general",)),
            (grpc.StatusCode.INVALID_ARGUMENT, "create_room", ("",)),
        ]
        for code, method, args in cases:
            with pytest.raises(ChatError) as from_async:
                await getattr(bob, method)(*args)
            with pytest.raises(ChatError) as from_blocking:
                getattr(blocking, method)(*args)
            assert from_async.value.code == code, (method, from_async.value)
            assert (from_async.value.code, from_async.value.details) == (
                from_blocking.value.code, from_blocking.value.details), method
            assert from_async.value.details, method
    finally:
        blocking.close()

    # A stream whose session is revoked ends with the same error, for good.
    phone = await connect(server)
    await phone.login("alice", PASSWORD)
    events = await collect(phone)
    try:
        await events.next("ready")
        assert await alice.revoke_other_sessions() == 1
        await asyncio.wait_for(events.task, 10)
        assert isinstance(events.error, ChatError)
        assert events.error.code == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(ChatError) as refused:
            await phone.list_rooms()
        assert refused.value.code == grpc.StatusCode.UNAUTHENTICATED
    finally:
        await events.close()


async def test_calls_and_streams_outlive_the_access_token(start_server, connect):
    server = start_server("--access-token-ttl", "3s")
    alice = await connect(server, "alice")
    lazy = await connect(server, "bob", refresh_before_expiry=False)
    room = await alice.create_room("general")
    joined = (await lazy.join_room(room.id)).last_seq  # the join's own seq
    events = await collect(lazy)
    try:
        await events.next("ready")
        first_token = lazy.access_token
        # The server accepts a token up to 5 s (its leeway) past its 3 s
        # lifetime; streams end when it expires.
        await asyncio.sleep(9)
        # Refreshed ahead of expiry:
        assert (await alice.send(room.id, "still here")).seq == joined + 1
        assert alice.refreshes >= 1
        # Refreshed after the server said "access token expired":
        assert [r.id for r in await lazy.list_rooms(joined_only=True)] == [room.id]
        assert lazy.refreshes >= 1 and lazy.access_token != first_token
        # The event stream, ended at expiry, resumed with a fresh token.
        assert [m.text for m in await events.messages(1)] == ["still here"]
        assert events.stream.connections >= 2
    finally:
        await events.close()


async def test_concurrent_calls_with_an_expired_token_refresh_it_once(start_server, connect):
    # A refresh token works once and a spent one revokes the session: ten
    # calls finding the same token expired must refresh it only once.
    server = start_server("--access-token-ttl", "3s")
    lazy = await connect(server, "bob", refresh_before_expiry=False)
    await asyncio.sleep(9)
    answers = await asyncio.gather(*(lazy.list_rooms() for _ in range(10)))
    assert answers == [[]] * 10
    assert lazy.refreshes == 1


async def test_twenty_concurrent_sends_from_one_client_all_land_once(server, connect):
    alice, bob = await connect(server, "alice"), await connect(server, "bob")
    room = await alice.create_room("general")
    joined = (await bob.join_room(room.id)).last_seq  # the join's own seq
    events = await collect(bob)
    try:
        await events.next("ready")
        texts = [f"n{i}" for i in range(20)]
        sent = await asyncio.gather(*(alice.send(room.id, t) for t in texts))
        assert [m.text for m in sent] == texts
        assert sorted(m.seq for m in sent) == list(range(joined + 1, joined + 21))
        assert len({m.id for m in sent}) == 20

        stored = (await alice.history(room.id, limit=100)).messages
        assert [m.seq for m in stored] == list(range(joined + 1, joined + 21))
        assert sorted(m.text for m in stored) == sorted(texts)
        received = await events.messages(20)
        assert [(m.seq, m.id) for m in received] == [(m.seq, m.id) for m in stored]
        await events.nothing_more()

        # The same key sent five times at once is stored once.
        again = await asyncio.gather(
            *(alice.send(room.id, "once", client_msg_id="concurrent-1") for _ in range(5)))
        assert {(m.id, m.seq) for m in again} == {(again[0].id, joined + 21)}
        assert [m.seq for m in await events.messages(1)] == [joined + 21]
        await events.nothing_more()
    finally:
        await events.close()


async def test_closing_or_cancelling_a_stream_ends_it_on_the_server_too(server, connect):
    alice, bob = await connect(server, "alice"), await connect(server, "bob")
    room = await alice.create_room("general")
    await bob.join_room(room.id)
    watcher = await collect(alice)

    async def presence_of_bob(online: bool) -> None:
        event = await watcher.next(
            "presence", predicate=lambda e: e.presence.user.username == "bob")
        assert event.presence.online is online

    try:
        await watcher.next("ready")

        # The iterating task cancelled: CancelledError there, the call ended.
        consumer = asyncio.create_task(take_messages(bob.events(), 1))
        await presence_of_bob(True)
        consumer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await consumer
        await presence_of_bob(False)

        # aclose() from another task: the iteration just ends.
        stream = await bob.events()
        reader = asyncio.create_task(take_messages(stream, 1))
        await presence_of_bob(True)
        await stream.aclose()
        with pytest.raises(AssertionError, match="ended after 0 of 1"):
            await asyncio.wait_for(reader, 5)
        await presence_of_bob(False)

        # Leaving `async with` closes the client's streams and its channel.
        async with AsyncChatClient(server.address) as scoped:
            await scoped.login("bob", PASSWORD)
            reader = asyncio.create_task(take_messages(scoped.events(), 1))
            await presence_of_bob(True)
        with pytest.raises(AssertionError, match="ended after 0 of 1"):
            await asyncio.wait_for(reader, 5)
        await presence_of_bob(False)
    finally:
        await watcher.close()
