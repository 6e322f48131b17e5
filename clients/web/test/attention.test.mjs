// Unread counts and attention (room list, ☰, tab title, favicon), browser
// notifications for direct messages, and the sessions page's device names:
// see harness.mjs for how servers and browsers start.
import { test } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import {
  accessToken,
  artifacts,
  assertNoCspViolations,
  assertText,
  byTestId,
  grpcWebCall,
  launch,
  openPage,
  openSessions,
  register,
  send,
  startServer,
  stringFields,
  waitForMessage,
} from "./harness.mjs";

const PASSWORD = "correct horse battery";

/** A fresh name per run, so that tests never share an account. */
const unique = (prefix) => `${prefix}_${Math.random().toString(36).slice(2, 8)}`;

/** Creates a room from the sidebar; it opens. */
async function createRoom(page, name) {
  await byTestId(page, "create-room-name").fill(name);
  await byTestId(page, "create-room-submit").click();
  await assertText(byTestId(page, "room-title"), `# ${name}`);
}

/** Joins a room someone else made, through "Browse rooms"; it opens. */
async function joinRoom(page, name) {
  await byTestId(page, "browse-rooms").click();
  await page.locator(`[data-testid="browse-room"][data-room-name="${name}"] [data-testid="join-room"]`).click();
  await assertText(byTestId(page, "room-title"), `# ${name}`);
}

/** Opens a direct conversation with `username`; it opens. */
async function openDirect(page, username) {
  await byTestId(page, "dm-username").fill(username);
  await byTestId(page, "dm-submit").click();
  await assertText(byTestId(page, "room-title"), `@ ${username}`);
}

/** The room list's entry for a room. */
const roomEntry = (page, name) => page.locator(`[data-testid="room"][data-room-name="${name}"]`);

/** The id of the room a page has open (it keeps it in localStorage). */
async function activeRoomId(page) {
  return page.evaluate(() => {
    const key = Object.keys(localStorage).find((k) => k.startsWith("chat.active."));
    return localStorage.getItem(key);
  });
}

/** The favicon's URL as the page has it now. */
const faviconHref = (page) => page.evaluate(() => document.querySelector('link[rel="icon"]')?.href ?? "");

