// Unread counts and the ways they get a person's attention: a number per
// room in the room list (and "@N" beside it for messages that mention the
// reader), the total on ☰ (phones, while the drawer is closed), in the tab
// title and on the favicon. The counts are the server's (Room.unread_count
// and mention_count from ListRooms), moved on by the live stream.
import { h } from "./dom";
import "./attention.css";

/** A count as a badge shows it: "99+" above 99. */
export function countText(n: number): string {
  return n > 99 ? "99+" : String(n);
}

/** A count in words, for screen readers. */
export function countWords(n: number): string {
  return `${countText(n)} unread message${n === 1 ? "" : "s"}`;
}

/**
 * A room's unread badge: the number on screen, "3 unread messages" as its
 * accessible name (it counts as an image, so the room's button reads
 * "general, 3 unread messages").
 */
export function roomBadge(n: number): HTMLElement | null {
  if (n <= 0) return null;
  return h(
    "span",
    { class: "count", "data-testid": "unread", role: "img", "aria-label": countWords(n), title: countWords(n) },
    countText(n),
  );
}

/** The messages that mention the reader, in words. */
export function mentionWords(n: number): string {
  return `${countText(n)} mention${n === 1 ? "" : "s"} of you`;
}

/**
 * Beside a room's count, when some of its unread messages mention the
 * reader: "@2", in the accent colour, read as "2 mentions of you".
 */
export function mentionBadge(n: number): HTMLElement | null {
  if (n <= 0) return null;
  return h(
    "span",
    { class: "count mention-badge", "data-testid": "mentions", role: "img", "aria-label": mentionWords(n), title: mentionWords(n) },
    `@${countText(n)}`,
  );
}

/** The total on the ☰ button: shown while there is one. */
export const menuBadge = h("span", { class: "count menu-count", "data-testid": "menu-unread", "aria-hidden": "true", hidden: true });

/** Tells the ☰ button the total, in its text and its accessible name. */
function renderMenu(total: number): void {
  menuBadge.textContent = countText(total);
  menuBadge.hidden = total === 0;
  const button = menuBadge.closest("button");
  button?.setAttribute("aria-label", total ? `Rooms, ${countWords(total)}` : "Rooms");
}

// ---------- the favicon ----------

/** The icon index.html names: shown while nothing is unread. */
const plainLink = document.querySelector('link[rel="icon"]') as HTMLLinkElement | null;
const plainIcon = plainLink?.href ?? "";
const plainType = plainLink?.type ?? "";
let shownTotal = -1;

function iconLink(): HTMLLinkElement {
  let link = document.querySelector('link[rel="icon"]') as HTMLLinkElement | null;
  if (!link) {
    link = document.createElement("link");
    link.rel = "icon";
    document.head.append(link);
  }
  return link;
}

/** The plain icon's speech bubble, drawn on a 64×64 canvas. */
function drawBubble(ctx: CanvasRenderingContext2D): void {
  ctx.fillStyle = "#3867d6";
  ctx.beginPath();
  ctx.roundRect(4, 8, 48, 36, 10);
  ctx.moveTo(14, 42);
  ctx.lineTo(10, 56);
  ctx.lineTo(28, 42);
  ctx.fill();
  ctx.fillStyle = "#ffffff";
  for (const x of [16, 28, 40]) {
    ctx.beginPath();
    ctx.arc(x, 26, 4, 0, Math.PI * 2);
    ctx.fill();
  }
}

/** The icon with the count on a red disc: a PNG `data:` URL. */
export function badgeIcon(total: number): string {
  const canvas = document.createElement("canvas");
  canvas.width = 64;
  canvas.height = 64;
  const ctx = canvas.getContext("2d");
  if (!ctx) return plainIcon;
  drawBubble(ctx);
  const text = total > 99 ? "99+" : String(total);
  ctx.font = `bold ${text.length > 2 ? 22 : 30}px system-ui, sans-serif`;
  const w = Math.max(36, ctx.measureText(text).width + 14);
  ctx.fillStyle = "#c62828";
  ctx.strokeStyle = "#ffffff";
  ctx.lineWidth = 3;
  ctx.beginPath();
  ctx.roundRect(64 - w - 1, 64 - 37, w, 36, 18);
  ctx.fill();
  ctx.stroke();
  ctx.fillStyle = "#ffffff";
  ctx.textAlign = "center";
  ctx.textBaseline = "middle";
  ctx.fillText(text, 64 - w / 2 - 1, 64 - 18);
  return canvas.toDataURL("image/png");
}

function renderFavicon(total: number): void {
  const capped = Math.min(total, 100);
  if (capped === shownTotal) return;
  shownTotal = capped;
  const link = iconLink();
  // The link's type must match, or the browser skips the icon.
  link.type = capped ? "image/png" : plainType;
  link.href = capped ? badgeIcon(capped) : plainIcon;
}

/**
 * Shows the total everywhere outside the room list: `(N) Chat · user` in
 * the tab title, on the favicon and on ☰. `username` undefined: the login
 * page, with nothing unread.
 */
export function showAttention(total: number, username?: string): void {
  document.title = `${total ? `(${countText(total)}) ` : ""}Chat${username ? ` · ${username}` : ""}`;
  renderMenu(total);
  renderFavicon(total);
}
