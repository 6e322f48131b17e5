// RoomView: a local copy of one room's conversation, kept up to date by the
// room's stream events. Unary answers (History, ListThread) hold messages
// with their aggregates (reactions, thread counts) as they are now; events
// on a stream carry none, and build them instead: a `reaction` changes one
// emoji's count, a thread reply (a `message` with `threadRootId`) bumps its
// root's count, an `edited` is merged into the held message (its text,
// `editedAt`, mentions and quote) keeping the aggregates, a `deleted` makes
// a tombstone; a `member` or `roomUpdated` only moves the view's seq. A
// `profile` (no room event, no seq) gives the held messages' senders,
// mentions and quotes that user as they are now. So a view seeded at a seq
// and fed every event after it holds what History and ListThread would
// return, each change counted once: every room event has a seq, and the
// view ignores one at or below its own.
import { clone, create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  MessageSchema,
  ReactionSummarySchema,
  ReplyPreviewSchema,
  UserSchema,
  type Message,
  type Room,
  type ServerEvent,
  type User,
} from "./gen/chat/v1/chat_pb.js";
import type { ChatClient } from "./client.js";

/** A quoted message's text is cut to this many bytes of UTF-8 (on a character boundary). */
export const REPLY_PREVIEW_BYTES = 200;

/** How often `RoomView.load` tries for a History page no event raced with. */
const LOAD_ATTEMPTS = 5;

export class RoomView {
  /** The newest room event the view holds: events at or below it are ignored. */
  seq: bigint;
  /** Our read marker in the room (from the room, `markRead`, and `read` events of ours). */
  lastReadSeq: bigint;
  /** Every member's read marker heard of (`read` events: ours, and receipts of others), by user id. */
  readonly readers = new Map<string, bigint>();
  /**
   * Set when the stream said `resync` for this room: more was missed than a
   * resume sends, so the view lacks events; load a new one.
   */
  stale = false;

  private readonly messages = new Map<string, Message>();
  /** Top-level message ids, ascending seq. */
  private readonly top: string[] = [];
  /** Per thread root id, the held reply ids, ascending seq. */
  private readonly replies = new Map<string, string[]>();

  /**
   * An empty view of `roomId` as seen by user `me` (an id: `reactedByMe`
   * is ours), holding every event up to `seq`.
   */
  constructor(
    readonly roomId: string,
    readonly me: string,
    seq = 0n,
    lastReadSeq = 0n,
  ) {
    this.seq = seq;
    this.lastReadSeq = lastReadSeq;
  }

  /**
   * A view of a room we are in, from its newest History page (`limit`
   * top-level messages; 0: 50), at the room's last seq: open a stream with
   * `cursors` holding `view.seq` and apply its events. Retries when an event
   * lands during the read, so the page and the seq agree.
   */
  static async load(client: ChatClient, roomId: string, opts: { limit?: number } = {}): Promise<RoomView> {
    const me = client.session?.user.id;
    if (!me) throw new ConnectError("log in first", Code.Unauthenticated);
    let before = await joinedRoom(client, roomId);
    for (let attempt = 1; ; attempt++) {
      const page = await client.history(roomId, { limit: opts.limit ?? 0 });
      const after = await joinedRoom(client, roomId);
      if (after.lastSeq === before.lastSeq) {
        const view = new RoomView(roomId, me, after.lastSeq, after.lastReadSeq);
        view.seed(page.messages);
        return view;
      }
      if (attempt === LOAD_ATTEMPTS) {
        throw new ConnectError(`room ${roomId} changed during each of ${LOAD_ATTEMPTS} reads`, Code.Aborted);
      }
      before = after;
    }
  }

  /**
   * Adds a thread's newest replies (a ListThread page) and its root to the
   * view. Call it while the view is up to date with its stream: an event
   * the answer already counts must not be applied after it.
   */
  async loadThread(client: ChatClient, rootId: string, opts: { limit?: number } = {}): Promise<Message[]> {
    const page = await client.listThread(this.roomId, rootId, { limit: opts.limit ?? 0 });
    this.seed(page.root ? [page.root, ...page.messages] : page.messages);
    return this.thread(rootId);
  }

