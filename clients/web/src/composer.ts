// The message composer: a text box that grows with its content to about
// six lines and then scrolls, a Send button, a counter that shows up near
// the limit, and a draft per room kept in localStorage.
//
// main.ts only opens it on a room (`setRoom`), hears of a message ready to
// go (`onSubmit`), and hands back one the server refused (`putBack`,
// `edit`). The text leaves the box only when `onSubmit` accepts it; a
// message too long never does, and the box says why in characters, as
// the server counts them.
//
// Keys: with a keyboard, Enter sends and Shift+Enter starts a new line; on
// touch screens (no fine pointer) Enter starts a new line and the Send
// button sends. Ctrl/Cmd+Enter sends everywhere; a key that ends an IME
// composition never does.
import { h } from "./dom";
import { MESSAGE_MAX_CHARS, charCount } from "./limits";
import { MentionPicker } from "./mentions";

/** The counter shows from here on: 90% of the limit. */
const COUNT_FROM = Math.ceil(MESSAGE_MAX_CHARS * 0.9);
/**
 * A draft longer than this is cut when stored: twice the limit keeps a
 * message too long to send across a reload, for shortening, while a
 * pasted book does not fill the browser's storage.
 */
const DRAFT_MAX_CHARS = 2 * MESSAGE_MAX_CHARS;

export interface ComposerOptions {
  /** The localStorage key of this person's drafts. */
  draftsKey: () => string;
  /**
   * A message that passed the checks, for the open room: true when it was
   * accepted for sending (it then leaves the composer and its draft).
   */
  onSubmit: (roomId: string, text: string) => boolean;
  /** Called as the text changes (typing hints). */
  onInput?: () => void;
  /** The composer's height changed by `delta` pixels. */
  onResize?: (delta: number) => void;
  /**
   * The usernames `@` offers in the open room (mentions.ts); none: no
   * autocomplete.
   */
  mentionNames?: (roomId: string) => Iterable<string>;
  /**
   * For a second composer on the page (a thread's): its text box's test id
   * (its Send button's is `<testId>-send`, its status line's id
   * `<testId>-status`), accessible name and placeholder.
   */
  testId?: string;
  label?: string;
  placeholder?: string;
}

/** Whether this device's main pointer is a finger: Enter then makes a new line. */
function touchFirst(): boolean {
  return window.matchMedia("(pointer: coarse)").matches;
}

export class Composer {
  /** The whole composer, for the page's layout. */
  readonly root: HTMLElement;
  private readonly box: HTMLTextAreaElement;
  private readonly sendButton: HTMLButtonElement;
  private readonly counter: HTMLElement;
  private readonly note: HTMLElement;
  private roomId = "";
  /** The drafts key `roomId` was opened under (drafts are per person). */
  private openedKey = "";
  private readonly mentions: MentionPicker | undefined;

  constructor(private readonly opts: ComposerOptions) {
    const testId = opts.testId ?? "composer";
    const statusId = `${testId}-status`;
    this.box = h("textarea", {
      rows: 1,
      placeholder: opts.placeholder ?? "Write a message…",
      "data-testid": testId,
      "aria-label": opts.label ?? "Message",
      "aria-describedby": statusId,
      dir: "auto",
      disabled: true,
      onkeydown: (ev: KeyboardEvent) => this.keydown(ev),
      oninput: () => {
        this.saveDraft(this.roomId, this.box.value);
        this.update();
        this.mentions?.update();
        this.opts.onInput?.();
      },
    }) as HTMLTextAreaElement;
    this.sendButton = h(
      "button",
      {
        type: "button",
        class: "primary send",
        "data-testid": opts.testId ? `${opts.testId}-send` : "send",
        disabled: true,
        // The text box keeps the focus (and a phone its keyboard) when Send is tapped.
        onmousedown: (ev: MouseEvent) => ev.preventDefault(),
        onclick: () => {
          this.submit();
          if (!touchFirst()) this.box.focus();
        },
      },
      "Send",
    ) as HTMLButtonElement;
    this.counter = h("span", { "data-testid": "composer-counter" });
    this.note = h("span", { "data-testid": "composer-note" });
    this.root = h(
      "div",
      { class: "composer" },
      this.box,
      this.sendButton,
      // Read out politely, and only near the limit: it is empty before.
      h("p", { id: statusId, class: "composer-status", role: "status", "aria-live": "polite" }, this.counter, this.note),
    );
    const names = opts.mentionNames;
    if (names) {
      this.mentions = new MentionPicker(this.box, () => (this.roomId ? names(this.roomId) : []), () => {
        this.saveDraft(this.roomId, this.box.value);
        this.update();
      });
      this.root.append(this.mentions.element);
    }
    this.describeKeys();
    window.matchMedia("(pointer: coarse)").addEventListener("change", () => this.describeKeys());
    window.addEventListener("resize", () => this.fit());
  }

  /** The text in the box. */
  get text(): string {
    return this.box.value;
  }

  /**
   * Opens the composer on a room, with that room's draft; "" closes it
   * (no room: nothing can be written).
   */
  setRoom(roomId: string): void {
    const key = this.opts.draftsKey();
    if (roomId !== this.roomId || key !== this.openedKey) {
      this.roomId = roomId;
      this.openedKey = key;
      this.box.value = roomId ? (this.drafts()[roomId] ?? "") : "";
    }
    this.box.disabled = !roomId;
    this.mentions?.close();
    this.update();
  }

  focus(): void {
    this.box.focus();
  }

