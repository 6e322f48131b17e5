//! `RoomView`: one room's conversation held on the client and kept current
//! by applying the room's events, by the rules the proto states.
//!
//! Messages and edits on streams carry no aggregates (empty reactions, zero
//! thread counts): the view builds them from the events that change them,
//! which all come after the message. `reaction` events count each emoji
//! (in order of first use; one whose count fell to zero and comes back goes
//! last), a thread reply (a `message` with `thread_root_id`) counts toward
//! its root, `edited` is merged (text, `edited_at`, mentions, quote) and
//! keeps the counts held, `deleted` leaves a tombstone. `reacted_by_me` is
//! computed from `reaction.user`, since streams always say false.
//!
//! `member` events keep the members held (with their roles), and say when
//! the viewer itself is out of the room; `room_updated` keeps the room's
//! settings.
//!
//! Each event of the room's log is applied once: the view holds the seq of
//! the newest event it applied and passes over any at or below it, so a
//! stream resumed from an older cursor, or replayed whole, ends in the same
//! state. Applied from the room's first event (or loaded from `History`
//! and `ListThread` answers known to be current as of a seq, then fed the
//! events after it), the view holds what those calls return.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};

use prost_types::Timestamp;

use crate::pb::{self, server_event};
use crate::resume::log_position;

/// A reply preview holds at most this many bytes of the quoted text.
const PREVIEW_BYTES: usize = 200;

/// What `RoomView::apply` did with an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// An event of this room: the view took it (a log event moved its seq;
    /// a `read` marker moved that reader's marker).
    Applied,
    /// An event of the room's log at or below the view's seq: already in
    /// the view, so it changed nothing.
    Repeat,
    /// Another room's event, or one that changes no conversation
    /// (`ready`, `presence`, `typing`...).
    Ignored,
}

/// One room's messages (top-level ones and thread replies), each as the
/// events applied so far make it, and its members' read markers.
#[derive(Clone, Debug, Default)]
pub struct RoomView {
    room_id: String,
    /// The viewer's user id: its reactions are the ones `reacted_by_me`.
    me: String,
    /// Every message held, by seq.
    messages: BTreeMap<u64, pb::Message>,
    /// Message id to seq.
    seqs: HashMap<String, u64>,
    /// The newest event of the room's log applied (or loaded).
    seq: u64,
    /// Read markers heard, by user id.
    read: HashMap<String, u64>,
    /// The members known (loaded from `ListMembers`, then kept by `member`
    /// events), by user id, with their role.
    members: HashMap<String, (pb::User, pb::MemberRole)>,
    /// The room's shared fields as the newest `room_updated` said them.
    settings: Option<pb::Room>,
    /// The viewer left or was removed: the room's events stop here.
    gone: bool,
}

impl RoomView {
    /// An empty view of a room, before its first event, as seen by the
    /// user `me` (an id).
    pub fn new(room_id: impl Into<String>, me: impl Into<String>) -> Self {
        Self {
            room_id: room_id.into(),
            me: me.into(),
            ..Self::default()
        }
    }

    pub fn room_id(&self) -> &str {
        &self.room_id
    }

    /// The seq of the newest event of the room's log the view holds: a
    /// cursor at it resumes exactly after.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Takes messages as a unary answer (`History`, `ListThread`) has them
    /// now, aggregates included, replacing those held; `as_of` is a seq
    /// of the room's log they are known to be current at (no event after
    /// it had happened when they were read), so later events apply on top.
    pub fn load(&mut self, messages: impl IntoIterator<Item = pb::Message>, as_of: u64) {
        for message in messages {
            if message.room_id == self.room_id {
                self.seqs.insert(message.id.clone(), message.seq);
                self.messages.insert(message.seq, message);
            }
        }
        self.seq = self.seq.max(as_of);
    }