  /**
   * Holds these messages (from a unary answer: History, ListThread, a
   * send's or an edit's response), aggregates included, replacing any
   * copy held. Does not move `seq`.
   */
  seed(messages: Iterable<Message>): void {
    for (const m of messages) {
      if (m.roomId !== this.roomId) continue;
      this.put(clone(MessageSchema, m));
    }
  }

  /** A held message, as it is now. */
  get(messageId: string): Message | undefined {
    return this.messages.get(messageId);
  }

  /** The held top-level messages (thread roots among them), ascending seq. */
  timeline(): Message[] {
    return this.top.map((id) => this.messages.get(id)!);
  }

  /** The held replies of a thread, ascending seq. */
  thread(rootId: string): Message[] {
    return (this.replies.get(rootId) ?? []).map((id) => this.messages.get(id)!);
  }

  /**
   * Applies a stream event; returns whether it changed the view. Events of
   * other rooms, events at or below `seq` (already held), and events that
   * are not about the conversation (presence, typing, pong...) change nothing.
   */
  apply(event: ServerEvent): boolean {
    const e = event.event;
    switch (e.case) {
      case "message":
        return this.onMessage(e.value);
      case "sent":
        return e.value.message ? this.onMessage(e.value.message) : false;
      case "edited": {
        const m = e.value.message;
        if (!m || !this.advance(m.roomId, e.value.seq)) return false;
        const held = this.messages.get(m.id);
        if (!held || held.deleted) return true;
        held.text = m.text;
        held.editedAt = m.editedAt;
        held.mentions = m.mentions.map((u) => clone(UserSchema, u));
        held.replyTo = m.replyTo ? clone(ReplyPreviewSchema, m.replyTo) : undefined;
        held.deleted = m.deleted;
        if (m.deleted) this.erase(held);
        this.requote(held);
        return true;
      }
      case "deleted": {
        if (!this.advance(e.value.roomId, e.value.seq)) return false;
        const held = this.messages.get(e.value.messageId);
        if (held) {
          this.erase(held);
          this.requote(held);
        }
        return true;
      }
      case "reaction": {
        const r = e.value;
        if (!this.advance(r.roomId, r.seq)) return false;
        const held = this.messages.get(r.messageId);
        if (!held || held.deleted) return true;
        const mine = r.user?.id === this.me;
        let summary = held.reactions.find((s) => s.emoji === r.emoji);
        if (r.added) {
          if (!summary) {
            // First use (or back after falling to zero): it goes last.
            summary = create(ReactionSummarySchema, { emoji: r.emoji, count: 0 });
            held.reactions.push(summary);
          }
          summary.count++;
          if (mine) summary.reactedByMe = true;
        } else if (summary) {
          summary.count--;
          if (mine) summary.reactedByMe = false;
          if (summary.count <= 0) held.reactions.splice(held.reactions.indexOf(summary), 1);
        }
        return true;
      }
      // Membership changes and room updates are room events too: they hold
      // nothing of the conversation, but take a seq the view moves to.
      case "member":
        return this.advance(e.value.roomId, e.value.seq);
      case "roomUpdated":
        return e.value.room ? this.advance(e.value.room.id, e.value.seq) : false;
      // A display name changed: no room event and no seq, but History shows
      // every user as they are now, so the held messages do too.
      case "profile":
        return e.value.user ? this.rename(e.value.user) : false;
      case "read": {
        const r = e.value;
        if (r.roomId !== this.roomId || !r.user) return false;
        const known = this.readers.get(r.user.id) ?? 0n;
        if (r.lastReadSeq > known) this.readers.set(r.user.id, r.lastReadSeq);
        if (r.user.id === this.me && r.lastReadSeq > this.lastReadSeq) this.lastReadSeq = r.lastReadSeq;
        return true;
      }
      case "resync":
        if (e.value.roomId !== this.roomId) return false;
        this.stale = true;
        return true;
      default:
        return false;
    }
  }