  /** Sends what is written, if it may go: not empty, not too long. */
  submit(): void {
    const text = this.box.value;
    if (!this.roomId || this.box.disabled || !text.trim()) return;
    // Too long: the note under the box already says so, in characters.
    if (charCount(text) > MESSAGE_MAX_CHARS) return;
    if (!this.opts.onSubmit(this.roomId, text)) return;
    this.box.value = "";
    this.saveDraft(this.roomId, "");
    this.mentions?.close();
    this.update();
  }

  /**
   * A message refused for good goes back to its room's composer, to be
   * fixed and sent again, but only when that composer is empty: false
   * when it holds other text (the caller keeps the message elsewhere).
   */
  putBack(roomId: string, text: string): boolean {
    if (roomId === this.roomId) {
      if (this.box.value.trim()) return false;
      this.box.value = text;
      this.saveDraft(roomId, text);
      this.update();
      return true;
    }
    if (this.drafts()[roomId]?.trim()) return false;
    this.saveDraft(roomId, text);
    return true;
  }

  /**
   * Puts a refused message in the open room's composer for editing, after
   * whatever is written there already (on a line of its own): nothing
   * written is lost.
   */
  edit(text: string): void {
    if (!this.roomId) return;
    const written = this.box.value.replace(/\s+$/, "");
    this.box.value = written ? `${written}\n${text}` : text;
    this.saveDraft(this.roomId, this.box.value);
    this.update();
    this.box.focus();
    this.box.setSelectionRange(this.box.value.length, this.box.value.length);
  }

  /** Forgets the drafts of rooms not in `roomIds` (rooms left). */
  keepDraftsOf(roomIds: Set<string>): void {
    const drafts = this.drafts();
    for (const id of Object.keys(drafts)) if (!roomIds.has(id)) delete drafts[id];
    this.storeDrafts(drafts);
  }

  /** Forgets every draft of this person, and empties the box (logging out). */
  clearDrafts(): void {
    this.storeDrafts({});
    this.box.value = "";
    this.setRoom("");
  }

  /** Fits the box's height to its text, up to the CSS max-height; past it, the text scrolls. */
  fit(): void {
    const box = this.box;
    // Hidden (another page is showing): nothing to measure; done when shown.
    if (!box.offsetParent) return;
    const before = box.offsetHeight;
    box.style.height = "auto";
    const style = getComputedStyle(box);
    const border = parseFloat(style.borderTopWidth) + parseFloat(style.borderBottomWidth);
    box.style.height = `${box.scrollHeight + border}px`;
    box.style.overflowY = box.scrollHeight > box.clientHeight ? "auto" : "hidden";
    const after = box.offsetHeight;
    if (after !== before) this.opts.onResize?.(after - before);
  }

  private keydown(ev: KeyboardEvent): void {
    // The mention list, while open, takes the arrows, Enter, Tab and Escape.
    if (this.mentions?.keydown(ev)) return;
    // keyCode 229: a key that an IME took (Safari ends compositions so).
    if (ev.key !== "Enter" || ev.isComposing || ev.keyCode === 229) return;
    const sends = ev.ctrlKey || ev.metaKey || (!touchFirst() && !ev.shiftKey && !ev.altKey);
    if (!sends) return;
    ev.preventDefault();
    this.submit();
  }

  /** Says what Enter does here, to people and to the on-screen keyboard. */
  private describeKeys(): void {
    const touch = touchFirst();
    this.box.title = touch
      ? "Enter starts a new line; the Send button sends"
      : "Enter sends, Shift+Enter starts a new line";
    this.box.setAttribute("enterkeyhint", touch ? "enter" : "send");
  }

  /** The counter, the note and Send, for the text as it is. */
  private update(): void {
    const n = this.box.value.length >= COUNT_FROM ? charCount(this.box.value) : 0;
    const over = n - MESSAGE_MAX_CHARS;
    this.counter.textContent =
      n < COUNT_FROM ? "" : over > 0 ? `${over} over the limit` : `${MESSAGE_MAX_CHARS - n} left`;
    const note = over > 0 ? ` · Too long to send: a message can be at most ${MESSAGE_MAX_CHARS} characters.` : "";
    this.note.textContent = note;
    this.root.classList.toggle("counting", n >= COUNT_FROM);
    this.root.classList.toggle("over", over > 0);
    if (over > 0) this.box.setAttribute("aria-invalid", "true");
    else this.box.removeAttribute("aria-invalid");
    this.sendButton.disabled = !this.roomId || over > 0;
    this.fit();
  }

  private drafts(): Record<string, string> {
    try {
      const raw = JSON.parse(localStorage.getItem(this.opts.draftsKey()) ?? "{}") as unknown;
      return raw && typeof raw === "object" ? (raw as Record<string, string>) : {};
    } catch {
      return {};
    }
  }

  private storeDrafts(drafts: Record<string, string>): void {
    const key = this.opts.draftsKey();
    try {
      if (Object.keys(drafts).length) localStorage.setItem(key, JSON.stringify(drafts));
      else localStorage.removeItem(key);
    } catch {
      // Storage full or refused: the draft lives on in the box only.
    }
  }

  /** Keeps `text` as the room's draft; empty (or blank) text removes it. */
  private saveDraft(roomId: string, text: string): void {
    if (!roomId) return;
    const drafts = this.drafts();
    if (!text.trim()) delete drafts[roomId];
    else drafts[roomId] = text.length > DRAFT_MAX_CHARS ? Array.from(text).slice(0, DRAFT_MAX_CHARS).join("") : text;
    this.storeDrafts(drafts);
  }
}
