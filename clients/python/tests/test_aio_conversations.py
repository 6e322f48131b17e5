"""Conversations with AsyncChatClient against a real chat-server: the same
specification as test_conversations.py, for asyncio. Every call, each
refusal's exact status code, what a second member's stream sees live, and a
resume that brings each event of a room's log once.
"""

from __future__ import annotations

import asyncio
import uuid

import grpc
import pytest

from chat_client import AsyncChatClient, ChatError, pb
from chat_client._common import event_seq
from test_aio import PASSWORD, collect, connect, take_until_ready  # noqa: F401 - connect is a fixture

pytestmark = pytest.mark.asyncio

NOWHERE = str(uuid.uuid4())  # an id that names nothing


async def code_of(call, *args, **kwargs) -> grpc.StatusCode:
    """The status code `await call(*args, **kwargs)` fails with."""
    with pytest.raises(ChatError) as failed:
        await call(*args, **kwargs)
    return failed.value.code


async def take_log(stream, until_seq: int) -> list[tuple[str, int]]:
    """Pulls events until the room log's event `until_seq`; returns the
    (kind, seq) of every log event pulled on the way."""
    seen = []
    async for event in stream:
        in_log = event_seq(event)
        if in_log is not None:
            seen.append((event.WhichOneof("event"), in_log[1]))
            if in_log[1] >= until_seq:
                return seen
    raise AssertionError(f"the stream ended before seq {until_seq}: {seen}")


async def trio(server, connect) -> tuple[AsyncChatClient, AsyncChatClient, AsyncChatClient, pb.Room]:
    """alice's room "general" with bob in it, and carol, who is not."""
    alice, bob, carol = [await connect(server, name) for name in ("alice", "bob", "carol")]
    room = await alice.create_room("general")
    await bob.join_room(room.id)
    return alice, bob, carol, room


async def test_edits_and_deletions_reach_another_member_live_and_each_refusal_has_its_code(server, connect):
    alice, bob, carol, room = await trio(server, connect)
    live = await collect(bob)
    try:
        await live.next("ready")
        sent = await alice.send(room.id, "hello wrold")
        edited = await alice.edit_message(room.id, sent.id, "hello world")
        assert (edited.id, edited.seq, edited.text) == (sent.id, sent.seq, "hello world")
        assert edited.HasField("edited_at")
        await alice.edit_message(room.id, sent.id, "hello world")  # same text: no event

        assert (await live.next("message")).message.id == sent.id
        event = (await live.next("edited")).edited
        assert (event.seq, event.message.id, event.message.text) == (sent.seq + 1, sent.id, "hello world")

        assert await code_of(bob.edit_message, room.id, sent.id, "mine") == grpc.StatusCode.PERMISSION_DENIED
        assert await code_of(bob.delete_message, room.id, sent.id) == grpc.StatusCode.PERMISSION_DENIED
        assert await code_of(carol.delete_message, room.id, sent.id) == grpc.StatusCode.PERMISSION_DENIED
        assert await code_of(alice.edit_message, room.id, NOWHERE, "hi") == grpc.StatusCode.NOT_FOUND
        assert await code_of(alice.delete_message, room.id, NOWHERE) == grpc.StatusCode.NOT_FOUND
        assert await code_of(alice.edit_message, room.id, sent.id, "") == grpc.StatusCode.INVALID_ARGUMENT

        await alice.delete_message(room.id, sent.id)
        await alice.delete_message(room.id, sent.id)  # again: no event
        deleted = (await live.next("deleted")).deleted
        assert (deleted.seq, deleted.message_id, deleted.by.username) == (sent.seq + 2, sent.id, "alice")
        assert await code_of(alice.edit_message, room.id, sent.id, "back") == grpc.StatusCode.FAILED_PRECONDITION
        [tombstone] = (await bob.history(room.id)).messages
        assert (tombstone.deleted, tombstone.text) == (True, "")
        assert live.stream.cursors.as_dict() == {room.id: sent.seq + 2}
    finally:
        await live.close()


async def test_reactions_reach_another_member_live_and_each_refusal_has_its_code(server, connect):
    alice, bob, carol, room = await trio(server, connect)
    live = await collect(bob)
    try:
        await live.next("ready")
        sent = await alice.send(room.id, "lunch?")
        await bob.add_reaction(room.id, sent.id, "👍")
        await bob.add_reaction(room.id, sent.id, "👍")  # twice: no event
        await alice.add_reaction(room.id, sent.id, "🎉")
        await bob.remove_reaction(room.id, sent.id, "👍")
        await bob.remove_reaction(room.id, sent.id, "👍")  # absent: no event

        assert (await live.next("message")).message.id == sent.id
        seen = [(await live.next("reaction")).reaction for _ in range(3)]
        assert [(r.seq, r.message_id, r.emoji, r.user.username, r.added) for r in seen] == [
            (sent.seq + 1, sent.id, "👍", "bob", True),
            (sent.seq + 2, sent.id, "🎉", "alice", True),
            (sent.seq + 3, sent.id, "👍", "bob", False),
        ]
        [message] = (await alice.history(room.id)).messages
        assert [(r.emoji, r.count, r.reacted_by_me) for r in message.reactions] == [("🎉", 1, True)]

        assert await code_of(bob.add_reaction, room.id, sent.id, "ok") == grpc.StatusCode.INVALID_ARGUMENT
        assert await code_of(bob.add_reaction, room.id, NOWHERE, "👍") == grpc.StatusCode.NOT_FOUND
        assert await code_of(carol.add_reaction, room.id, sent.id, "👍") == grpc.StatusCode.PERMISSION_DENIED
        await alice.delete_message(room.id, sent.id)
        assert await code_of(bob.add_reaction, room.id, sent.id, "👍") == grpc.StatusCode.FAILED_PRECONDITION
        await alice.remove_reaction(room.id, sent.id, "🎉")  # a tombstone has none: succeeds
        assert (await live.next("deleted")).deleted.seq == sent.seq + 4
        assert live.stream.cursors.get(room.id) == sent.seq + 4
    finally:
        await live.close()


