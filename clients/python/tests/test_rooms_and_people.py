"""Rooms and people with the blocking ChatClient against a real chat-server:
room settings, invitations, members a page at a time, roles, removals and
bans, display names and user search; each call's refusals with their exact
status codes, and the `room_updated`, `invited`, `member` and `profile`
events other streams see.
"""

from __future__ import annotations

import grpc

from chat_client import pb
from test_client import Collector, user
from test_conversations import NOWHERE, code_of


def names(members) -> list[tuple[str, int]]:
    return [(m.user.username, m.role) for m in members]


def test_a_room_is_created_with_a_topic_and_its_settings_change_for_admins_only(server):
    alice, bob, carol = user(server, "alice"), user(server, "bob"), user(server, "carol")
    room = alice.create_room("general", topic="all things", visibility=pb.ROOM_VISIBILITY_PUBLIC)
    assert (room.topic, room.visibility, room.my_role, room.member_count) == (
        "all things", pb.ROOM_VISIBILITY_PUBLIC, pb.MEMBER_ROLE_OWNER, 1)
    assert alice.create_room("plain").visibility == pb.ROOM_VISIBILITY_PUBLIC, "public by default"
    bob.join_room(room.id)
    live = Collector(bob.events())
    try:
        live.next("ready")
        updated = alice.update_room(room.id, topic="lunch plans", visibility=pb.ROOM_VISIBILITY_PRIVATE)
        assert (updated.id, updated.name, updated.topic, updated.visibility) == (
            room.id, "general", "lunch plans", pb.ROOM_VISIBILITY_PRIVATE)

        event = live.next("room_updated").room_updated
        assert (event.room.id, event.room.topic, event.room.visibility, event.room.member_count) == (
            room.id, "lunch plans", pb.ROOM_VISIBILITY_PRIVATE, 2)
        assert event.by.username == "alice"
        assert event.room.my_role == pb.MEMBER_ROLE_UNSPECIFIED, "per-viewer fields are unset"
        assert live.stream.cursors.get(room.id) == event.seq, "a room event moves the cursor"

        # Only what is given changes; an empty topic clears it.
        renamed = alice.update_room(room.id, name="lunch")
        assert (renamed.name, renamed.topic, renamed.visibility) == (
            "lunch", "lunch plans", pb.ROOM_VISIBILITY_PRIVATE)
        assert live.next("room_updated").room_updated.room.name == "lunch"
        assert alice.update_room(room.id, topic="").topic == ""

        # Members and strangers may not; the server's rules are checked.
        assert code_of(bob.update_room, room.id, topic="mine") == grpc.StatusCode.PERMISSION_DENIED
        assert code_of(carol.update_room, room.id, topic="mine") == grpc.StatusCode.PERMISSION_DENIED
        assert code_of(alice.update_room, room.id, name="PLAIN") == grpc.StatusCode.ALREADY_EXISTS
        assert code_of(alice.update_room, room.id, topic="x" * 513) == grpc.StatusCode.INVALID_ARGUMENT
        assert code_of(alice.update_room, NOWHERE, topic="x") == grpc.StatusCode.NOT_FOUND
        assert alice.find_room("lunch").topic == ""
    finally:
        live.close()


def test_an_invitation_reaches_the_invitee_who_joins_or_declines_it(server):
    alice, bob, carol = user(server, "alice"), user(server, "bob"), user(server, "carol")
    room = alice.create_room("secret", visibility=pb.ROOM_VISIBILITY_PRIVATE)
    assert bob.list_rooms() == [], "a private room is listed to its members and invitees only"
    at_alice, at_bob = Collector(alice.events()), Collector(bob.events())
    try:
        at_alice.next("ready")
        at_bob.next("ready")
        alice.invite_to_room(room.id, "bob")

        invited = at_bob.next("invited").invited
        assert (invited.room.id, invited.room.name, invited.by.username) == (room.id, "secret", "alice")
        assert at_bob.stream.cursors.get(room.id) is None, "an invitation is no event of the room's log"
        member = at_alice.next("member").member
        assert (member.room_id, member.user.username, member.change, member.by.username) == (
            room.id, "bob", pb.MEMBER_CHANGE_INVITED, "alice")
        [listed] = bob.list_rooms()
        assert (listed.id, listed.joined, listed.invited) == (room.id, False, True)

        # Refusals: a stranger may not join; a plain member of a private
        # room may not invite; members and unknown users are no invitees.
        assert code_of(carol.join_room, room.id) == grpc.StatusCode.PERMISSION_DENIED
        assert code_of(alice.invite_to_room, room.id, "alice") == grpc.StatusCode.FAILED_PRECONDITION
        assert code_of(alice.invite_to_room, room.id, "nobody") == grpc.StatusCode.NOT_FOUND
        assert code_of(alice.invite_to_room, NOWHERE, "carol") == grpc.StatusCode.NOT_FOUND

        joined = bob.join_room(room.id)  # accepts
        assert (joined.joined, joined.invited, joined.member_count, joined.my_role) == (
            True, False, 2, pb.MEMBER_ROLE_MEMBER)
        member = at_alice.next("member").member
        assert (member.user.username, member.change, member.role) == (
            "bob", pb.MEMBER_CHANGE_JOINED, pb.MEMBER_ROLE_MEMBER)
        assert code_of(bob.invite_to_room, room.id, "carol") == grpc.StatusCode.PERMISSION_DENIED
        assert code_of(alice.invite_to_room, room.id, "bob") == grpc.StatusCode.FAILED_PRECONDITION

        alice.invite_to_room(room.id, "carol")
        assert [r.invited for r in carol.list_rooms()] == [True]
        carol.leave_room(room.id)  # declines
        assert carol.list_rooms() == []
    finally:
        at_alice.close()
        at_bob.close()


