"""Rooms and people with AsyncChatClient against a real chat-server: the
same specification as test_rooms_and_people.py, for asyncio. Each call,
each main refusal's exact status code, and the `room_updated`, `invited`,
`member` and `profile` events a second member's stream sees.
"""

from __future__ import annotations

import grpc
import pytest

from chat_client import pb
from test_aio import collect, connect  # noqa: F401 - connect is a fixture
from test_aio_conversations import NOWHERE, code_of

pytestmark = pytest.mark.asyncio


async def test_room_settings_change_for_admins_only_and_members_see_room_updated(server, connect):
    alice, bob = await connect(server, "alice"), await connect(server, "bob")
    room = await alice.create_room("general", topic="all things")
    assert (room.topic, room.visibility, room.my_role) == (
        "all things", pb.ROOM_VISIBILITY_PUBLIC, pb.MEMBER_ROLE_OWNER)
    await bob.join_room(room.id)
    live = await collect(bob)
    try:
        await live.next("ready")
        updated = await alice.update_room(room.id, topic="lunch plans", visibility=pb.ROOM_VISIBILITY_PRIVATE)
        assert (updated.name, updated.topic, updated.visibility) == (
            "general", "lunch plans", pb.ROOM_VISIBILITY_PRIVATE)
        event = (await live.next("room_updated")).room_updated
        assert (event.room.id, event.room.topic, event.by.username) == (room.id, "lunch plans", "alice")
        assert live.stream.cursors.get(room.id) == event.seq

        assert await code_of(bob.update_room, room.id, topic="mine") == grpc.StatusCode.PERMISSION_DENIED
        assert await code_of(alice.update_room, room.id, topic="x" * 513) == grpc.StatusCode.INVALID_ARGUMENT
        assert await code_of(alice.update_room, NOWHERE, name="x") == grpc.StatusCode.NOT_FOUND
    finally:
        await live.close()


async def test_an_invitation_reaches_the_invitee_who_joins_it(server, connect):
    alice, bob, carol = [await connect(server, name) for name in ("alice", "bob", "carol")]
    room = await alice.create_room("secret", visibility=pb.ROOM_VISIBILITY_PRIVATE)
    at_alice, at_bob = await collect(alice), await collect(bob)
    try:
        await at_alice.next("ready")
        await at_bob.next("ready")
        await alice.invite_to_room(room.id, "bob")
        invited = (await at_bob.next("invited")).invited
        assert (invited.room.id, invited.by.username) == (room.id, "alice")
        member = (await at_alice.next("member")).member
        assert (member.user.username, member.change) == ("bob", pb.MEMBER_CHANGE_INVITED)
        assert [(r.id, r.joined, r.invited) for r in await bob.list_rooms()] == [(room.id, False, True)]

        assert await code_of(carol.join_room, room.id) == grpc.StatusCode.PERMISSION_DENIED
        assert await code_of(alice.invite_to_room, room.id, "alice") == grpc.StatusCode.FAILED_PRECONDITION
        assert await code_of(alice.invite_to_room, room.id, "nobody") == grpc.StatusCode.NOT_FOUND

        assert (await bob.join_room(room.id)).member_count == 2
        member = (await at_alice.next("member")).member
        assert (member.user.username, member.change) == ("bob", pb.MEMBER_CHANGE_JOINED)
        assert await code_of(bob.invite_to_room, room.id, "carol") == grpc.StatusCode.PERMISSION_DENIED
    finally:
        await at_alice.close()
        await at_bob.close()


async def test_roles_removals_bans_and_members_a_page_at_a_time(server, connect):
    alice, bob, carol, dave = [await connect(server, name) for name in ("alice", "bob", "carol", "dave")]
    room = await alice.create_room("general")
    for member in (bob, carol, dave):
        await member.join_room(room.id)
    at_dave = await collect(dave)
    try:
        await at_dave.next("ready")
        await alice.set_member_role(room.id, carol.user.id, pb.MEMBER_ROLE_ADMIN)
        promoted = (await at_dave.next("member")).member
        assert (promoted.user.username, promoted.change, promoted.role) == (
            "carol", pb.MEMBER_CHANGE_ROLE_CHANGED, pb.MEMBER_ROLE_ADMIN)

        # Two pages of two: the owner, admins, members, each by when they joined.
        first = await alice.list_members_page(room.id, page_size=2)
        assert [m.user.username for m in first.members] == ["alice", "carol"] and first.next_page_token
        members = await alice.list_members(room.id, page_size=2)
        assert [(m.user.username, m.role) for m in members] == [
            ("alice", pb.MEMBER_ROLE_OWNER), ("carol", pb.MEMBER_ROLE_ADMIN),
            ("bob", pb.MEMBER_ROLE_MEMBER), ("dave", pb.MEMBER_ROLE_MEMBER)]
        assert [m.user.username async for m in alice.iter_members(room.id, page_size=1)] == [
            m.user.username for m in members]
        assert await code_of(alice.list_members_page, room.id, page_token="not a token") == (
            grpc.StatusCode.INVALID_ARGUMENT)

        assert await code_of(bob.set_member_role, room.id, dave.user.id, pb.MEMBER_ROLE_ADMIN) == (
            grpc.StatusCode.PERMISSION_DENIED)
        assert await code_of(carol.remove_member, room.id, alice.user.id) == grpc.StatusCode.PERMISSION_DENIED

        await carol.remove_member(room.id, dave.user.id, ban=True, reason="spam")
        banned = (await at_dave.next("member")).member
        assert (banned.user.username, banned.change, banned.by.username, banned.reason) == (
            "dave", pb.MEMBER_CHANGE_BANNED, "carol", "spam")
        assert await code_of(dave.join_room, room.id) == grpc.StatusCode.PERMISSION_DENIED
        assert await code_of(dave.list_members, room.id) == grpc.StatusCode.PERMISSION_DENIED
        await carol.unban_member(room.id, dave.user.id)
        assert (await dave.join_room(room.id)).joined
    finally:
        await at_dave.close()


async def test_a_display_name_reaches_who_shares_a_room_and_search_finds_it(server, connect):
    alice, bob = await connect(server, "alice"), await connect(server, "bob")
    room = await alice.create_room("general")
    await bob.join_room(room.id)
    at_bob = await collect(bob)
    try:
        await at_bob.next("ready")
        me = await alice.update_profile(display_name="Alice Liddell")
        assert (me.username, me.display_name, alice.user.display_name) == (
            "alice", "Alice Liddell", "Alice Liddell")
        changed = (await at_bob.next("profile")).profile.user
        assert (changed.id, changed.display_name) == (me.id, "Alice Liddell")
        assert (await alice.update_profile()).display_name == "Alice Liddell"
        assert await code_of(alice.update_profile, display_name="x" * 65) == grpc.StatusCode.INVALID_ARGUMENT

        assert [u.username for u in await bob.search_users("ALI")] == ["alice"]
        assert [u.username for u in await bob.search_users("a", limit=1)] == ["alice"]
        assert await bob.search_users("nobody") == []
        assert await code_of(bob.search_users, "") == grpc.StatusCode.INVALID_ARGUMENT
    finally:
        await at_bob.close()