test("unread counts show as numbers in the room list, on ☰, in the tab title and on the favicon", { timeout: 180_000 }, async () => {
  // A hundred messages go in at once: no send rate limit.
  const { address, appUrl } = await startServer("attention-counts", ["--send-rate", "10000", "--send-burst", "10000"]);
  const errors = [];
  const csp = [];
  const alice = unique("alice");
  const bob = unique("bob");
  const busy = unique("busy");
  const quiet = unique("quiet");
  const aliceCtx = await launch(csp);
  const bobCtx = await launch(csp);
  const a = await openPage(aliceCtx, errors, "alice", appUrl);
  const b = await openPage(bobCtx, errors, "bob", appUrl);
  await register(a, alice, PASSWORD);
  await register(b, bob, PASSWORD);

  // Nothing unread yet: the plain icon, no count in the title.
  const plainIcon = await faviconHref(b);
  assert.doesNotMatch(plainIcon, /^data:image\/png/, "the plain icon at first");
  assert.equal(await b.title(), `Chat · ${bob}`);

  // Alice makes a room, Bob joins it, then opens a room of his own.
  await createRoom(a, busy);
  await joinRoom(b, busy);
  await createRoom(b, quiet);

  // Three messages from Alice: Bob's list says 3 beside the room.
  for (const text of ["one", "two", "three"]) await send(a, text);
  const badge = roomEntry(b, busy).locator('[data-testid="unread"]');
  await badge.filter({ hasText: /^3$/ }).waitFor();
  assert.equal(await badge.innerText(), "3");
  assert.equal(await roomEntry(b, busy).getAttribute("data-unread"), "true");
  // Screen readers hear it in words, as part of the room's name.
  assert.equal(await badge.getAttribute("aria-label"), "3 unread messages");
  await b.getByRole("button", { name: `${busy} 3 unread messages` }).waitFor();
  // The open room counts nothing.
  assert.equal(await roomEntry(b, quiet).locator('[data-testid="unread"]').count(), 0);

  // The tab title and the favicon say so too.
  await b.waitForFunction((name) => document.title === `(3) Chat · ${name}`, bob);
  assert.match(await faviconHref(b), /^data:image\/png;base64,/, "the favicon becomes a badge");

  // Bob's own message from elsewhere (a program with his token: a device
  // with the room open would have read the room, and its marker clears the
  // laptop's count too) does not count as unread.
  const busyId = await activeRoomId(a);
  const own = await grpcWebCall(
    address,
    "chat.v1.ChatService/SendMessage",
    stringFields({ 1: busyId, 2: "bob from his phone", 3: `own-${busyId}` }),
    await accessToken(b),
  );
  assert.equal(own.status, 0, own.message);
  await waitForMessage(a, "bob from his phone");
  // It reaches Bob's laptop before Alice's next one: 4 unread, not 5.
  await send(a, "four");
  await badge.filter({ hasText: /^4$/ }).waitFor();
  await b.waitForFunction((name) => document.title === `(4) Chat · ${name}`, bob);

  // On a phone, with the room list closed, ☰ carries the total.
  await b.setViewportSize({ width: 390, height: 844 });
  const menuCount = byTestId(b, "menu-unread");
  await menuCount.waitFor({ state: "visible" });
  assert.equal(await menuCount.innerText(), "4");
  assert.equal(await byTestId(b, "menu").getAttribute("aria-expanded"), "false");
  assert.equal(await byTestId(b, "menu").getAttribute("aria-label"), "Rooms, 4 unread messages");
  await b.screenshot({ path: path.join(artifacts, "attention-phone-menu-count.png") });

  // More than 99: "99+".
  const roomId = await activeRoomId(a);
  const token = await accessToken(a);
  for (let i = 0; i < 100; i++) {
    const res = await grpcWebCall(
      address,
      "chat.v1.ChatService/SendMessage",
      stringFields({ 1: roomId, 2: `bulk ${i}`, 3: `bulk-${roomId}-${i}` }),
      token,
    );
    assert.equal(res.status, 0, res.message);
  }
  await menuCount.filter({ hasText: /^99\+$/ }).waitFor();
  await b.waitForFunction((name) => document.title === `(99+) Chat · ${name}`, bob);

  // Bob opens the drawer and the room, and scrolls down to its newest
  // messages (it opens at the first unread one): everything is read, and
  // the plain icon and title come back.
  await byTestId(b, "menu").click();
  await roomEntry(b, busy).locator('[data-testid="unread"]').filter({ hasText: /^99\+$/ }).waitFor();
  await b.screenshot({ path: path.join(artifacts, "attention-phone-drawer-counts.png") });
  await roomEntry(b, busy).click();
  await assertText(byTestId(b, "room-title"), `# ${busy}`);
  await waitForMessage(b, "bulk 99");
  await byTestId(b, "messages").evaluate((list) => {
    list.scrollTop = list.scrollHeight;
  });
  await b.waitForFunction((name) => document.title === `Chat · ${name}`, bob);
  await menuCount.waitFor({ state: "hidden" });
  assert.equal(await byTestId(b, "menu").getAttribute("aria-label"), "Rooms");
  assert.equal(await b.locator('[data-testid="unread"]').count(), 0);
  assert.equal(await faviconHref(b), plainIcon, "the plain icon once all is read");

  await assertNoCspViolations(csp, [a, b]);
  assert.deepEqual(errors, [], "no page errors");
});

/**
 * Before any page script: records `new Notification(...)` and
 * `Notification.requestPermission()` calls, and lets the test hide and
 * show the page (`__setHidden(true)` fires `visibilitychange`, as a
 * switch of tabs does).
 */
function watchNotifications() {
  const Real = window.Notification;
  window.__notifications = [];
  window.__permissionRequests = 0;
  class Recorded extends EventTarget {
    constructor(title, options = {}) {
      super();
      this.title = title;
      this.body = options.body;
      this.tag = options.tag;
      window.__notifications.push(this);
    }
    close() {
      this.closed = true;
    }
    static get permission() {
      return Real.permission;
    }
    static requestPermission(...args) {
      window.__permissionRequests++;
      return Real.requestPermission(...args);
    }
  }
  window.Notification = Recorded;
  let hidden = false;
  Object.defineProperty(Document.prototype, "visibilityState", {
    configurable: true,
    get: () => (hidden ? "hidden" : "visible"),
  });
  Object.defineProperty(Document.prototype, "hidden", { configurable: true, get: () => hidden });
  window.__setHidden = (value) => {
    hidden = value;
    document.dispatchEvent(new Event("visibilitychange"));
  };
}

