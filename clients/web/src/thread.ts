// A thread in the side panel (panel.ts): its root message, its replies
// (ListThread, older ones a page at a time), replies as they come (stream
// `message` events whose thread_root_id is the root's), and a composer of
// its own that sends with thread_root_id.
//
// main.ts makes one with createThreads, opens it for a root message
// (`open`, which the message menu's "Reply in thread" and a root's
// "N replies" call), and hands it every message the stream or a send
// brings (`receive`) and every edit and deletion (`update`, `erase`).
import "./thread.css";
import { ConnectError } from "@connectrpc/connect";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import type { Message } from "./gen/chat/v1/chat_pb";
import { chatClient, describe } from "./api";
import { h } from "./dom";
import { Composer } from "./composer";
import type { SidePanel } from "./panel";
import { messageItem, type MessageExtensions, type MessagePart } from "./messages/message";

/** Replies fetched per ListThread page. */
const PAGE = 50;

export interface ThreadOptions {
  panel: SidePanel;
  me: () => { id: string } | undefined;
  /** The localStorage key of the thread composers' drafts (one per root). */
  draftsKey: () => string;
  /** The usernames `@` offers in a room. */
  mentionNames: (roomId: string) => Iterable<string>;
  /** A reply sent from the panel: main.ts takes it as it takes any message. */
  sent: (m: Message) => void;
  showError: (text: string) => void;
  /** More of each message, and what one can do with it (as in the room's list). */
  ext?: MessageExtensions;
}

export interface Threads {
  /** Opens the panel on `root`'s thread; the focus goes back to `opener` when it closes. */
  open(root: Message, opener?: HTMLElement): void;
  /** The open thread's root id, or "" while none is open. */
  readonly rootId: string;
  /** A message of a room: shown if it is the open thread's root or one of its replies. */
  receive(m: Message): void;
  /** A message as it is now (edited, or a tombstone). */
  update(m: Message): void;
  /** A message was deleted. */
  erase(roomId: string, messageId: string): void;
}

const bySeq = (a: Message, b: Message) => (a.seq < b.seq ? -1 : a.seq > b.seq ? 1 : 0);

/** "1 reply", "3 replies". */
export function repliesText(n: number): string {
  return `${n} ${n === 1 ? "reply" : "replies"}`;
}

/**
 * Under a thread's root in the room: "3 replies", which opens the thread.
 * A part of the message list (list.ts's `parts`).
 */
export function threadSummary(open: (root: Message, opener: HTMLElement) => void): MessagePart {
  return (m) => {
    if (m.threadRootId || !m.threadReplyCount) return null;
    const last = m.threadLastReplyAt ? timestampDate(m.threadLastReplyAt) : undefined;
    const button: HTMLElement = h(
      "button",
      {
        type: "button",
        class: "link thread-summary",
        "data-testid": "thread-summary",
        title: last ? `Last reply ${last.toLocaleString()}` : false,
        onclick: () => open(m, button),
      },
      repliesText(m.threadReplyCount),
    );
    return h("div", { class: "thread-summary-line" }, button);
  };
}

