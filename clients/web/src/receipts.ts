// "Seen" under one's last message in a direct room, once the other member's
// read marker (a `read` event) has reached it. The message list
// (src/messages/) keeps its items by message, so the note is put into the
// item after each render: an item built anew gets it back.
import "./receipts.css";
import { h } from "./dom";

/** Shows "Seen" under the message at `seq` in `log`, and nowhere else (none: nowhere). */
export function showSeen(log: HTMLElement, seq: bigint | undefined, by: string): void {
  const key = seq?.toString();
  for (const old of log.querySelectorAll<HTMLElement>('[data-testid="seen"]')) {
    if (old.closest<HTMLElement>('[data-testid="message"]')?.dataset.seq !== key) old.remove();
  }
  if (key === undefined) return;
  const item = log.querySelector<HTMLElement>(`[data-testid="message"][data-seq="${key}"]`);
  if (!item || item.querySelector('[data-testid="seen"]')) return;
  item.append(h("div", { class: "seen", "data-testid": "seen", title: `Seen by ${by}` }, "Seen"));
}
