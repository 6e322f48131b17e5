// Read state from the server: unread and mention counts from ListRooms
// (after a reload too), the "New messages" divider at the read marker,
// MarkRead when the newest messages are in sight, a second page of the
// same person following the marker live, and "Seen" in a direct room. See
// harness.mjs for how servers and browsers start.
import { test } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import {
  artifacts,
  assertNoCspViolations,
  assertText,
  byTestId,
  launch,
  openPage,
  register,
  send,
  startServer,
  waitForMessage,
} from "./harness.mjs";

const PASSWORD = "correct horse battery";
const unique = (prefix) => `${prefix}_${Math.random().toString(36).slice(2, 8)}`;

async function createRoom(page, name) {
  await byTestId(page, "create-room-name").fill(name);
  await byTestId(page, "create-room-submit").click();
  await assertText(byTestId(page, "room-title"), `# ${name}`);
}

async function joinRoom(page, name) {
  await byTestId(page, "browse-rooms").click();
  await page.locator(`[data-testid="browse-room"][data-room-name="${name}"] [data-testid="join-room"]`).click();
  await assertText(byTestId(page, "room-title"), `# ${name}`);
}

async function openDirect(page, username) {
  await byTestId(page, "dm-username").fill(username);
  await byTestId(page, "dm-submit").click();
  await assertText(byTestId(page, "room-title"), `@ ${username}`);
}

const roomEntry = (page, name) => page.locator(`[data-testid="room"][data-room-name="${name}"]`);
const unreadOf = (page, name) => roomEntry(page, name).locator('[data-testid="unread"]');
const mentionsOf = (page, name) => roomEntry(page, name).locator('[data-testid="mentions"]');

/** Opens a room from the list; it shows. */
async function openRoom(page, name, direct = false) {
  await roomEntry(page, name).click();
  await assertText(byTestId(page, "room-title"), `${direct ? "@" : "#"} ${name}`);
}

/** Waits until the room's entry shows `n` unread (0: no count at all). */
async function waitForUnread(page, name, n) {
  if (n === 0) {
    await page.waitForFunction(
      (name) => !document.querySelector(`[data-testid="room"][data-room-name="${name}"] [data-testid="unread"]`),
      name,
    );
  } else {
    await unreadOf(page, name).filter({ hasText: new RegExp(`^${n}$`) }).waitFor();
  }
}

test("unread and mention counts come from the server, after a reload too, with the divider at the marker", { timeout: 180_000 }, async () => {
  const { appUrl } = await startServer("reads-counts");
  const errors = [];
  const csp = [];
  const alice = unique("alice");
  const bob = unique("bob");
  const busy = unique("busy");
  const quiet = unique("quiet");
  const a = await openPage(await launch(csp), errors, "alice", appUrl);
  const b = await openPage(await launch(csp), errors, "bob", appUrl);
  await register(a, alice, PASSWORD);
  await register(b, bob, PASSWORD);
  await createRoom(a, busy);
  await joinRoom(b, busy);

  // Read while Bob looks at the room: not unread, then or after a reload.
  await send(a, "already read");
  await waitForMessage(b, "already read");
  // (MarkRead goes a second after the newest message is in sight.)
  await b.waitForTimeout(1_500);
  await createRoom(b, quiet);

  // Three messages while Bob is elsewhere, one naming him: 3 unread, @1.
  await send(a, "one");
  await send(a, `two for @${bob}`);
  await send(a, "three");
  await waitForUnread(b, busy, 3);
  await mentionsOf(b, busy).filter({ hasText: /^@1$/ }).waitFor();
  assert.equal(await mentionsOf(b, busy).getAttribute("aria-label"), "1 mention of you");
  await b.getByRole("button", { name: `${busy} 1 mention of you 3 unread messages` }).waitFor();

  // A reload: the server's counts, not this browser's memory.
  await b.evaluate(() => {
    for (const k of Object.keys(localStorage)) if (k.startsWith("chat.read.")) localStorage.removeItem(k);
  });
  await b.reload();
  await assertText(byTestId(b, "connection"), "online");
  await waitForUnread(b, busy, 3);
  await mentionsOf(b, busy).filter({ hasText: /^@1$/ }).waitFor();
  await b.waitForFunction((name) => document.title === `(3) Chat · ${name}`, bob);
  await b.screenshot({ path: path.join(artifacts, "reads-counts.png") });

  // Opening the room: "New messages" above the first one after the marker.
  await openRoom(b, busy);
  await waitForMessage(b, "three");
  const divider = byTestId(b, "new-messages-divider");
  await divider.waitFor();
  const afterDivider = await divider.evaluate((d) => d.nextElementSibling?.querySelector('[data-testid="message-text"]')?.textContent);
  assert.equal(afterDivider, "one");
  const beforeDivider = await divider.evaluate((d) => d.previousElementSibling?.querySelector('[data-testid="message-text"]')?.textContent);
  assert.equal(beforeDivider, "already read");

  // All in sight: read, the counts go, and the server keeps it.
  await waitForUnread(b, busy, 0);
  await b.waitForFunction((name) => document.title === `Chat · ${name}`, bob);
  assert.equal(await mentionsOf(b, busy).count(), 0);
  await b.waitForTimeout(1_500);
  await openRoom(b, quiet);
  await b.reload();
  await assertText(byTestId(b, "connection"), "online");
  await roomEntry(b, busy).waitFor();
  await b.waitForTimeout(500);
  await waitForUnread(b, busy, 0);
  await openRoom(b, busy);
  await waitForMessage(b, "three");
  assert.equal(await divider.count(), 0, "no divider once read");

  await assertNoCspViolations(csp, [a, b]);
  assert.deepEqual(errors, [], "no page errors");
});