  /** Messages from others after our marker that are not deleted, among those held (thread replies included). */
  unreadCount(): number {
    let n = 0;
    for (const m of this.messages.values()) {
      if (m.seq > this.lastReadSeq && !m.deleted && m.sender?.id !== this.me) n++;
    }
    return n;
  }

  /** Whether an event of `roomId` at `seq` is new to the view; moves `seq` to it if so. */
  private advance(roomId: string, seq: bigint): boolean {
    if (roomId !== this.roomId || seq <= this.seq) return false;
    this.seq = seq;
    return true;
  }

  private onMessage(m: Message): boolean {
    // A retried send's `sent` acknowledges the message first stored: held already.
    if (m.roomId !== this.roomId || this.messages.has(m.id)) return false;
    if (!this.advance(m.roomId, m.seq)) return false;
    // Stream messages carry no aggregates; a new message has none anyway.
    const fresh = clone(MessageSchema, m);
    fresh.reactions = [];
    fresh.threadReplyCount = 0;
    fresh.threadLastReplyAt = undefined;
    this.put(fresh);
    if (fresh.threadRootId) {
      const root = this.messages.get(fresh.threadRootId);
      if (root) {
        root.threadReplyCount++;
        root.threadLastReplyAt = fresh.sentAt;
      }
    }
    return true;
  }

  /** Holds `m` (replacing a copy), in the timeline or its thread at its seq. */
  private put(m: Message): void {
    const known = this.messages.has(m.id);
    this.messages.set(m.id, m);
    if (known) return;
    let ids = this.top;
    if (m.threadRootId) {
      ids = this.replies.get(m.threadRootId) ?? [];
      this.replies.set(m.threadRootId, ids);
    }
    let i = ids.length;
    while (i > 0 && this.messages.get(ids[i - 1])!.seq > m.seq) i--;
    ids.splice(i, 0, m.id);
  }

  /** Makes a held message a tombstone: no text, reactions or mentions (its thread counts stay). */
  private erase(m: Message): void {
    m.deleted = true;
    m.text = "";
    m.editedAt = undefined;
    m.reactions = [];
    m.mentions = [];
  }

  /** Gives every held message's sender, mentions and quoted sender that are `user` its new profile; returns whether any was. */
  private rename(user: User): boolean {
    let changed = false;
    const renamed = (u: User | undefined): User | undefined => {
      if (u?.id !== user.id) return u;
      changed = true;
      return clone(UserSchema, user);
    };
    for (const m of this.messages.values()) {
      m.sender = renamed(m.sender);
      m.mentions = m.mentions.map((u) => renamed(u)!);
      if (m.replyTo) m.replyTo.sender = renamed(m.replyTo.sender);
    }
    return changed;
  }

  /** Updates the quotes of `m` in the held messages that reply to it. */
  private requote(m: Message): void {
    for (const other of this.messages.values()) {
      const q = other.replyTo;
      if (!q || q.messageId !== m.id) continue;
      q.deleted = m.deleted;
      q.text = m.deleted ? "" : previewText(m.text);
    }
  }
}

/** `text` cut to at most 200 bytes of UTF-8 on a character boundary, as a ReplyPreview holds it. */
export function previewText(text: string): string {
  const encoder = new TextEncoder();
  if (encoder.encode(text).length <= REPLY_PREVIEW_BYTES) return text;
  let out = "";
  let bytes = 0;
  for (const ch of text) {
    const n = encoder.encode(ch).length;
    if (bytes + n > REPLY_PREVIEW_BYTES) break;
    out += ch;
    bytes += n;
  }
  return out;
}

/** The room as ListRooms shows it to a member (last_seq, our marker). */
async function joinedRoom(client: ChatClient, roomId: string): Promise<Room> {
  for await (const room of client.rooms({ joinedOnly: true, pageSize: 1000 })) if (room.id === roomId) return room;
  throw new ConnectError(`not a member of room ${roomId}`, Code.NotFound);
}
