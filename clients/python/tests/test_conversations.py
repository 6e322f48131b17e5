"""Conversations with the blocking ChatClient against a real chat-server:
edits, deletions, reactions, replies, threads and read markers, each call's
refusals with their exact status codes, what a second member sees live, and
resumes that bring each event of a room's log once.
"""

from __future__ import annotations

import uuid

import grpc
import pytest

from chat_client import ChatClient, ChatError, pb
from chat_client._common import event_seq
from test_client import PASSWORD, Collector, Watchdog, take_until_ready, user

NOWHERE = str(uuid.uuid4())  # an id that names nothing


def code_of(call, *args, **kwargs) -> grpc.StatusCode:
    """The status code `call(*args, **kwargs)` fails with."""
    with pytest.raises(ChatError) as failed:
        call(*args, **kwargs)
    return failed.value.code


def take_log(stream, until_seq: int) -> list[tuple[str, int]]:
    """Pulls events until the room log's event `until_seq`; returns the
    (kind, seq) of every log event pulled on the way."""
    seen = []
    for event in stream:
        in_log = event_seq(event)
        if in_log is not None:
            seen.append((event.WhichOneof("event"), in_log[1]))
            if in_log[1] >= until_seq:
                return seen
    raise AssertionError(f"the stream ended before seq {until_seq}: {seen}")


@pytest.fixture
def trio(server):
    """alice's room "general" with bob in it, and carol, who is not."""
    alice, bob, carol = user(server, "alice"), user(server, "bob"), user(server, "carol")
    room = alice.create_room("general")
    bob.join_room(room.id)
    return alice, bob, carol, room


def test_edits_and_deletions_reach_another_member_live_and_each_refusal_has_its_code(trio):
    alice, bob, carol, room = trio
    live = Collector(bob.events())
    try:
        live.next("ready")
        sent = alice.send(room.id, "hello wrold")
        edited = alice.edit_message(room.id, sent.id, "hello world")
        assert (edited.id, edited.seq, edited.text) == (sent.id, sent.seq, "hello world")
        assert edited.HasField("edited_at") and not edited.deleted
        # The same text again is accepted and makes no event.
        assert alice.edit_message(room.id, sent.id, "hello world").text == "hello world"

        assert live.next("message").message.id == sent.id
        event = live.next("edited").edited
        assert (event.seq, event.message.id, event.message.seq, event.message.text) == (
            sent.seq + 1, sent.id, sent.seq, "hello world")

        # Only the sender may edit or delete; a stranger may not even look.
        assert code_of(bob.edit_message, room.id, sent.id, "mine now") == grpc.StatusCode.PERMISSION_DENIED
        assert code_of(bob.delete_message, room.id, sent.id) == grpc.StatusCode.PERMISSION_DENIED
        assert code_of(carol.edit_message, room.id, sent.id, "hi") == grpc.StatusCode.PERMISSION_DENIED
        assert code_of(carol.delete_message, room.id, sent.id) == grpc.StatusCode.PERMISSION_DENIED
        assert code_of(alice.edit_message, room.id, NOWHERE, "hi") == grpc.StatusCode.NOT_FOUND
        assert code_of(alice.delete_message, room.id, NOWHERE) == grpc.StatusCode.NOT_FOUND
        assert code_of(alice.edit_message, NOWHERE, sent.id, "hi") == grpc.StatusCode.NOT_FOUND
        assert code_of(alice.edit_message, room.id, sent.id, " \n ") == grpc.StatusCode.INVALID_ARGUMENT
        assert code_of(alice.edit_message, room.id, "not an id", "hi") == grpc.StatusCode.INVALID_ARGUMENT

        alice.delete_message(room.id, sent.id)
        alice.delete_message(room.id, sent.id)  # again: succeeds, no event
        deleted = live.next("deleted").deleted
        assert (deleted.seq, deleted.room_id, deleted.message_id, deleted.by.username) == (
            sent.seq + 2, room.id, sent.id, "alice")
        assert code_of(alice.edit_message, room.id, sent.id, "back") == grpc.StatusCode.FAILED_PRECONDITION

        [tombstone] = alice.history(room.id).messages
        assert (tombstone.id, tombstone.deleted, tombstone.text) == (sent.id, True, "")
        assert not tombstone.HasField("edited_at")
        assert live.stream.cursors.as_dict() == {room.id: sent.seq + 2}
    finally:
        live.close()