def test_roles_removals_and_bans_are_member_events_with_their_refusals(server):
    alice, bob, carol, dave = (user(server, name) for name in ("alice", "bob", "carol", "dave"))
    room = alice.create_room("general")
    for member in (bob, carol, dave):
        member.join_room(room.id)
    at_dave = Collector(dave.events())
    try:
        at_dave.next("ready")
        alice.set_member_role(room.id, bob.user.id, pb.MEMBER_ROLE_ADMIN)
        promoted = at_dave.next("member").member
        assert (promoted.user.username, promoted.change, promoted.role, promoted.by.username) == (
            "bob", pb.MEMBER_CHANGE_ROLE_CHANGED, pb.MEMBER_ROLE_ADMIN, "alice")
        assert at_dave.stream.cursors.get(room.id) == promoted.seq
        # Owner first, then admins, then members, each by when they joined.
        assert names(alice.list_members(room.id)) == [
            ("alice", pb.MEMBER_ROLE_OWNER), ("bob", pb.MEMBER_ROLE_ADMIN),
            ("carol", pb.MEMBER_ROLE_MEMBER), ("dave", pb.MEMBER_ROLE_MEMBER)]

        # Roles are the owner's; nobody removes the owner, an admin no admin.
        assert code_of(carol.set_member_role, room.id, dave.user.id, pb.MEMBER_ROLE_ADMIN) == (
            grpc.StatusCode.PERMISSION_DENIED)
        assert code_of(bob.set_member_role, room.id, dave.user.id, pb.MEMBER_ROLE_ADMIN) == (
            grpc.StatusCode.PERMISSION_DENIED)
        assert code_of(alice.set_member_role, room.id, alice.user.id, pb.MEMBER_ROLE_MEMBER) == (
            grpc.StatusCode.FAILED_PRECONDITION)
        assert code_of(alice.set_member_role, room.id, dave.user.id, pb.MEMBER_ROLE_UNSPECIFIED) == (
            grpc.StatusCode.INVALID_ARGUMENT)
        assert code_of(bob.remove_member, room.id, alice.user.id) == grpc.StatusCode.PERMISSION_DENIED
        assert code_of(carol.remove_member, room.id, dave.user.id) == grpc.StatusCode.PERMISSION_DENIED
        assert code_of(alice.remove_member, room.id, "not an id") == grpc.StatusCode.INVALID_ARGUMENT

        # An admin bans a member, who hears it with the reason.
        bob.remove_member(room.id, dave.user.id, ban=True, reason="spam")
        banned = at_dave.next("member").member
        assert (banned.user.username, banned.change, banned.by.username, banned.reason) == (
            "dave", pb.MEMBER_CHANGE_BANNED, "bob", "spam")
        assert banned.role == pb.MEMBER_ROLE_UNSPECIFIED
        assert code_of(dave.join_room, room.id) == grpc.StatusCode.PERMISSION_DENIED
        assert code_of(dave.history, room.id) == grpc.StatusCode.PERMISSION_DENIED
        assert code_of(carol.invite_to_room, room.id, "dave") == grpc.StatusCode.FAILED_PRECONDITION

        # Unbanned, dave may come back; lifting a ban twice succeeds.
        assert code_of(carol.unban_member, room.id, dave.user.id) == grpc.StatusCode.PERMISSION_DENIED
        bob.unban_member(room.id, dave.user.id)
        bob.unban_member(room.id, dave.user.id)
        assert dave.join_room(room.id).joined

        # A plain removal; the owner hands the room over.
        alice.remove_member(room.id, carol.user.id)
        assert code_of(carol.history, room.id) == grpc.StatusCode.PERMISSION_DENIED
        assert carol.join_room(room.id).joined, "removed, not banned"
        alice.set_member_role(room.id, bob.user.id, pb.MEMBER_ROLE_OWNER)
        assert names(alice.list_members(room.id))[:2] == [
            ("bob", pb.MEMBER_ROLE_OWNER), ("alice", pb.MEMBER_ROLE_ADMIN)]
    finally:
        at_dave.close()


