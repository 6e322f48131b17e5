// Browser notifications for direct messages that come while the tab is
// hidden. Asked for only when the person clicks "Notify me of direct
// messages", never on load; the choice is kept per account on this browser.
import { RoomKind, type Message, type Room } from "./gen/chat/v1/chat_pb";
import { h } from "./dom";
import { displayName } from "./people";
import "./attention.css";

/** Longest message text a notification shows. */
const MAX_BODY = 120;

interface Hooks {
  /** The logged-in person's id, or undefined. */
  me: () => string | undefined;
  /** Opens a room (the notification was clicked). */
  open: (roomId: string) => void;
}

let hooks: Hooks = { me: () => undefined, open: () => {} };

export function initNotifications(next: Hooks): void {
  hooks = next;
}

const supported = (): boolean => typeof window.Notification === "function";

function optInKey(): string {
  return `chat.notify.${hooks.me() ?? ""}`;
}

function optedIn(): boolean {
  return localStorage.getItem(optInKey()) === "on";
}

function enabled(): boolean {
  return supported() && optedIn() && Notification.permission === "granted";
}

/** `text` cut to `max` characters (whole code points), with "…" if cut. */
export function truncate(text: string, max = MAX_BODY): string {
  const flat = text.replace(/\s+/g, " ").trim();
  const chars = [...flat];
  return chars.length <= max ? flat : `${chars.slice(0, max - 1).join("")}…`;
}

/**
 * Called for each message new to this page: a direct message from someone
 * else, while the tab is hidden and the person asked for it, shows a
 * notification; clicking it brings the tab forward and opens the room.
 */
export function notifyMessage(m: Message, room: Room): void {
  if (room.kind !== RoomKind.DIRECT || document.visibilityState !== "hidden") return;
  const sender = m.sender;
  if (!sender || sender.id === hooks.me() || !enabled()) return;
  try {
    const n = new Notification(displayName(sender), {
      body: truncate(m.text),
      // One notification per conversation: a newer message replaces it.
      tag: `chat-dm-${room.id}`,
    });
    n.addEventListener("click", () => {
      window.focus();
      hooks.open(room.id);
      n.close();
    });
  } catch {
    // Some browsers (Android's Chrome) allow notifications only from a
    // service worker: then there is none, and the unread count still shows.
  }
}

/**
 * The opt-in: a toggle button in the sidebar, and a line saying what
 * happened when the browser refuses.
 */
export function notificationToggle(): HTMLElement | null {
  if (!supported()) return null;
  const note = h("p", { class: "muted small", "data-testid": "notifications-status", role: "status" });
  const button = h(
    "button",
    { type: "button", class: "link", "data-testid": "enable-notifications", "aria-pressed": "false" },
    "Notify me of direct messages",
  ) as HTMLButtonElement;
  const render = () => {
    const on = enabled();
    button.setAttribute("aria-pressed", String(on));
    button.textContent = on ? "Direct message notifications: on" : "Notify me of direct messages";
    button.title = on ? "Turn direct message notifications off" : "Show a notification for direct messages while this tab is hidden";
  };
  button.addEventListener("click", async () => {
    if (enabled()) {
      localStorage.removeItem(optInKey());
      note.textContent = "Notifications are off.";
      render();
      return;
    }
    let permission = Notification.permission;
    if (permission === "default") {
      try {
        permission = await Notification.requestPermission();
      } catch {
        permission = Notification.permission;
      }
    }
    if (permission === "granted") {
      localStorage.setItem(optInKey(), "on");
      note.textContent = "You will be notified of direct messages while this tab is hidden.";
    } else {
      note.textContent =
        permission === "denied"
          ? "This browser blocks notifications from this site: allow them in its site settings, then try again."
          : "Notifications were not allowed.";
    }
    render();
  });
  render();
  return h("div", { class: "notify-toggle" }, button, note);
}