def test_reactions_reach_another_member_live_and_each_refusal_has_its_code(trio):
    alice, bob, carol, room = trio
    live = Collector(bob.events())
    try:
        live.next("ready")
        sent = alice.send(room.id, "lunch?")
        bob.add_reaction(room.id, sent.id, "👍")
        bob.add_reaction(room.id, sent.id, "👍")  # twice: succeeds, no event
        alice.add_reaction(room.id, sent.id, "❤️")
        alice.add_reaction(room.id, sent.id, "👍")
        bob.remove_reaction(room.id, sent.id, "👍")
        bob.remove_reaction(room.id, sent.id, "🎉")  # absent: succeeds, no event

        assert live.next("message").message.id == sent.id
        seen = [live.next("reaction").reaction for _ in range(4)]
        assert [(r.seq, r.message_id, r.emoji, r.user.username, r.added) for r in seen] == [
            (sent.seq + 1, sent.id, "👍", "bob", True),
            (sent.seq + 2, sent.id, "❤️", "alice", True),
            (sent.seq + 3, sent.id, "👍", "alice", True),
            (sent.seq + 4, sent.id, "👍", "bob", False),
        ]
        assert live.stream.cursors.get(room.id) == sent.seq + 4

        # Unary answers carry the aggregates, in order of first use, and
        # whether the caller is among each emoji's reactors.
        [message] = bob.history(room.id).messages
        assert [(r.emoji, r.count, r.reacted_by_me) for r in message.reactions] == [
            ("👍", 1, False), ("❤️", 1, False)]
        [message] = alice.history(room.id).messages
        assert [(r.emoji, r.count, r.reacted_by_me) for r in message.reactions] == [
            ("👍", 1, True), ("❤️", 1, True)]

        assert code_of(bob.add_reaction, room.id, sent.id, "yes") == grpc.StatusCode.INVALID_ARGUMENT
        assert code_of(bob.add_reaction, room.id, sent.id, "👍👍") == grpc.StatusCode.INVALID_ARGUMENT
        assert code_of(bob.add_reaction, room.id, sent.id, "") == grpc.StatusCode.INVALID_ARGUMENT
        assert code_of(bob.add_reaction, room.id, NOWHERE, "👍") == grpc.StatusCode.NOT_FOUND
        assert code_of(bob.remove_reaction, room.id, NOWHERE, "👍") == grpc.StatusCode.NOT_FOUND
        assert code_of(bob.add_reaction, NOWHERE, sent.id, "👍") == grpc.StatusCode.NOT_FOUND
        assert code_of(carol.add_reaction, room.id, sent.id, "👍") == grpc.StatusCode.PERMISSION_DENIED
        assert code_of(carol.remove_reaction, room.id, sent.id, "❤️") == grpc.StatusCode.PERMISSION_DENIED

        alice.delete_message(room.id, sent.id)
        assert live.next("deleted").deleted.seq == sent.seq + 5
        assert code_of(bob.add_reaction, room.id, sent.id, "👍") == grpc.StatusCode.FAILED_PRECONDITION
        alice.remove_reaction(room.id, sent.id, "❤️")  # a tombstone has none: succeeds
        [tombstone] = alice.history(room.id).messages
        assert tombstone.deleted and list(tombstone.reactions) == []
        assert live.stream.cursors.get(room.id) == sent.seq + 5
    finally:
        live.close()


def test_a_resume_after_a_reaction_does_not_bring_it_again(trio):
    alice, bob, _, room = trio
    sent = alice.send(room.id, "vote here")
    stream = bob.events({room.id: sent.seq})
    with Watchdog(stream, 30):
        take_until_ready(stream)
        alice.add_reaction(room.id, sent.id, "👍")
        assert take_log(stream, sent.seq + 1) == [("reaction", sent.seq + 1)]
        assert stream.cursors.get(room.id) == sent.seq + 1

        # Dropped: the stream reconnects when pulled, from the reaction's seq.
        stream.disconnect()
        alice.remove_reaction(room.id, sent.id, "👍")
        after = alice.send(room.id, "results tomorrow")
        assert take_log(stream, after.seq) == [("reaction", sent.seq + 2), ("message", after.seq)]
        assert stream.connections == 2
    stream.close()

    # A new stream from the message's own seq replays both reactions, once.
    replay = bob.events({room.id: sent.seq})
    with Watchdog(replay, 30):
        assert take_log(replay, after.seq) == [
            ("reaction", sent.seq + 1), ("reaction", sent.seq + 2), ("message", after.seq)]
    replay.close()


