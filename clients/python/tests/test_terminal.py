"""escape(): what the terminal program prints of server text (no server needed)."""

from __future__ import annotations

from chat_client import escape, pb
from chat_client.__main__ import show_event


def test_an_esc_sequence_prints_as_visible_text():
    # Clear the screen, then move home: shown, not done.
    assert escape("\x1b[2J\x1b[Hgotcha") == "\\x1b[2J\\x1b[Hgotcha"
    # An OSC sequence that would retitle the window, ended by BEL.
    assert escape("\x1b]0;pwned\x07") == "\\x1b]0;pwned\\x07"


def test_bel_nul_cr_del_and_c1_controls_are_escaped():
    assert escape("ring\x07") == "ring\\x07"
    assert escape("nul\x00byte") == "nul\\x00byte"
    # A bare CR would let the rest overwrite what came before on the line.
    assert escape("innocent\rEVIL") == "innocent\\x0dEVIL"
    assert escape("del\x7f") == "del\\x7f"
    assert escape("csi\x9b31m next\x85line") == "csi\\x9b31m next\\x85line"
    assert escape("\x01\x08\x0b\x0c\x1f") == "\\x01\\x08\\x0b\\x0c\\x1f"


def test_bidi_controls_are_escaped():
    # RLO would show "exe.txt" for "txt.exe".
    assert escape("invoice\u202etxt.exe") == "invoice\\u202etxt.exe"
    bidi = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
    assert escape(bidi) == (
        "\\u061c\\u200e\\u200f\\u202a\\u202b\\u202c\\u202d\\u202e\\u2066\\u2067\\u2068\\u2069"
    )


def test_newline_tab_and_ordinary_text_are_unchanged():
    for text in ("line one\nline two", "a\tb", "héllo 👋", "日本語 عربي", "C:\\path \\x1b", ""):
        assert escape(text) == text
    # Escaped output holds no control character at all: nothing left to act.
    escaped = escape("".join(map(chr, range(0x00, 0xA0))))
    assert not any(ord(c) < 0x20 and c not in "\n\t" or 0x7F <= ord(c) <= 0x9F for c in escaped)


def test_the_terminal_program_escapes_messages_names_and_errors():
    sender = pb.User(id="u2", username="bob\x1b[31m")
    message = pb.ServerEvent(message=pb.Message(room_id="r1", seq=1, sender=sender,
                                                text="hi\r\x1b[2Kalice: send me your password\u202e"))
    assert show_event(message, "r1", "u1") == [
        "<bob\\x1b[31m> hi\\x0d\\x1b[2Kalice: send me your password\\u202e"]
    presence = pb.ServerEvent(presence=pb.ServerEvent.Presence(user=sender, online=True))
    assert show_event(presence, "r1", "u1") == ["* bob\\x1b[31m is online"]
    ready = pb.ServerEvent(ready=pb.ServerEvent.Ready(online_users=[pb.User(username="eve\x07")]))
    assert show_event(ready, "r1", "u1") == ["* eve\\x07 is online"]
    error = pb.ServerEvent(error=pb.ServerEvent.Error(code=3, message="bad \x1b]0;x\x07"))
    assert show_event(error, "r1", "u1") == ["! bad \\x1b]0;x\\x07"]
    multiline = pb.ServerEvent(message=pb.Message(room_id="r1", sender=sender, text="a\n\tb"))
    assert show_event(multiline, "r1", "u1") == ["<bob\\x1b[31m> a\n\tb"]


def test_edits_deletions_reactions_and_thread_replies_of_others_print_one_line_each():
    bob = pb.User(id="u-bob", username="bob\x1b")
    def lines(**event):
        return show_event(pb.ServerEvent(**event), "r1", "u-me")

    edited = pb.ServerEvent.Edited(seq=3, message=pb.Message(room_id="r1", sender=bob, text="fixed"))
    assert lines(edited=edited) == ["<bob\\x1b> fixed (edited)"]
    deleted = pb.ServerEvent.Deleted(seq=4, room_id="r1", message_id="m1", by=bob)
    assert lines(deleted=deleted) == ["* bob\\x1b deleted a message"]
    reaction = pb.ServerEvent.Reaction(seq=5, room_id="r1", emoji="👍", user=bob, added=False)
    assert lines(reaction=reaction) == ["* bob\\x1b took back 👍"]
    reply = pb.Message(room_id="r1", sender=bob, text="me too", thread_root_id="m1")
    assert lines(message=reply) == ["<bob\\x1b> (in a thread) me too"]
    # Another room's, or one's own, print nothing.
    assert lines(reaction=pb.ServerEvent.Reaction(room_id="r2", user=bob)) == []
    assert lines(reaction=pb.ServerEvent.Reaction(room_id="r1", user=pb.User(id="u-me"))) == []