const notifications = (page) =>
  page.evaluate(() => window.__notifications.map(({ title, body, tag }) => ({ title, body, tag })));

test("direct messages notify while the tab is hidden, once the person asks for it", { timeout: 180_000 }, async () => {
  const { appUrl } = await startServer("attention-notify");
  const origin = new URL(appUrl).origin;
  const errors = [];
  const csp = [];
  const alice = unique("alice");
  const bob = unique("bob");
  const group = unique("group");
  const aliceCtx = await launch(csp);
  const bobCtx = await launch(csp);
  await bobCtx.addInitScript(watchNotifications);
  const a = await openPage(aliceCtx, errors, "alice", appUrl);
  const b = await openPage(bobCtx, errors, "bob", appUrl);
  await register(a, alice, PASSWORD);
  await register(b, bob, PASSWORD);
  await assertText(byTestId(b, "connection"), "online");
  await createRoom(b, group);
  await joinRoom(a, group);

  // Loading the app asks for nothing.
  await b.reload();
  await assertText(byTestId(b, "connection"), "online");
  assert.equal(await b.evaluate(() => window.__permissionRequests), 0, "no permission request on load");
  const toggle = byTestId(b, "enable-notifications");
  assert.equal(await toggle.getAttribute("aria-pressed"), "false");

  // Not asked for yet: a direct message to a hidden tab notifies nobody.
  await b.evaluate(() => window.__setHidden(true));
  await openDirect(a, bob);
  await send(a, "before you asked");
  await roomEntry(b, alice).waitFor();
  await roomEntry(b, alice).locator('[data-testid="unread"]').waitFor();
  assert.deepEqual(await notifications(b), []);
  await b.evaluate(() => window.__setHidden(false));

  // The person asks; the browser has not allowed it: the request is made
  // then, on the click, and the page says it did not work.
  await toggle.click();
  await byTestId(b, "notifications-status").filter({ hasText: /not allowed|blocks/ }).waitFor();
  assert.equal(await b.evaluate(() => window.__permissionRequests), 1, "asked once, on the click");
  assert.equal(await toggle.getAttribute("aria-pressed"), "false");

  // Allowed in the browser, asked again: on.
  await bobCtx.grantPermissions(["notifications"], { origin });
  await toggle.click();
  await b.locator('[data-testid="enable-notifications"][aria-pressed="true"]').waitFor();
  await assertText(byTestId(b, "notifications-status"), "You will be notified");

  // Bob looks at the group room, then switches tabs; Alice writes to him
  // directly: one notification, with her name and the text (cut short).
  await roomEntry(b, group).click();
  await assertText(byTestId(b, "room-title"), `# ${group}`);
  await b.evaluate(() => window.__setHidden(true));
  const long = `Are you there? ${"lorem ipsum ".repeat(20)}`.trim();
  await send(a, long);
  await b.waitForFunction(() => window.__notifications.length === 1);
  const [shown] = await notifications(b);
  assert.equal(shown.title, alice, "the sender is the title");
  assert.ok(shown.body.startsWith("Are you there? lorem ipsum"), shown.body);
  assert.ok([...shown.body].length <= 120 && shown.body.endsWith("…"), `cut short: ${shown.body}`);
  // Hidden, the count shows in the title.
  await b.waitForFunction(() => /^\(\d+\) Chat · /.test(document.title));

  // A group message, hidden or not, notifies nobody.
  await roomEntry(a, group).click();
  await send(a, "hello group");
  await roomEntry(b, group).locator('[data-testid="unread"]').filter({ hasText: /^1$/ }).waitFor();
  assert.equal((await notifications(b)).length, 1, "no notification for a group room");

  // Clicking the notification brings the tab back with the conversation open.
  await b.evaluate(() => window.__notifications[0].dispatchEvent(new Event("click")));
  await assertText(byTestId(b, "room-title"), `@ ${alice}`);
  await waitForMessage(b, long);
  assert.equal(await b.evaluate(() => window.__notifications[0].closed), true, "the clicked notification closes");

  // Looking at the page: no notification.
  await b.evaluate(() => window.__setHidden(false));
  await roomEntry(b, group).click();
  await roomEntry(a, bob).click();
  await assertText(byTestId(a, "room-title"), `@ ${bob}`);
  await send(a, "while you look");
  await roomEntry(b, alice).locator('[data-testid="unread"]').waitFor();
  assert.equal((await notifications(b)).length, 1, "no notification while the tab is visible");

  // Bob's own direct message (from this tab, hidden) notifies nobody.
  await roomEntry(b, alice).click();
  await b.evaluate(() => window.__setHidden(true));
  await send(b, "my own words");
  await waitForMessage(a, "my own words");
  assert.equal((await notifications(b)).length, 1, "no notification for one's own message");

  // Turned off: hidden again, no notification.
  await b.evaluate(() => window.__setHidden(false));
  await toggle.click();
  await b.locator('[data-testid="enable-notifications"][aria-pressed="false"]').waitFor();
  await b.evaluate(() => window.__setHidden(true));
  await send(a, "after you turned it off");
  await waitForMessage(b, "after you turned it off");
  assert.equal((await notifications(b)).length, 1, "no notification once turned off");

  await assertNoCspViolations(csp, [a, b]);
  assert.deepEqual(errors, [], "no page errors");
});

