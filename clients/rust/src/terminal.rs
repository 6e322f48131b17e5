//! Text from the server made safe to print on a terminal.
//!
//! Message text, usernames and room names come from other people. Printed
//! raw, an ESC sequence in them could move the cursor, recolour or clear the
//! screen, retitle the window or rewrite lines already shown; a bare CR could
//! overwrite the start of a line, BEL could ring, and a bidi control (RLO and
//! the like) could make text read differently from what it is. The server
//! refuses control characters in new messages and in names, but older
//! messages and accounts, or another server, may still carry them.

use std::borrow::Cow;
use std::fmt::Write as _;

/// Whether printing `c` could act on a terminal or reorder what is shown:
/// the C0 controls but tab and newline, DEL, the C1 controls, and the
/// Unicode bidirectional controls (ALM U+061C, LRM/RLM U+200E/U+200F,
/// LRE..RLO U+202A-U+202E, LRI..PDI U+2066-U+2069).
fn is_unsafe(c: char) -> bool {
    (c.is_control() && c != '\n' && c != '\t')
        || matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `text` with every control and bidi-control character but newline and tab
/// replaced by a visible, inert escape: ESC prints as `\x1b`, RLO as
/// `\u202e`. Everything else is unchanged (and not copied).
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_unsafe) {
        return Cow::Borrowed(text);
    }
    let mut escaped = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if !is_unsafe(c) {
            escaped.push(c);
        } else if u32::from(c) <= 0xff {
            let _ = write!(escaped, "\\x{:02x}", u32::from(c));
        } else {
            let _ = write!(escaped, "\\u{:04x}", u32::from(c));
        }
    }
    Cow::Owned(escaped)
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn an_esc_sequence_prints_as_visible_text() {
        // Clear the screen, then move home: shown, not done.
        assert_eq!(escape("\x1b[2J\x1b[Hgotcha"), "\\x1b[2J\\x1b[Hgotcha");
        // An OSC sequence that would retitle the window, ended by BEL.
        assert_eq!(escape("\x1b]0;pwned\x07"), "\\x1b]0;pwned\\x07");
    }

    #[test]
    fn bel_nul_cr_del_and_c1_controls_are_escaped() {
        assert_eq!(escape("ring\x07"), "ring\\x07");
        assert_eq!(escape("nul\0byte"), "nul\\x00byte");
        // A bare CR would let the rest overwrite what came before on the line.
        assert_eq!(escape("innocent\rEVIL"), "innocent\\x0dEVIL");
        assert_eq!(escape("del\x7f"), "del\\x7f");
        assert_eq!(
            escape("csi\u{9b}31m next\u{85}line"),
            "csi\\x9b31m next\\x85line"
        );
        assert_eq!(escape("\x01\x08\x0b\x0c\x1f"), "\\x01\\x08\\x0b\\x0c\\x1f");
    }

    #[test]
    fn bidi_controls_are_escaped() {
        // RLO would show "exe.txt" for "txt.exe".
        assert_eq!(escape("invoice\u{202e}txt.exe"), "invoice\\u202etxt.exe");
        assert_eq!(
            escape("\u{061c}\u{200e}\u{200f}\u{202a}\u{202b}\u{202c}\u{202d}\u{202e}\u{2066}\u{2067}\u{2068}\u{2069}"),
            "\\u061c\\u200e\\u200f\\u202a\\u202b\\u202c\\u202d\\u202e\\u2066\\u2067\\u2068\\u2069"
        );
    }

    #[test]
    fn newline_tab_and_ordinary_text_are_unchanged() {
        for text in [
            "line one\nline two",
            "a\tb",
            "héllo 👋",
            "日本語 عربي",
            "C:\\path \\x1b",
            "",
        ] {
            assert!(matches!(escape(text), std::borrow::Cow::Borrowed(t) if t == text));
        }
        // Escaped output holds no control character at all: nothing left to act.
        let all: String = (0u32..0xa0).filter_map(char::from_u32).collect();
        assert!(!escape(&all)
            .chars()
            .any(|c| c.is_control() && c != '\n' && c != '\t'));
    }
}
