// One message in the list, put together from parts: a header (sender and
// time) or, within a group, a time in the left gutter shown on hover and
// focus; the text; the extra parts later features add (reactions, a
// thread's replies, file previews); and an action bar for what one can do
// with it (react, reply in a thread, delete).
//
// A later feature adds itself by handing createMessageList a MessagePart
// or a MessageAction (see list.ts); nothing here needs to change.
import { timestampDate } from "@bufbuild/protobuf/wkt";
import type { Message, User } from "../gen/chat/v1/chat_pb";
import { h } from "../dom";
import { blockedShown, displayName, isBlocked, showBlocked, usernameOf } from "../people";
import { renderText, type Mentions } from "./text";
import { fullDateTime, shortTime } from "./time";

/** What a message's parts may need to know besides the message. */
export interface MessageContext {
  /** The reader's user id. */
  me: string | undefined;
  /** The first message of a group: its sender and time show above it. */
  head: boolean;
}

/** More of a message below its text, or null when it has nothing to show. */
export type MessagePart = (m: Message, ctx: MessageContext) => Node | null;

/** Something one can do with a message: a button in its action bar. */
export interface MessageAction {
  /** Names the button: data-testid="message-action-<id>". */
  id: string;
  /** The button's accessible name, and its tooltip. */
  label: string;
  /** What the button shows, if not the label (an emoji, an icon). */
  icon?: string;
  /** Whether this message offers it (say, only one's own can be deleted). */
  available?: (m: Message, ctx: MessageContext) => boolean;
  run: (m: Message, button: HTMLElement) => void;
}

export interface MessageExtensions {
  parts: readonly MessagePart[];
  actions: readonly MessageAction[];
  /** Above the text (the message a reply quotes). */
  above?: readonly MessagePart[];
  /** In place of the text when it returns a node (the text being edited). */
  body?: (m: Message, ctx: MessageContext) => Node | null;
}

/** When the server stored the message (the reader's clock if it did not say). */
export function sentAt(m: Message): Date {
  return m.sentAt ? timestampDate(m.sentAt) : new Date();
}

export function messageItem(m: Message, ctx: MessageContext, ext: MessageExtensions): HTMLElement {
  const sender = m.sender?.username ?? "?";
  const name = m.sender ? displayName(m.sender) : "?";
  const mine = m.sender?.id !== undefined && m.sender.id === ctx.me;
  return h(
    "li",
    {
      class: `msg${mine ? " mine" : ""}${ctx.head ? " head" : " cont"}`,
      "data-testid": "message",
      "data-seq": m.seq.toString(),
      "data-id": m.id,
      "data-sender": sender,
      // Reached with the arrow keys (list.ts), which shows a grouped
      // message's time as hovering does.
      tabindex: -1,
    },
    ctx.head ? header(m.sender, name, sentAt(m)) : gutter(name, sentAt(m)),
    ...(ext.above ?? []).map((part) => part(m, ctx)),
    ext.body?.(m, ctx) ?? body(m, ctx),
    ...ext.parts.map((part) => part(m, ctx)),
    actionBar(m, ctx, ext.actions),
  );
}

function time(when: Date, className?: string): HTMLElement {
  return h(
    "time",
    { class: className, "data-testid": "message-time", datetime: when.toISOString(), title: fullDateTime(when) },
    shortTime(when),
  );
}

/** The first message of a group: who sent it (the username in its tooltip) and when. */
function header(user: User | undefined, name: string, when: Date): HTMLElement {
  return h(
    "div",
    { class: "meta" },
    h("span", { class: "sender", "data-testid": "message-sender", title: user ? usernameOf(user) : false, dir: "auto" }, name),
    time(when),
  );
}

/**
 * Within a group: the time sits in the left gutter, seen on hover and
 * focus; the sender is still there for screen readers.
 */