async def test_a_resume_after_a_reaction_does_not_bring_it_again(server, connect):
    alice, bob, _, room = await trio(server, connect)
    sent = await alice.send(room.id, "vote here")
    stream = await bob.events({room.id: sent.seq})
    async with asyncio.timeout(30):
        await take_until_ready(stream)
        await alice.add_reaction(room.id, sent.id, "👍")
        assert await take_log(stream, sent.seq + 1) == [("reaction", sent.seq + 1)]

        stream.disconnect()  # it reconnects when pulled, from the reaction's seq
        await alice.remove_reaction(room.id, sent.id, "👍")
        after = await alice.send(room.id, "results tomorrow")
        assert await take_log(stream, after.seq) == [("reaction", sent.seq + 2), ("message", after.seq)]
        assert stream.connections == 2
    await stream.aclose()


async def test_replies_and_threads_quote_count_and_arrive_live(server, connect):
    alice, bob, carol, room = await trio(server, connect)
    live = await collect(alice)
    try:
        await live.next("ready")
        root = await alice.send(room.id, "who is in for friday?")
        quoted = await bob.send(room.id, "me!", reply_to_id=root.id)
        assert (quoted.reply_to.message_id, quoted.reply_to.text) == (root.id, "who is in for friday?")
        reply = await bob.send(room.id, "me too", thread_root_id=root.id)
        assert reply.thread_root_id == root.id

        arrived = await live.messages(3)
        assert [(m.id, m.thread_root_id) for m in arrived] == [
            (root.id, ""), (quoted.id, ""), (reply.id, root.id)]

        assert [m.id for m in (await alice.history(room.id)).messages] == [root.id, quoted.id]
        thread = await bob.list_thread(room.id, root.id)
        assert (thread.root.id, thread.root.thread_reply_count) == (root.id, 1)
        assert [m.id for m in thread.messages] == [reply.id] and not thread.has_more
        assert [m.id for m in await alice.thread_replies(room.id, root.id)] == [reply.id]

        assert await code_of(bob.send, room.id, "hm", reply_to_id=NOWHERE) == grpc.StatusCode.NOT_FOUND
        assert await code_of(bob.send, room.id, "hm", thread_root_id=NOWHERE) == grpc.StatusCode.NOT_FOUND
        assert await code_of(bob.send, room.id, "hm", thread_root_id=reply.id) == grpc.StatusCode.INVALID_ARGUMENT
        assert await code_of(bob.list_thread, room.id, NOWHERE) == grpc.StatusCode.NOT_FOUND
        assert await code_of(carol.list_thread, room.id, root.id) == grpc.StatusCode.PERMISSION_DENIED
    finally:
        await live.close()


async def test_mark_read_moves_forward_only_and_every_session_of_the_reader_hears_it(server, connect):
    alice, bob, carol, room = await trio(server, connect)
    phone = await connect(server)  # bob's second session
    await phone.login("bob", PASSWORD)
    on_phone = await collect(phone)
    try:
        await on_phone.next("ready")
        sent = [await alice.send(room.id, f"line {i}") for i in range(3)]
        # (Collector.next passes over other kinds: take the messages first.)
        assert [m.id for m in await on_phone.messages(3)] == [m.id for m in sent]
        assert await bob.mark_read(room.id, sent[1].seq) == sent[1].seq
        read = (await on_phone.next("read", predicate=lambda e: e.read.last_read_seq == sent[1].seq)).read
        assert (read.room_id, read.user.username) == (room.id, "bob")
        assert await bob.mark_read(room.id, 0) == sent[1].seq  # never back
        assert await bob.mark_read(room.id, 10_000) == sent[2].seq  # clamped
        await on_phone.next("read", predicate=lambda e: e.read.last_read_seq == sent[2].seq)
        [listed] = await phone.list_rooms(joined_only=True)
        assert (listed.last_read_seq, listed.unread_count) == (sent[2].seq, 0)
        assert on_phone.stream.cursors.as_dict() == {room.id: sent[2].seq}, "a marker moves no cursor"

        assert await code_of(carol.mark_read, room.id, 1) == grpc.StatusCode.PERMISSION_DENIED
        assert await code_of(bob.mark_read, NOWHERE, 1) == grpc.StatusCode.NOT_FOUND
    finally:
        await on_phone.close()
