// The open room's message list: messages in groups, date separators, the
// "New messages" line where the reader left off, the "sending…" copies
// below, and a "Jump to latest" button when the reader has scrolled up.
//
// main.ts owns the data and calls render() whenever it changes. Items are
// kept by key (a message by its seq) and reused while they look the same,
// so a new message adds one node: focus, hover, a text selection and the
// screen reader's place survive it, and the log (role="log") announces
// only what is new.
import type { Message } from "../gen/chat/v1/chat_pb";
import "./messages.css";
import { h } from "../dom";
import { messageItem, sentAt, type MessageAction, type MessageExtensions, type MessagePart } from "./message";
import { pendingItem, type PendingCopy, type PendingHandlers } from "./pending";
import { dayKey, dayLabel, fullDate, nextMidnight } from "./time";

/** A message starts a new group, sender and time shown, after this long a pause. */
export const GROUP_GAP_MS = 5 * 60_000;
/** How long a message jumped to stays highlighted. */
const HIGHLIGHT_MS = 2_000;
/** Within this of the bottom the list counts as at the bottom, and follows new messages. */
const AT_BOTTOM_PX = 60;

/**
 * A line of the room's log that is no message: someone joined, left, was
 * removed or banned, the room was renamed. It has the seq of its event and
 * shows among the messages in seq order.
 */
export interface Notice {
  seq: bigint;
  text: string;
  /** What it says, for tests and styles: "joined", "left", "renamed"... */
  kind: string;
  /** When the page heard it (the event carries no time): its day's separator goes above it. */
  at: Date;
}

/** What the list shows of the open room. */
export interface RoomView<P extends PendingCopy> {
  roomId: string;
  /** The loaded messages, oldest first. */
  messages: readonly Message[];
  /** Membership and room changes heard on the stream, oldest first. */
  notices?: readonly Notice[];
  /** Whether History has been asked: only then is an empty room said to be empty. */
  loaded: boolean;
  /** Our own messages on their way to this room, oldest first. */
  pending: readonly P[];
  me: { id: string; username: string } | undefined;
  /** Whether the connection is up: pending copies wait for it otherwise. */
  live: boolean;
}

export interface MessageListOptions<P extends PendingCopy> {
  /** What the "sending…" copies' buttons do. */
  pending: PendingHandlers<P>;
  /** More of each message below its text (reactions, a thread's replies). */
  parts?: readonly MessagePart[];
  /** What one can do with a message: buttons in its action bar. */
  actions?: readonly MessageAction[];
  /** Above each message's text (the message a reply quotes). */
  above?: readonly MessagePart[];
  /** In place of a message's text when it returns a node (an editor). */
  body?: MessageExtensions["body"];
  /**
   * What else a message's look depends on besides the message itself
   * (say, whether it is being edited): it is rebuilt when this changes.
   */
  variant?: (m: Message) => unknown;
}

export interface MessageList<P extends PendingCopy> {
  /** The list and its "Jump to latest" button: goes where the list goes. */
  element: HTMLElement;
  /** The scrolling log itself. */
  log: HTMLElement;
  /** Shows `view` (none: no room is open). `toBottom` scrolls to the newest message. */
  render(view: RoomView<P> | undefined, toBottom?: boolean): void;
  /**
   * A room is being opened, its messages up to `lastRead` seen before:
   * "New messages" goes above the first one after it, and stays while the
   * room is open. Opening the open room again changes nothing.
   */
  opened(roomId: string, lastRead: bigint | undefined, newest: bigint): void;
  /**
   * Messages after `lastRead` came to the open room while nobody looked
   * (the tab hidden): "New messages" marks where, if it marks nothing yet.
   */
  cameUnseen(roomId: string, lastRead: bigint): void;
  /**
   * Scrolls the message `seq` into view, highlights it for a moment and
   * gives it the focus; false if the list does not show it.
   */
  reveal(seq: bigint): boolean;
}

