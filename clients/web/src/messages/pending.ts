// The "sending…" copy of one's own message, shown below the list until the
// server has stored it; a failed one says why and offers Retry and Discard.
import { h } from "../dom";
import { renderText } from "./text";

/** What the copy shows of a message on its way (main.ts's Pending). */
export interface PendingCopy {
  text: string;
  error?: string;
}

export interface PendingHandlers<P extends PendingCopy> {
  retry: (p: P) => void;
  discard: (p: P) => void;
}

/** `live`: whether the connection is up; if not, the copy waits for it. */
export function pendingItem<P extends PendingCopy>(
  p: P,
  username: string,
  live: boolean,
  on: PendingHandlers<P>,
): HTMLElement {
  return h(
    "li",
    { class: `msg head mine pending${p.error ? " failed" : ""}`, "data-testid": "pending-message" },
    h(
      "div",
      { class: "meta" },
      h("span", { class: "sender" }, username),
      h(
        "span",
        { "data-testid": "pending-status" },
        p.error ? `Not sent: ${p.error}` : live ? "sending…" : "waiting for connection…",
      ),
    ),
    h("div", { class: "text", dir: "auto" }, ...renderText(p.text)),
    p.error
      ? h(
          "div",
          { class: "row" },
          h("button", { "data-testid": "retry-send", onclick: () => on.retry(p) }, "Retry"),
          h("button", { onclick: () => on.discard(p) }, "Discard"),
        )
      : null,
  );
}