    /// Applies one server event (see the module's rules).
    pub fn apply(&mut self, event: &server_event::Event) -> Applied {
        if let server_event::Event::Read(read) = event {
            if read.room_id != self.room_id {
                return Applied::Ignored;
            }
            if let Some(user) = &read.user {
                let marker = self.read.entry(user.id.clone()).or_default();
                *marker = (*marker).max(read.last_read_seq);
            }
            return Applied::Applied;
        }
        let Some((room_id, seq)) = log_position(event) else {
            return Applied::Ignored;
        };
        if room_id != self.room_id {
            return Applied::Ignored;
        }
        if seq <= self.seq {
            return Applied::Repeat;
        }
        self.seq = seq;
        match event {
            server_event::Event::Message(message) => self.add(message),
            server_event::Event::Sent(sent) => {
                if let Some(message) = &sent.message {
                    self.add(message);
                }
            }
            server_event::Event::Edited(edited) => {
                if let Some(message) = &edited.message {
                    self.edit(message);
                }
            }
            server_event::Event::Deleted(deleted) => self.delete(&deleted.message_id),
            server_event::Event::Reaction(reaction) => self.react(reaction),
            server_event::Event::Member(member) => self.member_changed(member),
            server_event::Event::RoomUpdated(updated) => self.settings = updated.room.clone(),
            _ => {}
        }
        Applied::Applied
    }

    /// Takes the members as `ListMembers` has them now, replacing those
    /// held; later `member` events apply on top.
    pub fn load_members(&mut self, members: impl IntoIterator<Item = pb::Member>) {
        self.members.clear();
        for member in members {
            let role = member.role();
            if let Some(user) = member.user {
                self.members.insert(user.id.clone(), (user, role));
            }
        }
    }

    /// The members held, by username.
    pub fn members(&self) -> Vec<(&pb::User, pb::MemberRole)> {
        let mut members: Vec<_> = self
            .members
            .values()
            .map(|(user, role)| (user, *role))
            .collect();
        members.sort_by(|a, b| a.0.username.cmp(&b.0.username));
        members
    }

    /// A member's role, by user id; `None` when not a member.
    pub fn role(&self, user_id: &str) -> Option<pb::MemberRole> {
        self.members.get(user_id).map(|(_, role)| *role)
    }

    /// The room's name, topic, visibility and member count as the newest
    /// `room_updated` event said them; `None` before any.
    pub fn settings(&self) -> Option<&pb::Room> {
        self.settings.as_ref()
    }

    /// Whether the viewer left the room or was removed (or banned) from
    /// it: nothing more of it comes.
    pub fn gone(&self) -> bool {
        self.gone
    }

    fn member_changed(&mut self, event: &server_event::MemberEvent) {
        let Some(user) = &event.user else {
            return;
        };
        match event.change() {
            pb::MemberChange::Joined | pb::MemberChange::RoleChanged => {
                self.members
                    .insert(user.id.clone(), (user.clone(), event.role()));
            }
            pb::MemberChange::Left | pb::MemberChange::Removed | pb::MemberChange::Banned => {
                self.members.remove(&user.id);
                if user.id == self.me {
                    self.gone = true;
                }
            }
            pb::MemberChange::Invited
            | pb::MemberChange::Unbanned
            | pb::MemberChange::Unspecified => {}
        }
    }

    /// A message held, by id.
    pub fn message(&self, id: &str) -> Option<&pb::Message> {
        self.seqs.get(id).and_then(|seq| self.messages.get(seq))
    }

    /// Every message held, thread replies included, in seq order.
    pub fn messages(&self) -> impl Iterator<Item = &pb::Message> {
        self.messages.values()
    }

    /// The top-level messages, in seq order: what `History` lists.
    pub fn top_level(&self) -> impl Iterator<Item = &pb::Message> {
        self.messages
            .values()
            .filter(|message| message.thread_root_id.is_empty())
    }

    /// The replies of a thread, in seq order: what `ListThread` lists.
    pub fn thread<'a>(&'a self, root_id: &'a str) -> impl Iterator<Item = &'a pb::Message> {
        self.messages
            .values()
            .filter(move |message| message.thread_root_id == root_id)
    }