interface Kept {
  node: HTMLElement;
  /** What the node shows: it is built anew when any of this changes. */
  sig: readonly unknown[];
}

const MESSAGE = 'li[data-testid="message"]';

export function createMessageList<P extends PendingCopy>(opts: MessageListOptions<P>): MessageList<P> {
  const ext: MessageExtensions = {
    parts: opts.parts ?? [],
    actions: opts.actions ?? [],
    above: opts.above ?? [],
    body: opts.body,
  };
  // A list inside a log: screen readers read new messages as they come,
  // and the list's items stay list items (a list given the log role would
  // leave them orphans).
  const log = h("ol", { class: "messages", "data-testid": "messages", "aria-label": "Message list" });
  const live = h("div", { class: "message-log", role: "log", "aria-live": "polite", "aria-label": "Messages" }, log);
  const jumpNote = h("span", { class: "jump-note", hidden: true }, "New messages · ");
  const jump = h(
    "button",
    { type: "button", class: "jump-to-latest", "data-testid": "jump-to-latest", hidden: true },
    jumpNote,
    "Jump to latest",
    h("span", { "aria-hidden": "true" }, " ↓"),
  );
  const element = h("div", { class: "messages-box" }, live, jump);

  let view: RoomView<P> | undefined;
  /** The room the list is showing, as told by opened(). */
  let roomId = "";
  /** "New messages" goes above the first message after this seq. */
  let unreadAfter: bigint | undefined;
  /** Opened with unread messages: the first render that has them scrolls to them. */
  let placeUnread = false;
  /** The newest message the reader has been at the bottom with. */
  let newestSeen = 0n;
  /** Newer messages than that came while the reader was scrolled up. */
  let arrived = false;
  /** The message holding the log's one tab stop (the newest when unset). */
  let focusSeq: string | undefined;
  let kept = new Map<string, Kept>();
  const keyOf = new WeakMap<Node, string>();
  let midnightTimer: number | undefined;

  const distanceFromBottom = () => log.scrollHeight - log.scrollTop - log.clientHeight;
  const messageNodes = () => [...log.querySelectorAll<HTMLElement>(MESSAGE)];

  function opened(id: string, lastRead: bigint | undefined, newest: bigint): void {
    if (id === roomId) return;
    roomId = id;
    focusSeq = undefined;
    arrived = false;
    newestSeen = newest;
    unreadAfter = lastRead !== undefined && newest > lastRead ? lastRead : undefined;
    placeUnread = unreadAfter !== undefined;
  }

  function cameUnseen(id: string, lastRead: bigint): void {
    if (id === roomId && unreadAfter === undefined) unreadAfter = lastRead;
  }

  function render(next: RoomView<P> | undefined, toBottom = false): void {
    const wasAtBottom = distanceFromBottom() < AT_BOTTOM_PX;
    if (next && next.roomId !== roomId) opened(next.roomId, undefined, 0n);
    if (!next) roomId = "";
    view = next;
    const fresh = new Map<string, Kept>();
    const item = (key: string, sig: readonly unknown[], build: () => HTMLElement): HTMLElement => {
      const old = kept.get(key);
      const same = old && old.sig.length === sig.length && old.sig.every((v, i) => v === sig[i]);
      const node = same ? old.node : build();
      fresh.set(key, same ? old : { node, sig });
      keyOf.set(node, key);
      return node;
    };
    const items = next
      ? roomItems(next, item)
      : [item("no-room", [], () => h("li", { class: "empty" }, "Pick a room, or create one, to start chatting."))];
    kept = fresh;
    reconcile(items);
    updateTabStop();

    const firstUnread = log.querySelector<HTMLElement>('[data-testid="new-messages-divider"]');
    if (placeUnread && firstUnread) {
      placeUnread = false;
      // The first unread message at the top, unless all of them fit.
      if (log.scrollHeight - firstUnread.offsetTop > log.clientHeight) log.scrollTop = firstUnread.offsetTop - 8;
      else log.scrollTop = log.scrollHeight;
    } else if (toBottom || wasAtBottom) {
      log.scrollTop = log.scrollHeight;
    }
    updateJump();
    scheduleMidnight();
  }

  /** The list items for a room, each made (or kept) by `item`. */
  function roomItems(v: RoomView<P>, item: (key: string, sig: readonly unknown[], build: () => HTMLElement) => HTMLElement) {
    const out: HTMLElement[] = [];
    // A thread's replies show in its panel; the root says how many.
    const messages = v.messages.filter((m) => !m.threadRootId);
    if (!messages.length && v.loaded) {
      out.push(item("empty", [], () => h("li", { class: "empty" }, "No messages yet. Say hello!")));
    }
    const now = new Date();
    const after = unreadAfter;
    // The first message from someone else after the marker: one's own are
    // not news (they do not move the marker, and count as read).
    const firstUnread =
      after === undefined ? undefined : messages.find((m) => m.seq > after && m.sender?.id !== v.me?.id)?.seq;
    let prev: { sender: string; at: Date; day: string } | undefined;
    const notices = v.notices ?? [];
    let n = 0;
    // The notices before `seq` (all that are left: none given), in order;
    // a message after one starts a new group.
    const noticesBefore = (seq?: bigint) => {
      for (; n < notices.length && (seq === undefined || notices[n].seq < seq); n++) {
        const notice = notices[n];
        const day = dayKey(notice.at);
        if (day !== prev?.day) {
          const label = dayLabel(notice.at, now);
          out.push(item(`day:notice:${notice.seq}`, [label], () => dateSeparator(label, notice.at)));
        }
        out.push(item(`notice:${notice.seq}`, [notice.text], () => noticeItem(notice)));
        prev = { sender: "\u0000notice", at: notice.at, day };
      }
    };
    for (const m of messages) {
      noticesBefore(m.seq);
      const at = sentAt(m);
      const day = dayKey(at);
      const sender = m.sender?.id ?? m.sender?.username ?? "";
      if (day !== prev?.day) {
        const label = dayLabel(at, now);
        out.push(item(`day:${m.seq}`, [label], () => dateSeparator(label, at)));
      }
      if (m.seq === firstUnread) out.push(item("unread", [], newMessagesDivider));
      // A new group: another sender, another day, a pause, or the first unread.
      const head =
        !prev ||
        prev.sender !== sender ||
        prev.day !== day ||
        at.getTime() - prev.at.getTime() > GROUP_GAP_MS ||
        m.seq === firstUnread;
      const sig = [m, head, opts.variant?.(m)];
      out.push(item(`msg:${m.seq}`, sig, () => messageItem(m, { me: v.me?.id, head }, ext)));
      prev = { sender, at, day };
    }
    noticesBefore();
    for (const p of v.pending) out.push(pendingItem(p, v.me?.username ?? "", v.live, opts.pending));
    return out;
  }

  /**
   * Makes the log's children `items`, moving no node that stays: a node
   * taken out and put back would lose the focus and the selection.
   */
  function reconcile(items: HTMLElement[]): void {
    const focused = document.activeElement;
    const focusedKey = focused && log.contains(focused) ? keyOf.get(focused.closest("li") ?? focused) : undefined;
    const wanted = new Set<Node>(items);
    for (const child of [...log.children]) if (!wanted.has(child)) child.remove();
    let cursor = log.firstChild;
    for (const node of items) {
      if (node === cursor) cursor = cursor.nextSibling;
      else log.insertBefore(node, cursor);
    }
    // The focused item was built anew: the focus goes to its new self.
    if (focusedKey && !log.contains(document.activeElement)) kept.get(focusedKey)?.node.focus({ preventScroll: true });
  }

  /** One message is in the Tab order; the arrow keys move between them. */
  function updateTabStop(): void {
    const nodes = messageNodes();
    const stop = nodes.find((n) => n.dataset.seq === focusSeq) ?? nodes[nodes.length - 1];
    for (const n of nodes) n.tabIndex = n === stop ? 0 : -1;
  }

  function updateJump(): void {
    // The newest message of the list: a thread's reply is not news here.
    let newest = 0n;
    for (const m of view?.messages ?? []) if (!m.threadRootId && m.seq > newest) newest = m.seq;
    const distance = distanceFromBottom();
    if (distance < AT_BOTTOM_PX) {
      if (newest > newestSeen) newestSeen = newest;
      arrived = false;
    } else if (newest > newestSeen) {
      arrived = true;
    }
    jump.hidden = !view || !(distance > log.clientHeight || (arrived && distance >= AT_BOTTOM_PX));
    jumpNote.hidden = !arrived;
  }

  /** "Today" becomes "Yesterday" at midnight, whether or not anything else happens. */
  function scheduleMidnight(): void {
    window.clearTimeout(midnightTimer);
    const now = new Date();
    midnightTimer = window.setTimeout(() => render(view), nextMidnight(now).getTime() - now.getTime() + 1_000);
  }

  jump.addEventListener("click", () => {
    log.scrollTop = log.scrollHeight;
    updateJump();
    // The button is gone: the focus goes to the newest message, not the page.
    const nodes = messageNodes();
    nodes[nodes.length - 1]?.focus({ preventScroll: true });
  });
  log.addEventListener("scroll", updateJump, { passive: true });
  log.addEventListener("focusin", (ev) => {
    const li = (ev.target as HTMLElement).closest<HTMLElement>(MESSAGE);
    if (li) {
      focusSeq = li.dataset.seq;
      updateTabStop();
    }
  });
  log.addEventListener("keydown", (ev) => {
    const li = ev.target as HTMLElement;
    if (!li.matches(MESSAGE)) return;
    const nodes = messageNodes();
    const i = nodes.indexOf(li);
    const to = { ArrowUp: i - 1, ArrowDown: i + 1, Home: 0, End: nodes.length - 1 }[ev.key];
    if (to === undefined || !nodes[to]) return;
    ev.preventDefault();
    nodes[to].focus();
  });

  function reveal(seq: bigint): boolean {
    const node = messageNodes().find((n) => n.dataset.seq === seq.toString());
    if (!node) return false;
    node.scrollIntoView({ block: "center" });
    node.focus({ preventScroll: true });
    // Once only: the class comes off when its animation ends, so that the
    // same message can be highlighted again.
    node.classList.remove("highlight");
    void node.offsetWidth;
    node.classList.add("highlight");
    window.setTimeout(() => node.classList.remove("highlight"), HIGHLIGHT_MS);
    updateJump();
    return true;
  }

  return { element, log, render, opened, cameUnseen, reveal };
}

/** Between two days: read out as, say, "Yesterday". */
function dateSeparator(label: string, at: Date): HTMLElement {
  const date = fullDate(at);
  // A list item holding the separator: a list may hold only items.
  return h(
    "li",
    { class: "day-separator", "data-testid": "date-separator" },
    h("span", { role: "separator", "aria-label": label, title: label === date ? false : date }, label),
  );
}

/** "bob joined", among the messages. */
function noticeItem(notice: Notice): HTMLElement {
  return h(
    "li",
    { class: "notice", "data-testid": "member-event", "data-kind": notice.kind, "data-seq": notice.seq.toString() },
    h("span", { dir: "auto" }, notice.text),
  );
}

/** Above the first message the reader had not seen when the room opened. */
function newMessagesDivider(): HTMLElement {
  return h(
    "li",
    { class: "new-divider", "data-testid": "new-messages-divider" },
    h("span", { role: "separator", "aria-label": "New messages" }, "New messages"),
  );
}
