//! Mentions: the members a message names as `@username`
//! (docs/design/room-log.md, "Mentions, replies, threads").
//!
//! The domain reads the names out of the text; the server matches them
//! against the room's current members inside the storing transaction and
//! stores the matches in `message_mentions`. The rule:
//!
//! - A mention starts at an ASCII `@` that begins the text or follows a
//!   character a username may not hold. So `bob@example.com` mentions no
//!   one (as in Slack and Matrix), nor does `x@alice` or `a.@alice`, while
//!   `(@carol)`, `hi,@dave` and the second `@` of `@@alice` start one.
//! - The name is the longest run after `@` of the characters a username may
//!   hold (the rule `Username::parse` uses, shared, not copied), with
//!   trailing `.`, `-` and `_` dropped: `@alice.` names `alice`, `@bob_`
//!   names `bob`, `@bob-smith` names `bob-smith`.
//! - A name that is not a valid username (too short or too long) mentions
//!   no one; it is not cut to fit, since a prefix of it would name someone
//!   else. As usernames are ASCII, a run ends at the first other letter:
//!   `@renée` names `ren`.
//! - Names are compared case-insensitively, by [`Username::key`], so
//!   `@Alice` and `@alice` are one mention; each name counts once, in the
//!   order it first appears.
//!
//! The work is bounded: a message text holds at most 4096 characters,
//! each is looked at a bounded number of times, and at most
//! `MAX_MENTIONS` names are kept (`crate::mentions`, which checks and
//! keys the names this module reads out).

use crate::username_chars::is_username_char;

/// The name after each `@` that starts a mention, in order: trailing `.`,
/// `-` and `_` dropped, not yet checked as a username, repeats included.
pub(crate) fn names(text: &str) -> impl Iterator<Item = &str> + '_ {
    let mut previous: Option<char> = None;
    text.char_indices().filter_map(move |(at, c)| {
        let starts_mention = c == '@' && !previous.is_some_and(is_username_char);
        previous = Some(c);
        if !starts_mention {
            return None;
        }
        // The run ends at the next character a username may not hold (the
        // next `@` included), so the runs of two mentions never overlap and
        // the whole scan reads each character at most twice.
        let rest = &text[at + '@'.len_utf8()..];
        let run = rest
            .find(|c: char| !is_username_char(c))
            .map_or(rest, |end| &rest[..end]);
        Some(run.trim_end_matches(['.', '-', '_']))
    })
}
