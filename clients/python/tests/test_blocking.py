"""Blocking with the blocking ChatClient against a real chat-server: what a
blocked user can no longer do to the blocker (PERMISSION_DENIED "you cannot
message this user"), the typing and presence the blocker's streams no
longer get, users who block the caller left out of search, and the
refusals of each call.
"""

from __future__ import annotations

import queue
import time

import grpc
import pytest

from chat_client import ChatError, pb
from test_client import Collector, user

REFUSED = (grpc.StatusCode.PERMISSION_DENIED, "you cannot message this user")


def refusal_of(call, *args, **kwargs) -> tuple[grpc.StatusCode, str]:
    """The status code and message `call(*args, **kwargs)` fails with."""
    with pytest.raises(ChatError) as failed:
        call(*args, **kwargs)
    return failed.value.code, failed.value.details


def pull_until(live: Collector, last, timeout: float = 10.0) -> list[pb.ServerEvent]:
    """Every event a Collector gets up to the first one `last(event)` is
    true of (included), none passed over."""
    pulled = []
    deadline = time.monotonic() + timeout
    while True:
        try:
            event = live.events.get(timeout=max(deadline - time.monotonic(), 0.01))
        except queue.Empty:
            raise AssertionError(f"not within {timeout}s, after {pulled}") from None
        pulled.append(event)
        if last(event):
            return pulled


def of(kind: str, username: str):
    """Whether an event is a `kind` event (typing, presence) about `username`."""
    return lambda e: e.WhichOneof("event") == kind and getattr(e, kind).user.username == username


def from_user(events, username: str) -> list[str]:
    """The kinds of the typing and presence events among `events` about `username`."""
    return [e.WhichOneof("event") for e in events
            if e.WhichOneof("event") in ("typing", "presence")
            and getattr(e, e.WhichOneof("event")).user.username == username]


def test_a_blocked_user_can_neither_open_nor_write_in_a_direct_room_nor_invite_the_blocker(server):
    alice, bob, carol = user(server, "alice"), user(server, "bob"), user(server, "carol")
    direct = bob.open_direct_room("alice")
    group = bob.create_room("general")
    assert alice.list_blocked_users() == []

    alice.block_user("bob")
    alice.block_user("bob")  # twice: no error
    alice.block_user("carol")
    assert [u.username for u in alice.list_blocked_users()] == ["bob", "carol"]
    assert bob.list_blocked_users() == [], "a block is one-way"

    assert refusal_of(bob.send, direct.id, "hello?") == REFUSED
    assert refusal_of(carol.open_direct_room, "alice") == REFUSED
    assert refusal_of(bob.invite_to_room, group.id, "alice") == REFUSED
    # Messages in shared group rooms still arrive.
    alice.join_room(group.id)
    assert bob.send(group.id, "still here").text == "still here"
    assert [m.text for m in alice.history(group.id).messages] == ["still here"]

    assert refusal_of(alice.block_user, "nobody")[0] == grpc.StatusCode.NOT_FOUND
    assert refusal_of(alice.unblock_user, "nobody")[0] == grpc.StatusCode.NOT_FOUND
    assert refusal_of(alice.block_user, "alice")[0] == grpc.StatusCode.INVALID_ARGUMENT

    alice.unblock_user("bob")
    alice.unblock_user("bob")  # not blocked: no error
    assert [u.username for u in alice.list_blocked_users()] == ["carol"]
    assert bob.send(direct.id, "hello again").room_id == direct.id
    assert refusal_of(carol.open_direct_room, "alice") == REFUSED


def test_the_blockers_streams_get_no_typing_or_presence_from_the_blocked(server):
    alice, bob, carol = user(server, "alice"), user(server, "bob"), user(server, "carol")
    room = alice.create_room("general")
    bob.join_room(room.id)
    carol.join_room(room.id)
    alice.block_user("bob")
    at_alice = Collector(alice.events())
    at_bob = at_carol = None
    try:
        at_alice.next("ready")
        # bob first each time: were any of his to arrive, it would come
        # before carol's.
        at_bob = Collector(bob.events())
        at_bob.next("ready")
        bob.send_typing(room.id)
        carol.send_typing(room.id)
        pulled = pull_until(at_alice, of("typing", "carol"))
        assert pulled[-1].typing.room_id == room.id
        assert from_user(pulled, "bob") == [], "neither bob's presence nor his typing"
        # One-way: bob hears alice.
        alice.send_typing(room.id)
        typing = at_bob.next("typing", predicate=lambda e: e.typing.user.username == "alice").typing
        assert typing.room_id == room.id

        at_bob.close()  # bob goes offline
        at_bob = None
        at_carol = Collector(carol.events())
        pulled = pull_until(at_alice, of("presence", "carol"))
        assert pulled[-1].presence.online
        assert from_user(pulled, "bob") == []

        # Messages in a shared group room still arrive.
        sent = bob.send(room.id, "still here")
        pulled = pull_until(at_alice, lambda e: e.WhichOneof("event") == "message")
        assert pulled[-1].message.id == sent.id
        assert from_user(pulled, "bob") == []
    finally:
        for live in (at_alice, at_bob, at_carol):
            if live is not None:
                live.close()


def test_search_leaves_out_users_who_blocked_the_caller(server):
    alice, albert = user(server, "alice"), user(server, "albert")
    assert [u.username for u in alice.search_users("al")] == ["albert", "alice"]

    albert.block_user("alice")
    assert [u.username for u in alice.search_users("al")] == ["alice"]
    assert [u.username for u in albert.search_users("al")] == ["albert", "alice"], "one-way"

    albert.unblock_user("alice")
    assert [u.username for u in alice.search_users("al")] == ["albert", "alice"]