/** Logs in over grpc-web from this process, as a program with this user agent would. */
async function loginAs(address, username, password, userAgent) {
  const request = stringFields({ 1: username, 2: password });
  const frame = Buffer.concat([Buffer.from([0, 0, 0, 0, 0]), request]);
  frame.writeUInt32BE(request.length, 1);
  const res = await fetch(`http://${address}/chat.v1.AuthService/Login`, {
    method: "POST",
    headers: { "content-type": "application/grpc-web+proto", "x-grpc-web": "1", "user-agent": userAgent },
    body: frame,
  });
  assert.equal(res.status, 200);
  const body = Buffer.from(await res.arrayBuffer());
  assert.ok(body.length > 5 && body[0] === 0, `Login as ${userAgent} answered no message`);
}

test("the sessions page names devices in words and marks this one apart from unread counts", { timeout: 120_000 }, async () => {
  const { address, appUrl } = await startServer("attention-sessions");
  const errors = [];
  const csp = [];
  const carol = unique("carol");
  const ctx = await launch(csp);
  const page = await openPage(ctx, errors, "carol", appUrl);
  await register(page, carol, PASSWORD);

  // "Online" says whose presence it shows.
  await page.locator(".people").getByText("Online in your rooms", { exact: true }).waitFor();

  const agents = {
    "grpcurl/1.8.9 grpc-go/1.61.0": "grpcurl",
    "grpc-python/1.62.1 grpc-c/39.0.0 (linux; chttp2)": "Python client",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0": "Firefox on Windows",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1":
      "Safari on iPhone",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36 Edg/126.0.0.0":
      "Edge on macOS",
  };
  for (const ua of Object.keys(agents)) await loginAs(address, carol, PASSWORD, ua);

  await openSessions(page);
  const sessions = page.locator('[data-testid="session"]');
  await sessions.nth(Object.keys(agents).length).waitFor();
  const current = page.locator('[data-testid="session"][data-current="true"]');
  const currentName = current.locator("strong");
  assert.equal(await currentName.innerText(), "Chrome on Linux", "headless Chromium on Linux, in words");
  const raw = await page.evaluate(() => navigator.userAgent);
  assert.equal(await currentName.getAttribute("title"), raw, "the raw user agent is in the tooltip");
  for (const [ua, name] of Object.entries(agents)) {
    const row = sessions.filter({ has: page.locator(`strong[title="${ua.replace(/"/g, '\\"')}"]`) });
    assert.equal(await row.locator("strong").innerText(), name, ua);
  }
  assert.equal(await page.getByText(raw, { exact: true }).count(), 0, "no raw user agent on the page");

  // "this device" is a neutral tag, not a red unread count.
  const tag = byTestId(page, "current-session");
  assert.equal(await tag.innerText(), "this device");
  const looks = await tag.evaluate((node) => {
    const count = document.createElement("span");
    count.className = "count";
    document.body.append(count);
    const countBg = getComputedStyle(count).backgroundColor;
    count.remove();
    return { className: node.className, bg: getComputedStyle(node).backgroundColor, countBg };
  });
  assert.ok(!/\b(badge|count)\b/.test(looks.className), `its own class: ${looks.className}`);
  assert.notEqual(looks.bg, looks.countBg, "not the unread count's background");
  await page.screenshot({ path: path.join(artifacts, "attention-sessions.png") });

  await assertNoCspViolations(csp, [page]);
  assert.deepEqual(errors, [], "no page errors");
});
