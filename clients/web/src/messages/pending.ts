// The "sending…" copy of one's own message, shown below the list until the
// server has stored it; a failed one says why and offers Retry and Discard,
// or, when the server refused it for good, Edit (sent again as it is, it
// would be refused again) and Discard.
import { h } from "../dom";
import { renderText } from "./text";

/** What the copy shows of a message on its way (main.ts's Pending). */
export interface PendingCopy {
  text: string;
  error?: string;
  /** Why the server refused it for good. */
  refused?: string;
}

export interface PendingHandlers<P extends PendingCopy> {
  retry: (p: P) => void;
  /** Back to the composer, to be fixed (a refused message). */
  edit: (p: P) => void;
  discard: (p: P) => void;
}

/** `live`: whether the connection is up; if not, the copy waits for it. */
export function pendingItem<P extends PendingCopy>(
  p: P,
  username: string,
  live: boolean,
  on: PendingHandlers<P>,
): HTMLElement {
  const error = p.refused ?? p.error;
  return h(
    "li",
    { class: `msg head mine pending${error ? " failed" : ""}`, "data-testid": "pending-message" },
    h(
      "div",
      { class: "meta" },
      h("span", { class: "sender" }, username),
      h(
        "span",
        { "data-testid": "pending-status" },
        error ? `Not sent: ${error}` : live ? "sending…" : "waiting for connection…",
      ),
    ),
    h("div", { class: "text", dir: "auto" }, ...renderText(p.text)),
    error
      ? h(
          "div",
          { class: "row" },
          p.refused
            ? h("button", { "data-testid": "edit-failed", onclick: () => on.edit(p) }, "Edit")
            : h("button", { "data-testid": "retry-send", onclick: () => on.retry(p) }, "Retry"),
          h("button", { onclick: () => on.discard(p) }, "Discard"),
        )
      : null,
  );
}
