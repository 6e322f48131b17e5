// What one can do with a message, and what shows with it: the message
// menu (reply, react, edit, delete, reply in a thread), reaction chips,
// the quote of a reply, a thread's "N replies", editing in place, and
// the "Replying to…" bar above the composer.
//
// It plugs into the list's extension points (createMessageList({ parts,
// actions, above, body, variant })); main.ts holds the messages and
// hands it the hooks below to read and change them.
import type { Message } from "../gen/chat/v1/chat_pb";
import { chatClient, describe } from "../api";
import { h } from "../dom";
import { confirmDialog } from "../confirm";
import { displayName } from "../people";
import { applyReaction, tombstone } from "./events";
import type { MessageAction, MessageContext, MessagePart } from "./message";

/** The emoji the picker offers: the common ones. */
export const PICKER_EMOJI = ["👍", "❤️", "😂", "🎉", "😮", "😢", "🙏", "👀", "✅", "🔥"] as const;
/** How much of a quoted text the "Replying to" bar shows. */
const SNIPPET_CHARS = 80;

export interface ConversationHooks {
  /** The reader's user id. */
  me(): string | undefined;
  /** The message as held now (a button may have been built with an older copy). */
  current(m: Message): Message | undefined;
  /** Changes a held message, and shows the change. */
  change(m: Message, f: (held: Message) => Message): void;
  /** Shows the held messages again (what is being edited changed). */
  rerender(): void;
  /** Scrolls to the message `messageId` of the room, loading older pages if need be. */
  reveal(roomId: string, messageId: string): void;
  /** Opens the thread of `root` beside the room; the focus comes back to `opener`. */
  openThread(root: Message, opener: HTMLElement): void;
  focusComposer(): void;
  error(text: string): void;
}

export interface Conversation {
  actions: MessageAction[];
  parts: MessagePart[];
  above: MessagePart[];
  body: (m: Message, ctx: MessageContext) => Node | null;
  variant: (m: Message) => unknown;
  /** "Replying to …" with its cancel button: goes above the composer. */
  replyBar: HTMLElement;
  /** The room shown is `roomId`: the bar shows its reply target, if any. */
  openRoom(roomId: string): void;
  /** The message the next message of `roomId` replies to, forgotten as it is taken. */
  takeReply(roomId: string): Message | undefined;
}