    /// The read marker of a member (by user id), as the newest `read`
    /// event for them said.
    pub fn last_read(&self, user_id: &str) -> Option<u64> {
        self.read.get(user_id).copied()
    }

    fn held(&mut self, id: &str) -> Option<&mut pb::Message> {
        let seq = self.seqs.get(id)?;
        self.messages.get_mut(seq)
    }

    fn add(&mut self, message: &pb::Message) {
        if !message.thread_root_id.is_empty() {
            if let Some(root) = self.held(&message.thread_root_id) {
                root.thread_reply_count += 1;
                if later(message.sent_at.as_ref(), root.thread_last_reply_at.as_ref()) {
                    root.thread_last_reply_at = message.sent_at;
                }
            }
        }
        self.seqs.insert(message.id.clone(), message.seq);
        self.messages.insert(message.seq, message.clone());
    }

    fn edit(&mut self, edited: &pb::Message) {
        if edited.deleted {
            // A replayed edit of a message deleted since: its tombstone.
            self.delete(&edited.id);
            return;
        }
        let Some(held) = self.held(&edited.id) else {
            return;
        };
        held.text.clone_from(&edited.text);
        held.edited_at = edited.edited_at;
        held.mentions.clone_from(&edited.mentions);
        held.reply_to.clone_from(&edited.reply_to);
        self.requote(&edited.id, false, &edited.text);
    }

    fn delete(&mut self, id: &str) {
        let Some(held) = self.held(id) else {
            return;
        };
        held.deleted = true;
        held.text.clear();
        held.edited_at = None;
        held.reactions.clear();
        held.mentions.clear();
        self.requote(id, true, "");
    }

    /// Brings the previews of the messages quoting `id` up to date.
    fn requote(&mut self, id: &str, deleted: bool, text: &str) {
        let text = preview(text);
        for message in self.messages.values_mut() {
            if let Some(quote) = message.reply_to.as_mut().filter(|q| q.message_id == id) {
                quote.deleted = deleted;
                quote.text.clone_from(&text);
            }
        }
    }

    fn react(&mut self, reaction: &server_event::Reaction) {
        let by_me = reaction.user.as_ref().is_some_and(|u| u.id == self.me);
        let Some(held) = self.held(&reaction.message_id) else {
            return;
        };
        if held.deleted {
            // A replayed reaction from before the deletion: a tombstone
            // has none.
            return;
        }
        let at = held
            .reactions
            .iter()
            .position(|r| r.emoji == reaction.emoji);
        match (at, reaction.added) {
            (Some(at), true) => {
                let summary = &mut held.reactions[at];
                summary.count += 1;
                summary.reacted_by_me |= by_me;
            }
            (None, true) => held.reactions.push(pb::ReactionSummary {
                emoji: reaction.emoji.clone(),
                count: 1,
                reacted_by_me: by_me,
            }),
            (Some(at), false) => {
                let summary = &mut held.reactions[at];
                summary.count = summary.count.saturating_sub(1);
                summary.reacted_by_me &= !by_me;
                if summary.count == 0 {
                    // Gone: should it come back, it goes last.
                    held.reactions.remove(at);
                }
            }
            (None, false) => {}
        }
    }
}

/// Whether `a` is later than `b` (anything is later than nothing).
fn later(a: Option<&Timestamp>, b: Option<&Timestamp>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => (a.seconds, a.nanos).cmp(&(b.seconds, b.nanos)) == Ordering::Greater,
        (Some(_), None) => true,
        (None, _) => false,
    }
}