test("a second page of the same person loses its unread count when the first one reads", { timeout: 180_000 }, async () => {
  const { appUrl } = await startServer("reads-two-pages");
  const errors = [];
  const csp = [];
  const alice = unique("alice");
  const bob = unique("bob");
  const busy = unique("busy");
  const quiet = unique("quiet");
  const a = await openPage(await launch(csp), errors, "alice", appUrl);
  const bobCtx = await launch(csp);
  const b1 = await openPage(bobCtx, errors, "bob-1", appUrl);
  await register(a, alice, PASSWORD);
  await register(b1, bob, PASSWORD);
  await createRoom(a, busy);
  await joinRoom(b1, busy);
  await createRoom(b1, quiet);
  // The same login in a second tab; both look at the quiet room.
  const b2 = await openPage(bobCtx, errors, "bob-2", appUrl);
  await assertText(byTestId(b2, "room-title"), `# ${quiet}`);
  await assertText(byTestId(b2, "connection"), "online");

  await send(a, "first");
  await send(a, "second");
  await waitForUnread(b1, busy, 2);
  await waitForUnread(b2, busy, 2);

  // The first tab reads the room; the second hears of it (a `read` event)
  // and counts nothing any more, the title and all.
  await openRoom(b1, busy);
  await waitForMessage(b1, "second");
  await waitForUnread(b2, busy, 0);
  await b2.waitForFunction((name) => document.title === `Chat · ${name}`, bob);
  assert.equal(await roomEntry(b2, busy).getAttribute("data-unread"), "false");

  // New messages count again in the tab that is not reading.
  await send(a, "third");
  await waitForUnread(b2, busy, 1);

  await assertNoCspViolations(csp, [a, b1, b2]);
  assert.deepEqual(errors, [], "no page errors");
});

test("a direct room says Seen under my last message once the other has read it, after a reload too", { timeout: 180_000 }, async () => {
  const { appUrl } = await startServer("reads-seen");
  const errors = [];
  const csp = [];
  const alice = unique("alice");
  const bob = unique("bob");
  const elsewhere = unique("elsewhere");
  const a = await openPage(await launch(csp), errors, "alice", appUrl);
  const b = await openPage(await launch(csp), errors, "bob", appUrl);
  await register(a, alice, PASSWORD);
  await register(b, bob, PASSWORD);
  await createRoom(b, elsewhere);

  await openDirect(a, bob);
  await send(a, "are you there?");
  await send(a, "hello?");
  await waitForUnread(b, alice, 2);
  // Not read yet: no "Seen".
  await a.waitForTimeout(1_500);
  assert.equal(await byTestId(a, "seen").count(), 0);

  // Bob opens the conversation: "Seen" under Alice's last message, only there.
  await openRoom(b, alice, true);
  await waitForMessage(b, "hello?");
  const seen = byTestId(a, "seen");
  await seen.waitFor();
  assert.equal(await seen.count(), 1);
  const under = await seen.evaluate((s) => s.closest('[data-testid="message"]').querySelector('[data-testid="message-text"]').textContent);
  assert.equal(under, "hello?");
  await a.screenshot({ path: path.join(artifacts, "reads-seen.png") });

  // Bob answers; Alice writes again while he looks elsewhere: not seen.
  await send(b, "yes, here");
  await waitForMessage(a, "yes, here");
  await openRoom(b, elsewhere);
  await send(a, "good");
  await a.waitForTimeout(1_500);
  assert.equal(await seen.count(), 0, "my newest message is not seen yet");
  // He comes back: seen, under the newest.
  await openRoom(b, alice, true);
  await seen.waitFor();
  assert.equal(
    await seen.evaluate((s) => s.closest('[data-testid="message"]').querySelector('[data-testid="message-text"]').textContent),
    "good",
  );

  // A reload: the room list brings his marker, and "Seen" is back.
  await a.waitForTimeout(1_500);
  await a.reload();
  await openRoom(a, bob, true);
  await seen.waitFor();
  assert.equal(
    await seen.evaluate((s) => s.closest('[data-testid="message"]').querySelector('[data-testid="message-text"]').textContent),
    "good",
  );

  await assertNoCspViolations(csp, [a, b]);
  assert.deepEqual(errors, [], "no page errors");
});
