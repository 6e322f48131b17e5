// A modal dialog that asks before something that cannot be undone (a
// message deleted, a member removed or banned, a room handed over).
import { h } from "./dom";

/**
 * Asks `question`; resolves to true when confirmed. Escape or Cancel says
 * no; the focus goes back where it was. `extra` goes under the detail (say,
 * a field for a reason, read by the caller once this resolves).
 */
export function confirmDialog(question: string, detail: string, confirm: string, extra?: Node): Promise<boolean> {
  const dialog = h(
    "dialog",
    { class: "confirm", "data-testid": "confirm-dialog", "aria-labelledby": "confirm-title", "aria-describedby": "confirm-detail" },
    h(
      "form",
      { method: "dialog" },
      h("h2", { id: "confirm-title" }, question),
      h("p", { id: "confirm-detail" }, detail),
      extra ?? null,
      h(
        "div",
        { class: "row" },
        h("button", { value: "cancel", "data-testid": "confirm-cancel", autofocus: true }, "Cancel"),
        h("button", { value: "confirm", class: "danger", "data-testid": "confirm-ok" }, confirm),
      ),
    ),
  ) as HTMLDialogElement;
  document.body.append(dialog);
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => {
      dialog.remove();
      resolve(dialog.returnValue === "confirm");
    });
    dialog.showModal();
  });
}
