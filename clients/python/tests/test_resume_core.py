"""The resume decisions on their own, without a server: which events move a
room's cursor, and which a resumed stream skips as already seen."""

from chat_client._common import ResumeCore, Take, event_seq
from chat_client import pb


def message(room_id: str, seq: int, thread_root_id: str = "") -> pb.ServerEvent:
    return pb.ServerEvent(message=pb.Message(room_id=room_id, seq=seq, thread_root_id=thread_root_id))


def edited(room_id: str, seq: int, message_seq: int) -> pb.ServerEvent:
    return pb.ServerEvent(edited=pb.ServerEvent.Edited(seq=seq, message=pb.Message(room_id=room_id, seq=message_seq)))


def deleted(room_id: str, seq: int) -> pb.ServerEvent:
    return pb.ServerEvent(deleted=pb.ServerEvent.Deleted(seq=seq, room_id=room_id))


def reaction(room_id: str, seq: int, emoji: str = "👍", added: bool = True) -> pb.ServerEvent:
    return pb.ServerEvent(reaction=pb.ServerEvent.Reaction(
        seq=seq, room_id=room_id, message_id="m1", emoji=emoji, user=pb.User(id="u1", username="bob"), added=added))


def read(room_id: str, last_read_seq: int) -> pb.ServerEvent:
    return pb.ServerEvent(read=pb.ServerEvent.Read(
        room_id=room_id, user=pb.User(id="u1", username="bob"), last_read_seq=last_read_seq))


def test_edits_and_deletions_move_the_cursor_by_their_own_seq_and_repeats_are_skipped():
    core = ResumeCore({})
    assert core._take(message("a", 3)) is Take.YIELD
    assert core._take(edited("a", 5, 3)) is Take.YIELD
    assert core.cursors.get("a") == 5, "the edit's seq, not the message's"
    assert core._take(deleted("a", 6)) is Take.YIELD
    assert core.cursors.get("a") == 6
    # What a resume from an older cursor would bring again: skipped.
    assert core._take(edited("a", 5, 3)) is Take.SKIP
    assert core._take(deleted("a", 6)) is Take.SKIP
    assert core._take(message("a", 3)) is Take.SKIP
    assert core._take(message("a", 7)) is Take.YIELD


def test_reactions_move_the_cursor_by_their_own_seq_and_repeats_are_skipped():
    core = ResumeCore({"a": 2})
    assert core._take(message("a", 3)) is Take.YIELD
    assert core._take(reaction("a", 4)) is Take.YIELD
    assert core.cursors.get("a") == 4
    assert core._take(reaction("a", 5, added=False)) is Take.YIELD
    assert core.cursors.get("a") == 5
    assert core._take(reaction("a", 4)) is Take.SKIP, "a reaction is applied once"
    assert core._take(reaction("a", 5, added=False)) is Take.SKIP
    assert core._take(reaction("b", 1)) is Take.YIELD, "rooms have cursors of their own"
    assert core.cursors.as_dict() == {"a": 5, "b": 1}


def test_thread_replies_are_messages_of_the_log():
    core = ResumeCore({"a": 3})
    assert core._take(message("a", 4, thread_root_id="root")) is Take.YIELD
    assert core.cursors.get("a") == 4
    assert core._take(message("a", 4, thread_root_id="root")) is Take.SKIP


def test_read_markers_pass_through_and_move_no_cursor():
    core = ResumeCore({"a": 7})
    assert core._take(read("a", 7)) is Take.YIELD
    # The same marker again (another device's stream, a coalesced receipt)
    # is not a log event: it is not held back as a repeat either.
    assert core._take(read("a", 7)) is Take.YIELD
    assert core._take(read("c", 3)) is Take.YIELD
    assert core.cursors.as_dict() == {"a": 7}, "a marker is no room event"


def test_event_seq_is_the_events_own_position_in_the_log():
    assert event_seq(message("a", 3)) == ("a", 3)
    assert event_seq(pb.ServerEvent(sent=pb.ServerEvent.Sent(message=pb.Message(room_id="a", seq=9)))) == ("a", 9)
    assert event_seq(edited("a", 5, 3)) == ("a", 5)
    assert event_seq(deleted("a", 6)) == ("a", 6)
    assert event_seq(reaction("a", 8)) == ("a", 8)
    assert event_seq(read("a", 8)) is None
    assert event_seq(pb.ServerEvent(typing=pb.ServerEvent.Typing(room_id="a"))) is None


def member(room_id: str, seq: int, change: int = pb.MEMBER_CHANGE_JOINED) -> pb.ServerEvent:
    bob = pb.User(id="u1", username="bob")
    return pb.ServerEvent(member=pb.ServerEvent.MemberEvent(
        seq=seq, room_id=room_id, user=bob, change=change, role=pb.MEMBER_ROLE_MEMBER, by=bob))


def room_updated(room_id: str, seq: int) -> pb.ServerEvent:
    return pb.ServerEvent(room_updated=pb.ServerEvent.RoomUpdated(
        seq=seq, room=pb.Room(id=room_id, name="renamed"), by=pb.User(id="u1", username="bob")))


def test_membership_changes_and_room_updates_move_the_cursor_by_their_own_seq():
    core = ResumeCore({"a": 2})
    assert core._take(member("a", 3)) is Take.YIELD, "a join is a room event"
    assert core.cursors.get("a") == 3
    assert core._take(message("a", 4)) is Take.YIELD
    assert core._take(room_updated("a", 5)) is Take.YIELD
    assert core.cursors.get("a") == 5
    assert core._take(member("a", 6, pb.MEMBER_CHANGE_LEFT)) is Take.YIELD
    assert core.cursors.get("a") == 6
    # What a resume from an older cursor would bring again: skipped.
    assert core._take(member("a", 3)) is Take.SKIP
    assert core._take(room_updated("a", 5)) is Take.SKIP
    assert core._take(member("a", 6, pb.MEMBER_CHANGE_LEFT)) is Take.SKIP


def test_an_invitation_is_no_room_event():
    core = ResumeCore({"a": 4})
    invited = pb.ServerEvent(invited=pb.ServerEvent.Invited(
        room=pb.Room(id="b", name="secret", last_seq=9), by=pb.User(id="u1", username="bob")))
    assert event_seq(invited) is None
    assert core._take(invited) is Take.YIELD
    assert core._take(invited) is Take.YIELD, "not held back as a repeat"
    assert core.cursors.as_dict() == {"a": 4}, "no cursor for a room one is not in"


def test_event_seq_of_membership_and_room_events():
    assert event_seq(member("a", 3)) == ("a", 3)
    assert event_seq(member("a", 4, pb.MEMBER_CHANGE_BANNED)) == ("a", 4)
    assert event_seq(room_updated("a", 7)) == ("a", 7)


def test_an_error_about_a_room_one_may_no_longer_read_drops_its_cursor():
    core = ResumeCore({"a": 4, "b": 2})
    denied = pb.ServerEvent(error=pb.ServerEvent.Error(code=7, message="not a member", room_id="a"))
    assert core._take(denied) is Take.YIELD
    assert core.cursors.as_dict() == {"b": 2}, "later resumes leave the room out"
    other = pb.ServerEvent(error=pb.ServerEvent.Error(code=8, message="slow down", room_id="b"))
    assert core._take(other) is Take.YIELD
    assert core.cursors.as_dict() == {"b": 2}