function gutter(sender: string, when: Date): DocumentFragment {
  const part = document.createDocumentFragment();
  part.append(h("span", { class: "visually-hidden" }, `${sender}:`), time(when, "gutter-time"));
  return part;
}

/** The people a message mentions, by lower-case name, and which of them is the reader. */
function mentionsOf(m: Message, me: string | undefined): Mentions {
  return new Map(m.mentions.map((u) => [u.username.toLowerCase(), u.id === me]));
}

function body(m: Message, ctx: MessageContext): HTMLElement {
  // A deleted message keeps its place (replies and threads point at it),
  // its text erased.
  if (m.deleted) {
    return h("div", { class: "text deleted", "data-testid": "message-text", "data-deleted": "true" }, "message deleted");
  }
  if (isBlocked(m.sender) && !blockedShown(m.id)) return collapsed(m, ctx);
  return text(m, ctx);
}

/**
 * A message from someone the reader blocks (it still comes in rooms they
 * share): collapsed, until "Show" puts its text in its place.
 */
function collapsed(m: Message, ctx: MessageContext): HTMLElement {
  const node = h(
    "div",
    { class: "text blocked", "data-testid": "blocked-message" },
    h("span", { class: "muted" }, "Message from a blocked user"),
    " ",
    h(
      "button",
      {
        type: "button",
        class: "link",
        "data-testid": "show-blocked",
        onclick: () => {
          showBlocked(m.id);
          const li = node.closest<HTMLElement>("li");
          node.replaceWith(text(m, ctx));
          // The button is gone: the focus stays on its message.
          li?.focus();
        },
      },
      "Show",
    ),
  );
  return node;
}

/** The message's text, and whether it was edited. */
function text(m: Message, ctx: MessageContext): HTMLElement {
  const edited = m.editedAt ? timestampDate(m.editedAt) : undefined;
  // dir="auto": each message takes the direction of its own first strong
  // character, so Arabic and Hebrew read right to left.
  return h(
    "div",
    { class: "text", "data-testid": "message-text", dir: "auto" },
    ...renderText(m.text, mentionsOf(m, ctx.me)),
    edited
      ? h("span", { class: "edited", "data-testid": "edited-mark", title: `Edited ${edited.toLocaleString()}` }, " (edited)")
      : null,
  );
}

function actionBar(m: Message, ctx: MessageContext, actions: readonly MessageAction[]): HTMLElement | null {
  const offered = actions.filter((a) => a.available?.(m, ctx) ?? true);
  if (!offered.length) return null;
  return h(
    "div",
    {
      class: "actions",
      role: "toolbar",
      "aria-label": "Message actions",
      "data-testid": "message-actions",
      onkeydown: toolbarKeys,
    },
    ...offered.map((a) => {
      const button: HTMLElement = h(
        "button",
        {
          type: "button",
          class: "icon",
          title: a.label,
          "aria-label": a.label,
          "data-testid": `message-action-${a.id}`,
          onclick: () => a.run(m, button),
        },
        a.icon ?? a.label,
      );
      return button;
    }),
  );
}

/**
 * In the action bar, the arrow keys move between its buttons (as in any
 * toolbar), and Escape goes back to the message.
 */
function toolbarKeys(ev: KeyboardEvent): void {
  const bar = ev.currentTarget as HTMLElement;
  const buttons = [...bar.querySelectorAll<HTMLElement>("button")];
  const i = buttons.indexOf(ev.target as HTMLElement);
  if (i < 0) return;
  if (ev.key === "Escape") {
    ev.preventDefault();
    ev.stopPropagation();
    bar.closest<HTMLElement>("li")?.focus();
    return;
  }
  const to = { ArrowLeft: i - 1, ArrowRight: i + 1, Home: 0, End: buttons.length - 1 }[ev.key];
  if (to === undefined) return;
  ev.preventDefault();
  ev.stopPropagation();
  buttons[(to + buttons.length) % buttons.length].focus();
}
