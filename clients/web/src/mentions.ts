// Mention autocomplete: typing `@` and the start of a name in a composer
// offers the room's people in a list under the caret's line; the arrow
// keys move in it, Enter or Tab puts `@username ` in the text, Escape
// closes it. The ARIA 1.2 combobox pattern: the text box is the combobox,
// the list a listbox whose active option the box names
// (aria-activedescendant), so the focus never leaves the text.
import "./mentions.css";
import { h } from "./dom";

/** The most names offered at once. */
const MAX_OPTIONS = 8;

/**
 * The `@word` being typed just before the caret: `@` at the start or after
 * a character that cannot be part of a name, then name characters (those
 * of usernames: letters, digits, `_`, `.`, `-`).
 */
const TYPED = /(?:^|[^A-Za-z0-9_.@-])@([A-Za-z0-9_.-]*)$/;

/** Where the `@word` before the caret starts, and what follows the `@`. */
export function typedMention(text: string, caret: number): { start: number; prefix: string } | undefined {
  const m = TYPED.exec(text.slice(0, caret));
  if (!m) return undefined;
  return { start: caret - m[1].length - 1, prefix: m[1] };
}

/**
 * The names that fit `prefix`: those starting with it first, then those
 * holding it, each group in alphabetical order, without regard to case.
 */
export function matchNames(names: Iterable<string>, prefix: string, max = MAX_OPTIONS): string[] {
  const p = prefix.toLowerCase();
  const starts: string[] = [];
  const holds: string[] = [];
  const seen = new Set<string>();
  for (const name of names) {
    const key = name.toLowerCase();
    if (seen.has(key)) continue;
    seen.add(key);
    if (key.startsWith(p)) starts.push(name);
    else if (p && key.includes(p)) holds.push(name);
  }
  const byName = (a: string, b: string) => a.localeCompare(b, undefined, { sensitivity: "base" });
  return [...starts.sort(byName), ...holds.sort(byName)].slice(0, max);
}

let lists = 0;

export class MentionPicker {
  /** The listbox: goes beside the text box, in a positioned parent. */
  readonly element: HTMLElement;
  private options: string[] = [];
  private active = 0;
  private typed: { start: number; prefix: string } | undefined;
  private readonly id = `mention-list-${++lists}`;

  constructor(
    private readonly box: HTMLTextAreaElement,
    /** The usernames that may be offered (the reader's own left out). */
    private readonly names: () => Iterable<string>,
    /** Called after a name went into the text (the composer saves its draft). */
    private readonly inserted: () => void,
  ) {
    this.element = h("ul", {
      id: this.id,
      class: "mention-list",
      role: "listbox",
      "aria-label": "People to mention",
      "data-testid": "mention-list",
      hidden: true,
    });
    box.setAttribute("role", "combobox");
    box.setAttribute("aria-autocomplete", "list");
    box.setAttribute("aria-controls", this.id);
    box.setAttribute("aria-expanded", "false");
    // The caret moved (a click, the arrow keys along the line): look again.
    box.addEventListener("click", () => this.update());
    box.addEventListener("keyup", (ev) => {
      if (ev.key === "ArrowLeft" || ev.key === "ArrowRight" || ev.key === "Home" || ev.key === "End") this.update();
    });
    box.addEventListener("blur", () => this.close());
  }

  get isOpen(): boolean {
    return !this.element.hidden;
  }

  /** Looks at the text before the caret: offers names, or closes. */
  update(): void {
    const caret = this.box.selectionStart ?? 0;
    this.typed = this.box.selectionStart === this.box.selectionEnd ? typedMention(this.box.value, caret) : undefined;
    const options = this.typed ? matchNames(this.names(), this.typed.prefix) : [];
    // Nothing to offer, or the name is typed out in full and is the only
    // one that fits: Enter sends, as it would without the list.
    const done = options.length === 1 && options[0].toLowerCase() === this.typed?.prefix.toLowerCase();
    if (!options.length || done) return this.close();
    const before = this.options[this.active];
    this.options = options;
    // The same name stays chosen while the list narrows.
    this.active = Math.max(0, options.indexOf(before ?? ""));
    this.render();
  }

  close(): void {
    if (this.element.hidden && !this.options.length) return;
    this.options = [];
    this.element.hidden = true;
    this.element.replaceChildren();
    this.box.setAttribute("aria-expanded", "false");
    this.box.removeAttribute("aria-activedescendant");
  }

  /** A key in the text box: true when the list used it (the composer then ignores it). */
  keydown(ev: KeyboardEvent): boolean {
    if (!this.isOpen || ev.isComposing || ev.keyCode === 229) return false;
    const n = this.options.length;
    switch (ev.key) {
      case "ArrowDown":
        this.active = (this.active + 1) % n;
        break;
      case "ArrowUp":
        this.active = (this.active - 1 + n) % n;
        break;
      case "Enter":
      case "Tab":
        if (ev.shiftKey || ev.ctrlKey || ev.metaKey || ev.altKey) return false;
        this.insert(this.options[this.active]);
        break;
      case "Escape":
        this.close();
        break;
      default:
        return false;
    }
    ev.preventDefault();
    // Escape closes the list only, not what holds the composer (a panel).
    ev.stopPropagation();
    if (this.isOpen) this.render();
    return true;
  }

  /** Puts `@name ` in place of the `@word` being typed. */
  private insert(name: string): void {
    const typed = this.typed;
    if (!typed) return this.close();
    const caret = typed.start + 1 + typed.prefix.length;
    const text = this.box.value;
    const after = text.slice(caret);
    const mention = `@${name}${after.startsWith(" ") ? "" : " "}`;
    this.box.value = text.slice(0, typed.start) + mention + after;
    const at = typed.start + mention.length + (after.startsWith(" ") ? 1 : 0);
    this.box.setSelectionRange(at, at);
    this.close();
    this.inserted();
  }

  private render(): void {
    this.element.replaceChildren(
      ...this.options.map((name, i) =>
        h(
          "li",
          {
            id: `${this.id}-${i}`,
            role: "option",
            class: "mention-option",
            "data-testid": "mention-option",
            "data-username": name,
            "aria-selected": i === this.active ? "true" : "false",
            // The text box keeps the focus (and a phone its keyboard).
            onmousedown: (ev: MouseEvent) => ev.preventDefault(),
            onclick: () => {
              this.active = i;
              this.insert(name);
            },
          },
          h("span", { class: "mention-at", "aria-hidden": "true" }, "@"),
          name,
        ),
      ),
    );
    this.element.hidden = false;
    this.box.setAttribute("aria-expanded", "true");
    this.box.setAttribute("aria-activedescendant", `${this.id}-${this.active}`);
    this.element.children[this.active]?.scrollIntoView({ block: "nearest" });
  }
}
