// Text from the server made safe to print on a terminal.
//
// Message text, usernames, display names and room names come from other
// people. Printed raw, an ESC sequence in them could move the cursor,
// recolour or clear the screen, retitle the window or rewrite lines already
// shown; a bare CR could overwrite the start of a line, BEL could ring, and
// a bidi control (RLO and the like) could make text read differently from
// what it is. The server refuses control characters in new messages and in
// names, but older messages and accounts, or another server, may still
// carry them.

// C0 controls but tab (U+0009) and newline (U+000A), DEL, C1 controls, and
// the Unicode bidirectional controls: ALM (U+061C), LRM/RLM (U+200E/U+200F),
// LRE/RLE/PDF/LRO/RLO (U+202A-U+202E), LRI/RLI/FSI/PDI (U+2066-U+2069).
const UNSAFE = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

/**
 * `text` with every control and bidi-control character but newline and tab
 * replaced by a visible, inert escape: "\x1b[2J" prints as `\x1b[2J`, RLO as
 * `\u202e`. Everything else is unchanged.
 */
export function escapeControls(text: string): string {
  return text.replace(UNSAFE, (c) => {
    const code = c.charCodeAt(0);
    return code <= 0xff ? `\\x${code.toString(16).padStart(2, "0")}` : `\\u${code.toString(16).padStart(4, "0")}`;
  });
}