export function createThreads(opts: ThreadOptions): Threads {
  const ext: MessageExtensions = opts.ext ?? { parts: [], actions: [] };
  /** The open thread: its room and root, while one is open. */
  let open: { roomId: string; rootId: string } | undefined;
  /** The root message, once known. */
  let root: Message | undefined;
  /** The open thread's replies by seq. */
  let replies = new Map<bigint, Message>();
  let hasMore = false;
  let loading = false;
  /** Which open made the current content (a later open wins over an older answer). */
  let generation = 0;

  const rootList = h("ol", { class: "messages thread-root", "aria-label": "Thread's first message" });
  const count = h("p", { class: "thread-count", "data-testid": "thread-count" });
  const loadOlder = h(
    "button",
    { type: "button", class: "load-older", "data-testid": "thread-load-older", hidden: true },
    "Load older replies",
  ) as HTMLButtonElement;
  const list = h("ol", { class: "messages thread-replies", "data-testid": "thread-replies", "aria-label": "Replies" });
  const log = h("div", { class: "thread-log", role: "log", "aria-live": "polite", "aria-label": "Replies" }, list);
  const scroller = h("div", { class: "thread-scroll" }, rootList, count, loadOlder, log);
  const composer = new Composer({
    draftsKey: () => opts.draftsKey(),
    onSubmit: (rootId, text) => {
      if (!open || open.rootId !== rootId) return false;
      void send(open, text);
      return true;
    },
    mentionNames: () => (open ? opts.mentionNames(open.roomId) : []),
    testId: "thread-composer",
    label: "Reply in thread",
    placeholder: "Reply in thread…",
  });
  const content = h(
    "section",
    { class: "thread", "data-testid": "thread", "aria-label": "Thread" },
    scroller,
    composer.root,
  );
  /** Nodes kept by message and sig, so that a new reply adds one node. */
  let kept = new Map<string, { m: Message; node: HTMLElement }>();

  const atBottom = () => scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 60;

  function item(key: string, m: Message, head: boolean): HTMLElement {
    const old = kept.get(key);
    if (old && old.m === m && old.node.classList.contains("head") === head) return old.node;
    const node = messageItem(m, { me: opts.me()?.id, head }, ext);
    kept.set(key, { m, node });
    return node;
  }

  function render(toBottom = false): void {
    if (!open) return;
    const follow = toBottom || atBottom();
    const old = kept;
    kept = new Map();
    const keep = (key: string) => {
      const k = old.get(key);
      if (k) kept.set(key, k);
    };
    keep("root");
    rootList.replaceChildren(root ? item("root", root, true) : h("li", { class: "empty" }, "Loading…"));
    const sorted = [...replies.values()].sort(bySeq);
    const n = Math.max(root?.threadReplyCount ?? 0, sorted.length);
    count.textContent = n ? repliesText(n) : root ? "No replies yet" : "";
    let prev: Message | undefined;
    const nodes = sorted.map((m) => {
      const key = `r:${m.seq}`;
      keep(key);
      const head = !prev || prev.sender?.id !== m.sender?.id;
      prev = m;
      return item(key, m, head);
    });
    // Nodes that stay are not moved (the focus and a selection survive).
    const wanted = new Set<Node>(nodes);
    for (const child of [...list.children]) if (!wanted.has(child)) child.remove();
    let cursor = list.firstChild;
    for (const node of nodes) {
      if (node === cursor) cursor = cursor.nextSibling;
      else list.insertBefore(node, cursor);
    }
    loadOlder.hidden = !hasMore;
    if (follow) scroller.scrollTop = scroller.scrollHeight;
  }

  async function load(t: { roomId: string; rootId: string }, gen: number, before: bigint): Promise<void> {
    loading = true;
    try {
      const res = await chatClient.listThread({ roomId: t.roomId, threadRootId: t.rootId, beforeSeq: before, limit: PAGE });
      if (gen !== generation) return;
      if (res.root) root = res.root;
      for (const m of res.messages) replies.set(m.seq, m);
      // Older pages only: a newer page does not say whether older ones remain.
      if (!before || res.messages.length) hasMore = res.hasMore;
      const oldHeight = scroller.scrollHeight;
      render(!before);
      if (before) scroller.scrollTop += scroller.scrollHeight - oldHeight;
    } catch (e) {
      if (gen === generation) opts.showError(`Could not load the thread: ${describe(e)}`);
    } finally {
      if (gen === generation) loading = false;
    }
  }

  function oldest(): bigint {
    let min = 0n;
    for (const s of replies.keys()) if (min === 0n || s < min) min = s;
    return min;
  }

  loadOlder.addEventListener("click", () => {
    if (open && hasMore && !loading) void load(open, generation, oldest());
  });
  scroller.addEventListener("scroll", () => {
    if (scroller.scrollTop < 40 && open && hasMore && !loading) void load(open, generation, oldest());
  }, { passive: true });

  async function send(t: { roomId: string; rootId: string }, text: string): Promise<void> {
    try {
      const res = await chatClient.sendMessage({
        roomId: t.roomId,
        text,
        clientMsgId: crypto.randomUUID(),
        threadRootId: t.rootId,
      });
      if (res.message) {
        receive(res.message);
        opts.sent(res.message);
      }
      if (open?.rootId === t.rootId) render(true);
    } catch (e) {
      const err = ConnectError.from(e);
      // Not lost: back in the thread's composer (if it is empty), and said.
      const back = composer.putBack(t.rootId, text);
      opts.showError(`Reply not sent: ${describe(err)}${back ? ". It is back in the thread's composer." : ""}`);
    }
  }

  function receive(m: Message): void {
    if (!open || m.roomId !== open.roomId || m.threadRootId !== open.rootId || replies.has(m.seq)) return;
    replies.set(m.seq, m);
    if (root) root = { ...root, threadReplyCount: root.threadReplyCount + 1, threadLastReplyAt: m.sentAt };
    render(m.sender?.id === opts.me()?.id);
  }

  function update(m: Message): void {
    if (!open || !root || m.roomId !== open.roomId) return;
    if (m.id === root.id) {
      root = { ...root, text: m.text, editedAt: m.editedAt, deleted: m.deleted, mentions: m.mentions, replyTo: m.replyTo };
      render();
    } else if (replies.has(m.seq)) {
      const old = replies.get(m.seq)!;
      replies.set(m.seq, { ...old, text: m.text, editedAt: m.editedAt, deleted: m.deleted, mentions: m.mentions, replyTo: m.replyTo });
      render();
    }
  }

  function erase(roomId: string, messageId: string): void {
    if (!open || !root || roomId !== open.roomId) return;
    const tomb = (m: Message): Message => ({ ...m, text: "", deleted: true, editedAt: undefined, reactions: [], mentions: [] });
    if (root.id === messageId) {
      root = tomb(root);
      render();
      return;
    }
    for (const [s, m] of replies) {
      if (m.id === messageId) {
        replies.set(s, tomb(m));
        render();
      }
    }
  }

  return {
    open(m, opener) {
      // A reply's thread is its root's; the root shows once ListThread brings it.
      const t = { roomId: m.roomId, rootId: m.threadRootId || m.id };
      const gen = ++generation;
      open = t;
      root = m.threadRootId ? undefined : m;
      replies = new Map();
      hasMore = false;
      kept = new Map();
      list.replaceChildren();
      // Back to the button that opened it, or, if the list has rebuilt the
      // root since (its reply count changed), to the root's new one.
      const back = () => {
        if (opener?.isConnected) return opener;
        const item = document.querySelector<HTMLElement>(
          `[data-testid="messages"] [data-testid="message"][data-seq="${m.threadRootId ? "" : m.seq}"]`,
        );
        return item?.querySelector<HTMLElement>('[data-testid="thread-summary"]') ?? item;
      };
      opts.panel.open("Thread", content, back, () => {
        if (gen !== generation) return;
        generation++;
        open = undefined;
        root = undefined;
        replies = new Map();
        kept = new Map();
        composer.setRoom("");
      });
      composer.setRoom(t.rootId);
      render(true);
      void load(t, gen, 0n);
      composer.focus();
    },
    get rootId() {
      return open?.rootId ?? "";
    },
    receive,
    update,
    erase,
  };
}
