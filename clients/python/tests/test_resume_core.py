"""The resume decisions on their own, without a server: which events move a
room's cursor, and which a resumed stream skips as already seen."""

from chat_client._common import ResumeCore, Take
from chat_client import pb


def message(room_id: str, seq: int) -> pb.ServerEvent:
    return pb.ServerEvent(message=pb.Message(room_id=room_id, seq=seq))


def edited(room_id: str, seq: int, message_seq: int) -> pb.ServerEvent:
    return pb.ServerEvent(edited=pb.ServerEvent.Edited(seq=seq, message=pb.Message(room_id=room_id, seq=message_seq)))


def deleted(room_id: str, seq: int) -> pb.ServerEvent:
    return pb.ServerEvent(deleted=pb.ServerEvent.Deleted(seq=seq, room_id=room_id))


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