def test_list_members_follows_every_page_and_refuses_a_forged_token(server):
    alice, carol = user(server, "alice"), user(server, "carol")
    room = alice.create_room("general")
    joined = ["alice"]
    for i in range(4):
        member = user(server, f"user{i}")
        member.join_room(room.id)
        joined.append(f"user{i}")
    live = Collector(alice.events())  # alice online, the others not
    try:
        live.next("ready")
        first = alice.list_members_page(room.id, page_size=2)
        assert [m.user.username for m in first.members] == ["alice", "user0"]
        assert first.next_page_token
        second = alice.list_members_page(room.id, page_size=2, page_token=first.next_page_token)
        assert [m.user.username for m in second.members] == ["user1", "user2"]

        # Three pages of two, every member once, in order.
        members = alice.list_members(room.id, page_size=2)
        assert [m.user.username for m in members] == joined
        assert [m.online for m in members] == [True, False, False, False, False]
        assert all(m.HasField("joined_at") for m in members)
        assert [m.user.username for m in alice.list_members(room.id)] == joined  # one page of 100
        assert [m.user.username for m in alice.iter_members(room.id, page_size=1)] == joined
        last = alice.list_members_page(room.id, page_size=5)
        assert len(last.members) == 5 and last.next_page_token == ""

        assert code_of(alice.list_members_page, room.id, page_token="not a token") == (
            grpc.StatusCode.INVALID_ARGUMENT)
        assert code_of(carol.list_members, room.id) == grpc.StatusCode.PERMISSION_DENIED
        assert code_of(alice.list_members, NOWHERE) == grpc.StatusCode.NOT_FOUND
    finally:
        live.close()


def test_a_display_name_reaches_who_shares_a_room_and_search_finds_it(server):
    alice, bob = user(server, "alice"), user(server, "bob")
    user(server, "Alex_9")
    room = alice.create_room("general")
    bob.join_room(room.id)
    at_bob, at_alice = Collector(bob.events()), Collector(alice.events())
    try:
        at_bob.next("ready")
        at_alice.next("ready")
        me = alice.update_profile(display_name="  Ａlice Liddell ")
        assert (me.username, me.display_name) == ("alice", "Alice Liddell"), "normalised"
        assert alice.user.display_name == "Alice Liddell"
        for stream in (at_bob, at_alice):  # who shares a room, and one's own streams
            changed = stream.next("profile").profile.user
            assert (changed.id, changed.display_name) == (me.id, "Alice Liddell")
        assert alice.send(room.id, "hello").sender.display_name == "Alice Liddell"

        assert alice.update_profile().display_name == "Alice Liddell", "None changes nothing"
        assert code_of(alice.update_profile, display_name="x" * 65) == grpc.StatusCode.INVALID_ARGUMENT
        assert code_of(alice.update_profile, display_name="bell\a") == grpc.StatusCode.INVALID_ARGUMENT
        bob.update_profile(display_name="Albert Bob")

        # By username, regardless of case; bob by his display name.
        assert [u.username for u in alice.search_users("AL")] == ["Alex_9", "alice", "bob"]
        assert [u.username for u in alice.search_users("liddell")] == []
        assert [u.username for u in bob.search_users("albert")] == ["bob"]
        assert [u.username for u in bob.search_users("al", limit=1)] == ["Alex_9"]
        assert alice.search_users("nobody") == []
        assert code_of(alice.search_users, "") == grpc.StatusCode.INVALID_ARGUMENT
        assert code_of(alice.search_users, "z" * 33) == grpc.StatusCode.INVALID_ARGUMENT

        assert alice.update_profile(display_name="").display_name == "", "empty clears it"
        assert [u.display_name for u in bob.search_users("alice")] == [""]
    finally:
        at_bob.close()
        at_alice.close()


def test_an_update_sets_only_what_is_given():
    from chat_client._common import update_profile_request, update_room_request

    request = update_room_request("r", None, "", None)
    assert [f.name for f, _ in request.ListFields()] == ["room_id", "topic"], "an empty topic clears it"
    assert request.topic == "" and not request.HasField("name") and not request.HasField("visibility")
    request = update_room_request("r", "lunch", None, pb.ROOM_VISIBILITY_PRIVATE)
    assert (request.HasField("name"), request.HasField("topic"), request.HasField("visibility")) == (
        True, False, True)
    assert update_profile_request("").HasField("display_name"), "an empty name clears it"
    assert not update_profile_request(None).HasField("display_name"), "None changes nothing"
