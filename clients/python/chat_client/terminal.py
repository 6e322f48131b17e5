"""Text from the server made safe to print on a terminal.

Message text, usernames and room names come from other people. Printed raw,
an ESC sequence in them could move the cursor, recolour or clear the screen,
retitle the window or rewrite lines already shown; a bare CR could overwrite
the start of a line with something else, BEL could ring, and a bidi control
(RLO and the like) could make text read differently from what it is. The
server refuses control characters in new messages and in names, but older
messages and accounts, or another server, may still carry them.

`escape` shows each such character as a visible, inert escape (`\\x1b`,
`\\u202e`) and leaves everything else, newline and tab included, as it is.
"""

from __future__ import annotations

import re

__all__ = ["escape"]

# C0 controls but tab (U+0009) and newline (U+000A), DEL, C1 controls, and
# the Unicode bidirectional controls: ALM (U+061C), LRM/RLM (U+200E/U+200F),
# LRE/RLE/PDF/LRO/RLO (U+202A-U+202E), LRI/RLI/FSI/PDI (U+2066-U+2069).
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _visible(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def escape(text: str) -> str:
    """`text` with every control and bidi-control character but newline and
    tab replaced by a visible escape: "\\x1b[2J" prints as `\\x1b[2J`."""
    return _UNSAFE.sub(_visible, text)