export function createConversation(hooks: ConversationHooks): Conversation {
  /** Per room, the message the composer's next message quotes. */
  const replyTargets = new Map<string, Message>();
  let roomId = "";
  /** The message being edited, its text as typed so far, and whether its box is to take the focus. */
  let editing: { id: string; draft: string; focus: boolean } | undefined;

  const replyBar = h("div", { class: "reply-bar", "data-testid": "reply-bar", hidden: true });

  function renderReplyBar(): void {
    const target = replyTargets.get(roomId);
    replyBar.hidden = !target;
    if (!target) {
      replyBar.replaceChildren();
      return;
    }
    const sender = target.sender ? displayName(target.sender) : "?";
    replyBar.replaceChildren(
      h(
        "span",
        { class: "reply-bar-text", "data-testid": "reply-target" },
        "Replying to ",
        h("strong", {}, sender),
        h("span", { class: "reply-snippet", dir: "auto" }, `: ${snippet(target.text)}`),
      ),
      h(
        "button",
        {
          type: "button",
          class: "icon",
          title: "Cancel reply",
          "aria-label": "Cancel reply",
          "data-testid": "cancel-reply",
          onclick: () => {
            replyTargets.delete(roomId);
            renderReplyBar();
            hooks.focusComposer();
          },
        },
        "×",
      ),
    );
  }

  function startReply(m: Message): void {
    replyTargets.set(m.roomId, m);
    if (m.roomId === roomId) renderReplyBar();
    hooks.focusComposer();
  }

  /** Adds the reader's reaction, or takes it away if it is there. */
  async function toggleReaction(m: Message, emoji: string): Promise<void> {
    const held = hooks.current(m) ?? m;
    const mine = held.reactions.find((r) => r.emoji === emoji)?.reactedByMe ?? false;
    // Shown at once; the stream's event of it then changes nothing.
    hooks.change(m, (x) => applyReaction(x, emoji, !mine, true));
    try {
      const req = { roomId: m.roomId, messageId: m.id, emoji };
      if (mine) await chatClient.removeReaction(req);
      else await chatClient.addReaction(req);
    } catch (e) {
      hooks.change(m, (x) => applyReaction(x, emoji, mine, true));
      hooks.error(`Could not ${mine ? "remove" : "add"} the reaction: ${describe(e)}`);
    }
  }

  function startEdit(m: Message): void {
    editing = { id: m.id, draft: m.text, focus: true };
    hooks.rerender();
  }

  function stopEdit(): void {
    editing = undefined;
    hooks.rerender();
  }

  async function saveEdit(m: Message, text: string, box: HTMLTextAreaElement): Promise<void> {
    if (!text.trim()) return;
    if (text === m.text) return stopEdit();
    box.disabled = true;
    try {
      const res = await chatClient.editMessage({ roomId: m.roomId, messageId: m.id, text });
      const now = res.message;
      // The answer is the message now, reactions and all.
      if (now) hooks.change(m, () => now);
      if (editing?.id === m.id) stopEdit();
    } catch (e) {
      box.disabled = false;
      box.focus();
      hooks.error(`Could not edit the message: ${describe(e)}`);
    }
  }

  async function confirmDelete(m: Message): Promise<void> {
    const ok = await confirmDialog("Delete this message?", "Its text is erased for everyone. This cannot be undone.", "Delete");
    if (!ok) return;
    try {
      await chatClient.deleteMessage({ roomId: m.roomId, messageId: m.id });
      hooks.change(m, tombstone);
    } catch (e) {
      hooks.error(`Could not delete the message: ${describe(e)}`);
    }
  }

  const mine = (m: Message, ctx: MessageContext) => m.sender?.id !== undefined && m.sender.id === ctx.me;

  const actions: MessageAction[] = [
    {
      id: "reply",
      label: "Reply",
      icon: "↩",
      available: (m) => !m.deleted,
      run: (m) => startReply(m),
    },
    {
      id: "react",
      label: "Add reaction",
      icon: "☺",
      available: (m) => !m.deleted,
      run: (m, button) => void pickEmoji(button, (emoji) => void toggleReaction(m, emoji)),
    },
    {
      id: "thread",
      label: "Reply in thread",
      icon: "⤷",
      available: (m) => !m.threadRootId && (!m.deleted || m.threadReplyCount > 0),
      run: (m, button) => hooks.openThread(m, button),
    },
    {
      id: "edit",
      label: "Edit",
      icon: "✎",
      available: (m, ctx) => mine(m, ctx) && !m.deleted,
      run: (m) => startEdit(m),
    },
    {
      id: "delete",
      label: "Delete",
      icon: "⌫",
      available: (m, ctx) => mine(m, ctx) && !m.deleted,
      run: (m) => void confirmDelete(m),
    },
  ];

  /** The reaction chips: one per emoji, in order of first use. */
  const reactions: MessagePart = (m) => {
    if (!m.reactions.length) return null;
    return h(
      "div",
      { class: "reactions", role: "group", "aria-label": "Reactions", "data-testid": "reactions" },
      ...m.reactions.map((r) => {
        const who = `${r.count} ${r.count === 1 ? "reaction" : "reactions"}${r.reactedByMe ? ", yours among them" : ""}`;
        return h(
          "button",
          {
            type: "button",
            class: `reaction${r.reactedByMe ? " mine" : ""}`,
            "data-testid": "reaction",
            "data-emoji": r.emoji,
            "aria-pressed": r.reactedByMe ? "true" : "false",
            "aria-label": `${r.emoji} ${who}`,
            title: `${who}: click to ${r.reactedByMe ? "remove yours" : "add yours"}`,
            onclick: () => void toggleReaction(m, r.emoji),
          },
          h("span", { class: "reaction-emoji" }, r.emoji),
          h("span", { class: "reaction-count", "data-testid": "reaction-count" }, String(r.count)),
        );
      }),
    );
  };

  /** The message a reply quotes, as it is now; a click goes to it. */
  const quote: MessagePart = (m) => {
    const q = m.replyTo;
    if (!q) return null;
    const sender = q.sender ? displayName(q.sender) : "?";
    return h(
      "button",
      {
        type: "button",
        class: "quote",
        "data-testid": "reply-quote",
        "data-quoted-id": q.messageId,
        title: "Go to the quoted message",
        onclick: () => hooks.reveal(m.roomId, q.messageId),
      },
      h("span", { class: "visually-hidden" }, "Go to the message this replies to: "),
      h("span", { class: "quote-sender" }, sender),
      q.deleted
        ? h("span", { class: "quote-text deleted", "data-testid": "quote-text" }, "deleted message")
        : h("span", { class: "quote-text", "data-testid": "quote-text", dir: "auto" }, snippet(q.text)),
    );
  };

  /** The text being edited, in place of the message's text. */
  const body = (m: Message): Node | null => {
    if (editing?.id !== m.id || m.deleted) return null;
    const state = editing;
    // Rebuilt while typing in it (a reaction came): the focus stays in it.
    const refocus = document.activeElement?.getAttribute("data-testid") === "edit-box";
    const box = h("textarea", {
      class: "edit-box",
      "data-testid": "edit-box",
      "aria-label": "Edit message",
      "aria-describedby": "edit-hint",
      dir: "auto",
      rows: Math.min(8, state.draft.split("\n").length),
      oninput: () => {
        state.draft = box.value;
      },
      onkeydown: (ev: KeyboardEvent) => {
        if (ev.key === "Escape") {
          ev.preventDefault();
          ev.stopPropagation();
          stopEdit();
        } else if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing && ev.keyCode !== 229) {
          ev.preventDefault();
          void saveEdit(m, box.value, box);
        }
      },
    }) as HTMLTextAreaElement;
    box.value = state.draft;
    const editor = h(
      "div",
      { class: "editor", "data-testid": "editor" },
      box,
      h(
        "div",
        { class: "edit-row" },
        h("span", { id: "edit-hint", class: "muted small" }, "Enter saves · Escape cancels"),
        h("button", { type: "button", onclick: () => stopEdit() }, "Cancel"),
        h("button", { type: "button", class: "primary", onclick: () => void saveEdit(m, box.value, box) }, "Save"),
      ),
    );
    if (refocus || state.focus) {
      const fresh = state.focus;
      state.focus = false;
      // Once the list has put it in the page (and moved the focus about).
      queueMicrotask(() => {
        if (!box.isConnected) return;
        box.focus();
        if (fresh) box.setSelectionRange(box.value.length, box.value.length);
      });
    }
    return editor;
  };

  return {
    actions,
    parts: [reactions],
    above: [quote],
    body,
    variant: (m) => (editing?.id === m.id ? editing : undefined),
    replyBar,
    openRoom(id) {
      roomId = id;
      if (editing) editing = undefined;
      renderReplyBar();
    },
    takeReply(id) {
      const target = replyTargets.get(id);
      replyTargets.delete(id);
      if (id === roomId) renderReplyBar();
      return target;
    },
  };
}

