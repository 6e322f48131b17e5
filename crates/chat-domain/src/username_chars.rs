//! The characters a username may hold, in one place: `Username::parse`
//! checks names against it, and mentions (`mention.rs`) read a name after
//! `@` as the longest run of them, so the two cannot drift apart.

/// `[A-Za-z0-9_.-]`: ASCII only, so a name looks the same everywhere and
/// case folds with `to_ascii_lowercase`.
pub(crate) fn is_username_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')
}
