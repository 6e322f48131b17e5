// What the stream's events do to the messages the app holds, as pure
// functions: each returns a new Message (the list rebuilds a message when
// its object changes) or the same one when nothing changed.
//
// Messages on streams carry no aggregates (proto: Message.reactions): the
// reactions and thread counts the app holds came from History and grow by
// `reaction` events and thread-reply `message` events, and an `edited`
// event changes the text and what goes with it, keeping them.
import { create } from "@bufbuild/protobuf";
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import { ReactionSummarySchema, type Message, type ReplyPreview } from "../gen/chat/v1/chat_pb";

/** The server's cut of a quoted text (proto: ReplyPreview.text). */
const PREVIEW_MAX_BYTES = 200;

/**
 * An `edited` event's message merged into the one held: the text and what
 * the text decides (mentions, the quote, edited_at) from the event, the
 * reactions and thread counts kept.
 */
export function mergeEdited(held: Message, edited: Message): Message {
  return {
    ...held,
    text: edited.text,
    editedAt: edited.editedAt,
    deleted: edited.deleted,
    mentions: edited.mentions,
    replyTo: edited.replyTo,
    reactions: edited.deleted ? [] : held.reactions,
  };
}

/** A deleted message: its text, mentions and reactions gone, its place kept. */
export function tombstone(m: Message): Message {
  if (m.deleted && !m.text && !m.reactions.length) return m;
  return { ...m, text: "", deleted: true, editedAt: undefined, reactions: [], mentions: [] };
}

/**
 * A reaction added or removed. Order of first use: a new emoji goes last,
 * one whose count falls to zero goes away (and, added again, goes last).
 * `mine`: the reaction is the reader's own, so it sets reacted_by_me.
 */
export function applyReaction(m: Message, emoji: string, added: boolean, mine: boolean): Message {
  const at = m.reactions.findIndex((r) => r.emoji === emoji);
  const old = at >= 0 ? m.reactions[at] : undefined;
  // A tombstone takes none; and an event the held state already shows
  // (our own toggle seen twice) changes nothing.
  if (m.deleted || (mine && old && old.reactedByMe === added) || (mine && !old && !added)) return m;
  const count = (old?.count ?? 0) + (added ? 1 : -1);
  const reactions = [...m.reactions];
  if (count <= 0) {
    if (at >= 0) reactions.splice(at, 1);
  } else {
    const next = create(ReactionSummarySchema, {
      emoji,
      count,
      reactedByMe: mine ? added : (old?.reactedByMe ?? false),
    });
    if (at >= 0) reactions[at] = next;
    else reactions.push(next);
  }
  return { ...m, reactions };
}

function after(a: Timestamp | undefined, b: Timestamp | undefined): boolean {
  if (!a || !b) return !b;
  return a.seconds > b.seconds || (a.seconds === b.seconds && a.nanos > b.nanos);
}

/**
 * A thread root with one more reply. A reply older than the root's newest
 * known one is counted already (the root came from History after it).
 */
export function countThreadReply(root: Message, reply: Message): Message {
  if (root.threadLastReplyAt && !after(reply.sentAt, root.threadLastReplyAt)) return root;
  return { ...root, threadReplyCount: root.threadReplyCount + 1, threadLastReplyAt: reply.sentAt };
}

/** A quoting message whose quoted message changed: its preview says so. */
export function updateQuote(m: Message, quoted: Message): Message {
  if (m.replyTo?.messageId !== quoted.id) return m;
  const text = quoted.deleted ? "" : cutBytes(quoted.text, PREVIEW_MAX_BYTES);
  if (m.replyTo.text === text && m.replyTo.deleted === quoted.deleted) return m;
  const replyTo: ReplyPreview = {
    ...m.replyTo,
    text,
    deleted: quoted.deleted,
  };
  return { ...m, replyTo };
}

/** `text` cut to at most `max` bytes of UTF-8, on a character boundary. */
export function cutBytes(text: string, max: number): string {
  const enc = new TextEncoder();
  if (enc.encode(text).length <= max) return text;
  let out = "";
  let used = 0;
  for (const c of text) {
    used += enc.encode(c).length;
    if (used > max) break;
    out += c;
  }
  return out;
}