/** The start of a text on one line, for a preview. */
function snippet(text: string): string {
  const line = text.replace(/\s+/g, " ").trim();
  const chars = [...line];
  return chars.length > SNIPPET_CHARS ? `${chars.slice(0, SNIPPET_CHARS).join("")}…` : line;
}

/**
 * The emoji picker, beside the button that opened it: a small grid of
 * common emoji. Picking one, Escape or a click outside closes it.
 */
function pickEmoji(opener: HTMLElement, pick: (emoji: string) => void): void {
  const dialog = h(
    "dialog",
    { class: "emoji-picker", "data-testid": "emoji-picker", "aria-label": "Pick a reaction" },
    h(
      "div",
      { class: "emoji-grid", role: "group", "aria-label": "Emoji" },
      ...PICKER_EMOJI.map((emoji) =>
        h(
          "button",
          {
            type: "button",
            class: "emoji",
            "data-testid": "emoji-option",
            "data-emoji": emoji,
            "aria-label": `React with ${emoji}`,
            onclick: () => {
              dialog.close();
              pick(emoji);
            },
          },
          emoji,
        ),
      ),
    ),
  ) as HTMLDialogElement;
  dialog.addEventListener("close", () => dialog.remove());
  // A click on the backdrop lands on the dialog itself.
  dialog.addEventListener("click", (ev) => {
    if (ev.target === dialog) dialog.close();
  });
  document.body.append(dialog);
  dialog.showModal();
  const at = opener.getBoundingClientRect();
  const box = dialog.getBoundingClientRect();
  const left = Math.max(8, Math.min(at.right - box.width, window.innerWidth - box.width - 8));
  const top = at.top - box.height - 6 > 8 ? at.top - box.height - 6 : at.bottom + 6;
  dialog.style.left = `${left}px`;
  dialog.style.top = `${top}px`;
}
