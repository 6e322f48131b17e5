// The side panel beside the message list: the slot where a thread, search
// results, a file or a member list opens without leaving the room. Empty
// and hidden until a feature opens it; on a phone it covers the room.
import "./panel.css";
import { h, clear } from "./dom";

/**
 * Where the focus goes back to on closing: an element, or a function that
 * finds it then (the element that opened the panel may have been rebuilt).
 */
export type Opener = HTMLElement | (() => HTMLElement | null | undefined);

export interface SidePanel {
  element: HTMLElement;
  /**
   * Shows `content` under `title`, in place of what was there. × or Escape
   * closes it, and the focus goes back to `opener`. `onClose` is told when
   * this content leaves the panel (closed, or replaced by other content).
   */
  open(title: string, content: Node, opener?: Opener, onClose?: () => void): void;
  close(): void;
  readonly isOpen: boolean;
}

export function createSidePanel(): SidePanel {
  const heading = h("h2", { id: "side-panel-title" });
  const body = h("div", { class: "side-panel-body" });
  let opener: Opener | undefined;
  let closed: (() => void) | undefined;
  const left = () => {
    const f = closed;
    closed = undefined;
    f?.();
  };
  const closeButton = h(
    "button",
    { type: "button", class: "icon", title: "Close", "aria-label": "Close", "data-testid": "side-panel-close" },
    "×",
  );
  const element = h(
    "aside",
    { class: "side-panel", "data-testid": "side-panel", "aria-labelledby": "side-panel-title", hidden: true },
    h("div", { class: "pane-head" }, heading, closeButton),
    body,
  );

  const panel: SidePanel = {
    element,
    open(title, content, from, onClose) {
      left();
      opener = from;
      closed = onClose;
      heading.textContent = title;
      closeButton.setAttribute("aria-label", `Close ${title.toLowerCase()}`);
      closeButton.title = `Close ${title.toLowerCase()}`;
      clear(body);
      body.append(content);
      element.hidden = false;
      closeButton.focus();
    },
    close() {
      if (element.hidden) return;
      element.hidden = true;
      clear(body);
      left();
      const back = typeof opener === "function" ? opener() : opener;
      opener = undefined;
      if (back?.isConnected) back.focus();
    },
    get isOpen() {
      return !element.hidden;
    },
  };
  closeButton.addEventListener("click", () => panel.close());
  element.addEventListener("keydown", (ev) => {
    if (ev.key === "Escape") {
      ev.stopPropagation();
      panel.close();
    }
  });
  return panel;
}
