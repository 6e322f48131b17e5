"""Blocking with AsyncChatClient against a real chat-server: the same
specification as test_blocking.py, for asyncio.
"""

from __future__ import annotations

import asyncio

import grpc
import pytest

from chat_client import ChatError, pb
from test_aio import collect, connect  # noqa: F401 - connect is a fixture

pytestmark = pytest.mark.asyncio

REFUSED = (grpc.StatusCode.PERMISSION_DENIED, "you cannot message this user")


async def refusal_of(call, *args, **kwargs) -> tuple[grpc.StatusCode, str]:
    """The status code and message `await call(*args, **kwargs)` fails with."""
    with pytest.raises(ChatError) as failed:
        await call(*args, **kwargs)
    return failed.value.code, failed.value.details


async def pull_until(live, last, timeout: float = 10.0) -> list[pb.ServerEvent]:
    """Every event a Collector gets up to the first one `last(event)` is
    true of (included), none passed over."""
    pulled = []
    async with asyncio.timeout(timeout):
        while True:
            pulled.append(await live.events.get())
            if last(pulled[-1]):
                return pulled


def about(events, username: str) -> list[str]:
    """The kinds of the typing and presence events among `events` about `username`."""
    return [e.WhichOneof("event") for e in events
            if e.WhichOneof("event") in ("typing", "presence")
            and getattr(e, e.WhichOneof("event")).user.username == username]


async def test_a_blocked_user_can_neither_open_nor_write_in_a_direct_room_nor_invite_the_blocker(
    server, connect
):
    alice, bob, carol = [await connect(server, name) for name in ("alice", "bob", "carol")]
    direct = await bob.open_direct_room("alice")
    group = await bob.create_room("general")

    await alice.block_user("bob")
    await alice.block_user("bob")  # twice: no error
    await alice.block_user("carol")
    assert [u.username for u in await alice.list_blocked_users()] == ["bob", "carol"]

    assert await refusal_of(bob.send, direct.id, "hello?") == REFUSED
    assert await refusal_of(carol.open_direct_room, "alice") == REFUSED
    assert await refusal_of(bob.invite_to_room, group.id, "alice") == REFUSED
    assert (await refusal_of(alice.block_user, "nobody"))[0] == grpc.StatusCode.NOT_FOUND
    assert (await refusal_of(alice.block_user, "alice"))[0] == grpc.StatusCode.INVALID_ARGUMENT

    await alice.unblock_user("bob")
    await alice.unblock_user("bob")  # not blocked: no error
    assert [u.username for u in await alice.list_blocked_users()] == ["carol"]
    assert (await bob.send(direct.id, "hello again")).room_id == direct.id


async def test_the_blockers_streams_get_no_typing_or_presence_from_the_blocked(server, connect):
    alice, bob, carol = [await connect(server, name) for name in ("alice", "bob", "carol")]
    room = await alice.create_room("general")
    await bob.join_room(room.id)
    await carol.join_room(room.id)
    await alice.block_user("bob")
    at_alice = await collect(alice)
    at_bob = None
    try:
        await at_alice.next("ready")
        # bob first: were any of his to arrive, it would come before carol's.
        at_bob = await collect(bob)
        await at_bob.next("ready")
        await bob.send_typing(room.id)
        await carol.send_typing(room.id)
        pulled = await pull_until(
            at_alice, lambda e: e.WhichOneof("event") == "typing" and e.typing.user.username == "carol")
        assert about(pulled, "bob") == [], "neither bob's presence nor his typing"

        sent = await bob.send(room.id, "group messages still arrive")
        pulled = await pull_until(at_alice, lambda e: e.WhichOneof("event") == "message")
        assert pulled[-1].message.id == sent.id
    finally:
        await at_alice.close()
        if at_bob is not None:
            await at_bob.close()


async def test_search_leaves_out_users_who_blocked_the_caller(server, connect):
    alice, albert = await connect(server, "alice"), await connect(server, "albert")
    await albert.block_user("alice")
    assert [u.username for u in await alice.search_users("al")] == ["alice"]
    assert [u.username for u in await albert.search_users("al")] == ["albert", "alice"]
    await albert.unblock_user("alice")
    assert [u.username for u in await alice.search_users("al")] == ["albert", "alice"]