/// A quoted text as a preview holds it: at most `PREVIEW_BYTES` bytes, cut
/// on a character boundary.
fn preview(text: &str) -> String {
    let mut end = text.len().min(PREVIEW_BYTES);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use server_event::Event;

    const ROOM: &str = "r1";
    const ME: &str = "u-me";

    fn user(id: &str) -> Option<pb::User> {
        Some(pb::User {
            id: id.into(),
            username: id.trim_start_matches("u-").into(),
            display_name: String::new(),
        })
    }

    fn at(seconds: i64) -> Option<Timestamp> {
        Some(Timestamp { seconds, nanos: 0 })
    }

    fn message(id: &str, seq: u64, text: &str) -> pb::Message {
        pb::Message {
            id: id.into(),
            room_id: ROOM.into(),
            seq,
            sender: user("u-bob"),
            text: text.into(),
            sent_at: at(seq as i64),
            ..Default::default()
        }
    }

    fn sent(id: &str, seq: u64, text: &str) -> Event {
        Event::Message(message(id, seq, text))
    }

    fn reply(id: &str, seq: u64, root: &str) -> Event {
        Event::Message(pb::Message {
            thread_root_id: root.into(),
            ..message(id, seq, "in the thread")
        })
    }

    fn react(seq: u64, message_id: &str, emoji: &str, by: &str, added: bool) -> Event {
        Event::Reaction(server_event::Reaction {
            seq,
            room_id: ROOM.into(),
            message_id: message_id.into(),
            emoji: emoji.into(),
            user: user(by),
            added,
        })
    }

    fn edited(seq: u64, message: pb::Message) -> Event {
        Event::Edited(server_event::Edited {
            seq,
            message: Some(message),
        })
    }

    fn deleted(seq: u64, message_id: &str) -> Event {
        Event::Deleted(server_event::Deleted {
            seq,
            room_id: ROOM.into(),
            message_id: message_id.into(),
            by: user("u-bob"),
        })
    }

    fn view_of(events: &[Event]) -> RoomView {
        let mut view = RoomView::new(ROOM, ME);
        for event in events {
            view.apply(event);
        }
        view
    }

    fn reactions(view: &RoomView, id: &str) -> Vec<(String, u32, bool)> {
        view.message(id)
            .unwrap()
            .reactions
            .iter()
            .map(|r| (r.emoji.clone(), r.count, r.reacted_by_me))
            .collect()
    }

    fn owned(list: &[(&str, u32, bool)]) -> Vec<(String, u32, bool)> {
        list.iter().map(|&(e, c, m)| (e.to_owned(), c, m)).collect()
    }

    #[test]
    fn reactions_count_in_order_of_first_use_and_mine_are_marked() {
        let view = view_of(&[
            sent("m1", 1, "lunch?"),
            react(2, "m1", "👍", "u-bob", true),
            react(3, "m1", "❤️", "u-me", true),
            react(4, "m1", "👍", "u-me", true),
            react(5, "m1", "👍", "u-bob", false),
        ]);
        assert_eq!(
            reactions(&view, "m1"),
            owned(&[("👍", 1, true), ("❤️", 1, true)])
        );
        assert_eq!(view.seq(), 5);
    }

    #[test]
    fn an_emoji_that_fell_to_zero_and_comes_back_goes_last() {
        let view = view_of(&[
            sent("m1", 1, "lunch?"),
            react(2, "m1", "👍", "u-bob", true),
            react(3, "m1", "❤️", "u-bob", true),
            react(4, "m1", "👍", "u-bob", false),
            react(5, "m1", "👍", "u-me", true),
            react(6, "m1", "❤️", "u-me", true),
            react(7, "m1", "❤️", "u-me", false),
        ]);
        assert_eq!(
            reactions(&view, "m1"),
            owned(&[("❤️", 1, false), ("👍", 1, true)])
        );
    }

    #[test]
    fn every_event_applies_once_whatever_the_stream_repeats() {
        let events = [
            sent("m1", 1, "lunch?"),
            react(2, "m1", "👍", "u-bob", true),
            reply("m3", 3, "m1"),
            react(4, "m1", "👍", "u-me", true),
        ];
        let mut view = view_of(&events);
        // A resume from an older cursor brings some again: no change.
        for event in &events[1..] {
            assert_eq!(view.apply(event), Applied::Repeat);
        }
        assert_eq!(reactions(&view, "m1"), owned(&[("👍", 2, true)]));
        assert_eq!(view.message("m1").unwrap().thread_reply_count, 1);
    }

    #[test]
    fn thread_replies_count_toward_their_root_and_stay_out_of_the_top_level() {
        let view = view_of(&[
            sent("m1", 1, "friday?"),
            sent("m2", 2, "something else"),
            reply("m3", 3, "m1"),
            reply("m4", 4, "m1"),
            deleted(5, "m4"),
        ]);
        let root = view.message("m1").unwrap();
        // Deleted replies keep their place and their count.
        assert_eq!(
            (root.thread_reply_count, root.thread_last_reply_at),
            (2, at(4))
        );
        let top: Vec<_> = view.top_level().map(|m| m.id.as_str()).collect();
        assert_eq!(top, ["m1", "m2"]);
        let thread: Vec<_> = view
            .thread("m1")
            .map(|m| (m.id.as_str(), m.deleted))
            .collect();
        assert_eq!(thread, [("m3", false), ("m4", true)]);
    }

    #[test]
    fn an_edit_merges_its_text_and_keeps_the_reactions_and_counts_held() {
        let mut quoting = message("m4", 4, "yes");
        quoting.reply_to = Some(pb::ReplyPreview {
            message_id: "m1".into(),
            sender: user("u-bob"),
            text: "lunch?".into(),
            deleted: false,
        });
        let mut new_state = message("m1", 1, "lunch at noon?");
        new_state.edited_at = at(9);
        new_state.mentions = vec![user("u-me").unwrap()];
        let view = view_of(&[
            sent("m1", 1, "lunch?"),
            react(2, "m1", "👍", "u-me", true),
            reply("m3", 3, "m1"),
            Event::Message(quoting),
            // On a stream, the edit carries no aggregates.
            edited(5, new_state),
        ]);
        let held = view.message("m1").unwrap();
        assert_eq!(
            (held.text.as_str(), held.edited_at, held.mentions.len()),
            ("lunch at noon?", at(9), 1)
        );
        assert_eq!(held.thread_reply_count, 1);
        assert_eq!(reactions(&view, "m1"), owned(&[("👍", 1, true)]));
        let quote = view.message("m4").unwrap().reply_to.as_ref().unwrap();
        assert_eq!(quote.text, "lunch at noon?");
    }

    #[test]
    fn a_deletion_leaves_a_tombstone_that_takes_no_reaction() {
        let mut quoting = message("m2", 2, "yes");
        quoting.reply_to = Some(pb::ReplyPreview {
            message_id: "m1".into(),
            sender: user("u-bob"),
            text: "lunch?".into(),
            deleted: false,
        });
        let mut view = view_of(&[
            sent("m1", 1, "lunch?"),
            Event::Message(quoting),
            react(3, "m1", "👍", "u-me", true),
            deleted(4, "m1"),
        ]);
        // A replay from before the deletion: the message comes as its
        // tombstone, then the reaction made before it was deleted.
        let mut tombstone = message("m1", 1, "");
        tombstone.deleted = true;
        let mut replayed = RoomView::new(ROOM, ME);
        for event in [
            Event::Message(tombstone),
            react(3, "m1", "👍", "u-me", true),
        ] {
            replayed.apply(&event);
        }
        for view in [&view, &replayed] {
            let held = view.message("m1").unwrap();
            assert!(held.deleted && held.text.is_empty() && held.reactions.is_empty());
        }
        let quote = view.message("m2").unwrap().reply_to.as_ref().unwrap();
        assert!(quote.deleted && quote.text.is_empty());
        assert_eq!(
            view.apply(&react(5, "m1", "🎉", "u-bob", true)),
            Applied::Applied
        );
        assert!(view.message("m1").unwrap().reactions.is_empty());
    }

    #[test]
    fn read_markers_move_forward_and_are_not_log_events() {
        let mut view = view_of(&[sent("m1", 1, "hi"), sent("m2", 2, "there")]);
        let read = |seq| {
            Event::Read(server_event::Read {
                room_id: ROOM.into(),
                user: user("u-bob"),
                last_read_seq: seq,
            })
        };
        assert_eq!(view.apply(&read(2)), Applied::Applied);
        assert_eq!(view.apply(&read(1)), Applied::Applied);
        assert_eq!(view.last_read("u-bob"), Some(2), "never back");
        assert_eq!(view.last_read("u-me"), None);
        assert_eq!(view.seq(), 2, "a marker is no event of the log");
    }

    #[test]
    fn another_rooms_events_are_ignored() {
        let mut view = view_of(&[sent("m1", 1, "hi")]);
        let elsewhere = Event::Message(pb::Message {
            room_id: "r2".into(),
            ..message("x", 7, "elsewhere")
        });
        assert_eq!(view.apply(&elsewhere), Applied::Ignored);
        assert_eq!((view.seq(), view.messages().count()), (1, 1));
    }

    #[test]
    fn events_after_a_loaded_answer_apply_on_top_of_its_aggregates() {
        let mut loaded = message("m1", 1, "lunch?");
        loaded.reactions = vec![pb::ReactionSummary {
            emoji: "👍".into(),
            count: 2,
            reacted_by_me: true,
        }];
        loaded.thread_reply_count = 3;
        let mut view = RoomView::new(ROOM, ME);
        view.load([loaded], 6);
        assert_eq!(
            view.apply(&react(5, "m1", "👍", "u-bob", true)),
            Applied::Repeat
        );
        view.apply(&react(7, "m1", "👍", "u-me", false));
        view.apply(&reply("m8", 8, "m1"));
        assert_eq!(reactions(&view, "m1"), owned(&[("👍", 1, false)]));
        assert_eq!(view.message("m1").unwrap().thread_reply_count, 4);
    }

    #[test]
    fn a_preview_is_cut_on_a_character_boundary() {
        let long = "é".repeat(150); // 300 bytes
        assert_eq!(preview(&long).len(), 200);
        assert_eq!(
            preview(&"€".repeat(100)).len(),
            198,
            "not into the 67th euro"
        );
        assert_eq!(preview("short"), "short");
    }

    fn member(seq: u64, id: &str, change: pb::MemberChange, role: pb::MemberRole) -> Event {
        Event::Member(server_event::MemberEvent {
            seq,
            room_id: ROOM.into(),
            user: user(id),
            change: change as i32,
            role: role as i32,
            by: user(id),
            reason: String::new(),
        })
    }

    #[test]
    fn member_events_keep_the_members_and_say_when_the_viewer_is_out() {
        use pb::{MemberChange as C, MemberRole as R};
        let mut view = RoomView::new(ROOM, ME);
        view.load_members([pb::Member {
            user: user("u-alice"),
            role: R::Owner as i32,
            online: true,
            joined_at: None,
        }]);
        view.apply(&member(1, ME, C::Joined, R::Member));
        view.apply(&member(2, "u-bob", C::Joined, R::Member));
        view.apply(&member(3, "u-bob", C::RoleChanged, R::Admin));
        assert_eq!(
            view.apply(&member(2, "u-bob", C::Joined, R::Member)),
            Applied::Repeat,
            "a replayed join changes nothing"
        );
        view.apply(&Event::RoomUpdated(server_event::RoomUpdated {
            seq: 4,
            room: Some(pb::Room {
                id: ROOM.into(),
                topic: "plans".into(),
                ..Default::default()
            }),
            by: user("u-alice"),
        }));
        assert_eq!(view.role("u-bob"), Some(R::Admin));
        assert_eq!(view.members().len(), 3);
        assert_eq!(view.settings().unwrap().topic, "plans");
        assert!(!view.gone());

        view.apply(&member(5, ME, C::Removed, R::Unspecified));
        assert!(view.gone());
        assert_eq!(view.role(ME), None);
        assert_eq!(view.seq(), 5);
    }
}