def test_replies_and_threads_quote_count_and_arrive_live(trio):
    alice, bob, carol, room = trio
    live = Collector(alice.events())
    try:
        live.next("ready")
        root = alice.send(room.id, "who is in for friday?")
        quoted = bob.send(room.id, "me!", reply_to_id=root.id)
        assert quoted.reply_to.message_id == root.id
        assert (quoted.reply_to.sender.username, quoted.reply_to.text) == ("alice", "who is in for friday?")
        assert quoted.thread_root_id == ""

        first = bob.send(room.id, "me too", thread_root_id=root.id)
        second = alice.send(room.id, "great", thread_root_id=root.id, reply_to_id=first.id)
        assert (first.thread_root_id, second.thread_root_id) == (root.id, root.id)
        assert second.reply_to.message_id == first.id

        # Thread replies arrive as ordinary messages, carrying their root.
        arrived = live.messages(4)
        assert [(m.id, m.thread_root_id) for m in arrived] == [
            (root.id, ""), (quoted.id, ""), (first.id, root.id), (second.id, root.id)]
        # On streams a root carries no counts: the replies build them.
        assert arrived[0].thread_reply_count == 0

        # History is top-level only; the root carries the thread's counts.
        top = alice.history(room.id).messages
        assert [m.id for m in top] == [root.id, quoted.id]
        assert top[0].thread_reply_count == 2 and top[0].HasField("thread_last_reply_at")

        thread = bob.list_thread(room.id, root.id)
        assert thread.root.id == root.id and thread.root.thread_reply_count == 2
        assert [m.id for m in thread.messages] == [first.id, second.id] and not thread.has_more
        page = bob.list_thread(room.id, root.id, limit=1)
        assert [m.id for m in page.messages] == [second.id] and page.has_more
        assert [m.id for m in bob.thread_replies(room.id, root.id)] == [first.id, second.id]

        # A retried send with the same key returns the original reply.
        retried = bob.send(room.id, "me too", first.client_msg_id, thread_root_id=root.id)
        assert (retried.id, retried.seq) == (first.id, first.seq)

        elsewhere = alice.send(alice.create_room("elsewhere").id, "another room")
        for target in (NOWHERE, elsewhere.id):  # unknown, or of another room
            assert code_of(bob.send, room.id, "hm", reply_to_id=target) == grpc.StatusCode.NOT_FOUND
            assert code_of(bob.send, room.id, "hm", thread_root_id=target) == grpc.StatusCode.NOT_FOUND
            assert code_of(bob.list_thread, room.id, target) == grpc.StatusCode.NOT_FOUND
        # A thread reply cannot be a root.
        assert code_of(bob.send, room.id, "hm", thread_root_id=first.id) == grpc.StatusCode.INVALID_ARGUMENT
        assert code_of(carol.list_thread, room.id, root.id) == grpc.StatusCode.PERMISSION_DENIED
        assert code_of(carol.send, room.id, "hi", thread_root_id=root.id) == grpc.StatusCode.PERMISSION_DENIED

        # A deleted reply keeps its place and its count; its quote says so.
        bob.delete_message(room.id, first.id)
        thread = alice.list_thread(room.id, root.id)
        assert thread.root.thread_reply_count == 2
        assert [(m.id, m.deleted) for m in thread.messages] == [(first.id, True), (second.id, False)]
        assert (thread.messages[1].reply_to.deleted, thread.messages[1].reply_to.text) == (True, "")
    finally:
        live.close()


def test_mark_read_moves_forward_only_and_every_session_of_the_reader_hears_it(server):
    alice, bob, carol = user(server, "alice"), user(server, "bob"), user(server, "carol")
    room = bob.create_room("general")
    bob.send(room.id, "before alice came")
    joined = alice.join_room(room.id)
    phone = ChatClient(server.address)  # alice's second session
    phone.login("alice", PASSWORD)
    on_phone, at_bob = Collector(phone.events()), Collector(bob.events())
    try:
        on_phone.next("ready")
        at_bob.next("ready")
        sent = [bob.send(room.id, f"line {i}") for i in range(3)]
        [listed] = alice.list_rooms(joined_only=True)
        # The marker started at the room's last seq when alice joined: her
        # join, an event of the log after bob's first message.
        assert joined.last_seq > 1
        assert (listed.last_read_seq, listed.unread_count) == (joined.last_seq, 3)
        # (Collector.next passes over other kinds: take the messages first.)
        assert [m.id for m in on_phone.messages(3)] == [m.id for m in sent]

        assert alice.mark_read(room.id, sent[1].seq) == sent[1].seq
        read = on_phone.next("read", predicate=lambda e: e.read.last_read_seq == sent[1].seq).read
        assert (read.room_id, read.user.username) == (room.id, "alice")
        # Never back; clamped to the room's last seq.
        assert alice.mark_read(room.id, 1) == sent[1].seq
        assert alice.mark_read(room.id, 10_000) == sent[2].seq
        on_phone.next("read", predicate=lambda e: e.read.last_read_seq == sent[2].seq)
        # A read receipt for the other members of a small room.
        receipt = at_bob.next("read", predicate=lambda e: e.read.last_read_seq == sent[2].seq).read
        assert receipt.user.username == "alice"

        [listed] = phone.list_rooms(joined_only=True)
        assert (listed.last_read_seq, listed.unread_count) == (sent[2].seq, 0)
        # Read markers are not events of the room's log: no cursor moved.
        assert on_phone.stream.cursors.as_dict() == {room.id: sent[2].seq}

        assert code_of(carol.mark_read, room.id, 1) == grpc.StatusCode.PERMISSION_DENIED
        assert code_of(alice.mark_read, NOWHERE, 1) == grpc.StatusCode.NOT_FOUND
    finally:
        on_phone.close()
        at_bob.close()
