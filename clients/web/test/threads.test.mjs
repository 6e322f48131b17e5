// Threads in the side panel (open, reply, replies from others live, older
// replies a page at a time) and mention autocomplete in the composers: see
// harness.mjs for how servers and browsers start.
import { test } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import {
  accessToken,
  artifacts,
  assertNoCspViolations,
  assertText,
  byTestId,
  exactly,
  grpcWebCall,
  launch,
  messageTexts,
  openPage,
  protoField,
  register,
  send,
  startServer,
  stringFields,
  waitForMessage,
  assertAccessible,
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

async function activeRoomId(page) {
  return page.evaluate(() => {
    const key = Object.keys(localStorage).find((k) => k.startsWith("chat.active."));
    return localStorage.getItem(key);
  });
}

/** The messages of the room's list (the thread panel's left out). */
const roomMessage = (page, text) =>
  page.locator('[data-testid="messages"] [data-testid="message"]').filter({
    has: page.locator('[data-testid="message-text"]', { hasText: exactly(text) }),
  });

/** The thread panel, by its role and name, as a screen reader finds it. */
const threadPanel = (page) => page.getByRole("complementary", { name: "Thread" });

/** The texts of the replies the open thread shows, in order. */
const replyTexts = (page) => page.locator('[data-testid="thread-replies"] [data-testid="message-text"]').allInnerTexts();

async function waitForReply(page, text) {
  await page
    .locator('[data-testid="thread-replies"] [data-testid="message-text"]', { hasText: exactly(text) })
    .first()
    .waitFor();
}

test("a thread opens beside the room, takes replies, shows others' replies live and pages older ones", { timeout: 240_000 }, async () => {
  const { address, appUrl } = await startServer("threads-panel");
  const errors = [];
  const csp = [];
  const alice = unique("alice");
  const bob = unique("bob");
  const room = unique("threads");
  const a = await openPage(await launch(csp), errors, "alice", appUrl);
  const b = await openPage(await launch(csp), errors, "bob", appUrl);
  await register(a, alice, PASSWORD);
  await register(b, bob, PASSWORD);
  await createRoom(a, room);
  await joinRoom(b, room);
  await send(a, "the root message");
  await waitForMessage(b, "the root message");

  // Alice opens its thread from the message's actions: a named
  // complementary region with the root and nothing else yet.
  const root = roomMessage(a, "the root message");
  await root.hover();
  await root.locator('[data-testid="message-action-thread"]').click();
  const panel = threadPanel(a);
  await panel.waitFor();
  await assertText(panel.locator('[data-testid="thread"] .thread-root [data-testid="message-text"]'), "the root message");
  await assertText(byTestId(a, "thread-count"), "No replies yet");
  // The thread's composer has the focus, and its own name.
  await a.waitForFunction(() => document.activeElement?.getAttribute("data-testid") === "thread-composer");
  assert.equal(await byTestId(a, "thread-composer").getAttribute("aria-label"), "Reply in thread");

  // Her reply goes into the thread, not into the room's list; the root
  // there says "1 reply", for her and, live, for Bob.
  await byTestId(a, "thread-composer").fill("first reply");
  await byTestId(a, "thread-composer").press("Enter");
  await waitForReply(a, "first reply");
  assert.equal(await byTestId(a, "thread-composer").inputValue(), "", "the thread's composer empties");
  await assertText(byTestId(a, "thread-count"), "1 reply");
  await root.locator('[data-testid="thread-summary"]').filter({ hasText: exactly("1 reply") }).waitFor();
  assert.ok(!(await messageTexts(a)).slice(0, 1).includes("first reply"));
  assert.equal(await a.locator('[data-testid="messages"] [data-testid="message-text"]', { hasText: "first reply" }).count(), 0);
  const bobRoot = roomMessage(b, "the root message");
  await bobRoot.locator('[data-testid="thread-summary"]').filter({ hasText: exactly("1 reply") }).waitFor();
  assert.equal(await b.locator('[data-testid="messages"] [data-testid="message-text"]', { hasText: "first reply" }).count(), 0);

  // Bob opens it from "1 reply" (ListThread brings the reply) and answers:
  // Alice's open thread shows it live, and both roots count 2.
  await bobRoot.locator('[data-testid="thread-summary"]').click();
  await threadPanel(b).waitFor();
  await waitForReply(b, "first reply");
  await byTestId(b, "thread-composer").fill("bob answers in the thread");
  await byTestId(b, "thread-composer-send").click();
  await waitForReply(a, "bob answers in the thread");
  assert.deepEqual(await replyTexts(a), ["first reply", "bob answers in the thread"]);
  await assertText(byTestId(a, "thread-count"), "2 replies");
  await root.locator('[data-testid="thread-summary"]').filter({ hasText: exactly("2 replies") }).waitFor();
  await bobRoot.locator('[data-testid="thread-summary"]').filter({ hasText: exactly("2 replies") }).waitFor();
  await a.screenshot({ path: path.join(artifacts, "threads-panel.png") });
  await assertAccessible(a, "thread panel");

  // A top-level message Bob sends meanwhile stays out of the thread.
  await byTestId(b, "composer").fill("top level again");
  await byTestId(b, "composer").press("Enter");
  await waitForMessage(a, "top level again");
  assert.deepEqual(await replyTexts(a), ["first reply", "bob answers in the thread"]);

  // Escape closes it; the focus goes back to the root in the room (its
  // "2 replies", the item that opened the thread having been rebuilt since).
  await byTestId(a, "thread-composer").press("Escape");
  await panel.waitFor({ state: "hidden" });
  await a.waitForFunction(() => document.activeElement?.getAttribute("data-testid") === "thread-summary");
  await byTestId(b, "side-panel-close").click();
  await threadPanel(b).waitFor({ state: "hidden" });

  // Sixty more replies (sent from this process, as Bob): after a reload the
  // thread shows the newest 50, and the older ones on asking.
  const roomId = await activeRoomId(a);
  const token = await accessToken(b);
  const history = await grpcWebCall(address, "chat.v1.ChatService/History", stringFields({ 1: roomId }), token);
  assert.equal(history.status, 0, history.message);
  const rootId = protoField(protoField(history.reply, 1), 1).toString("utf8");
  for (let i = 0; i < 60; i++) {
    const res = await grpcWebCall(
      address,
      "chat.v1.ChatService/SendMessage",
      stringFields({ 1: roomId, 2: `bulk reply ${i}`, 3: `bulk-${rootId}-${i}`, 5: rootId }),
      token,
    );
    assert.equal(res.status, 0, res.message);
  }
  await root.locator('[data-testid="thread-summary"]').filter({ hasText: exactly("62 replies") }).waitFor();
  await a.reload();
  await waitForMessage(a, "top level again");
  // History brings top-level messages only; the root carries the count.
  assert.deepEqual(await messageTexts(a), ["the root message", "top level again"]);
  await roomMessage(a, "the root message").locator('[data-testid="thread-summary"]').click();
  await waitForReply(a, "bulk reply 59");
  assert.equal((await replyTexts(a)).length, 50, "the newest 50 replies first");
  await byTestId(a, "thread-load-older").click();
  await waitForReply(a, "first reply");
  const all = await replyTexts(a);
  assert.equal(all.length, 62);
  assert.deepEqual(all.slice(0, 3), ["first reply", "bob answers in the thread", "bulk reply 0"]);
  await byTestId(a, "thread-load-older").waitFor({ state: "hidden" });

  // Another room closes the thread.
  await createRoom(a, unique("elsewhere"));
  await threadPanel(a).waitFor({ state: "hidden" });

  await assertNoCspViolations(csp, [a, b]);
  assert.deepEqual(errors, [], "no page errors");
});

test("typing @ offers the room's people: arrows, Enter or Tab insert the name, Escape closes", { timeout: 180_000 }, async () => {
  const { appUrl } = await startServer("threads-mentions");
  const errors = [];
  const csp = [];
  const alice = unique("alice");
  const bob = unique("bob");
  const bea = unique("bea");
  const carl = unique("carl");
  const room = unique("mentions");
  const a = await openPage(await launch(csp), errors, "alice", appUrl);
  await register(a, alice, PASSWORD);
  await createRoom(a, room);
  // Three others join and speak: the people `@` knows in the room.
  for (const name of [bob, bea, carl]) {
    const ctx = await launch(csp);
    const p = await openPage(ctx, errors, name, appUrl);
    await register(p, name, PASSWORD);
    await joinRoom(p, room);
    await send(p, `hi from ${name}`);
    await waitForMessage(a, `hi from ${name}`);
  }

  const box = byTestId(a, "composer");
  const list = byTestId(a, "mention-list");
  const options = a.locator('[data-testid="mention-option"]');
  // The text box is a combobox that controls the list.
  assert.equal(await box.getAttribute("role"), "combobox");
  assert.equal(await box.getAttribute("aria-expanded"), "false");
  assert.equal(await box.getAttribute("aria-autocomplete"), "list");
  assert.equal(await box.getAttribute("aria-controls"), await list.getAttribute("id"));

  await box.click();
  await box.pressSequentially("hello @b");
  await list.waitFor();
  // Names that start with it, alphabetically (then any that hold it).
  assert.deepEqual((await options.evaluateAll((os) => os.map((o) => o.dataset.username))).slice(0, 2), [bea, bob]);
  assert.equal(await box.getAttribute("aria-expanded"), "true");
  assert.equal(await a.getByRole("listbox", { name: "People to mention" }).count(), 1);
  assert.equal(await options.nth(0).getAttribute("aria-selected"), "true");
  assert.equal(await box.getAttribute("aria-activedescendant"), await options.nth(0).getAttribute("id"));
  await assertAccessible(a, "mention list open");
  await a.screenshot({ path: path.join(artifacts, "mentions-list.png") });

  // Down: Bob; Enter puts "@bob " in the text and sends nothing.
  await box.press("ArrowDown");
  assert.equal(await options.nth(1).getAttribute("aria-selected"), "true");
  assert.equal(await box.getAttribute("aria-activedescendant"), await options.nth(1).getAttribute("id"));
  await box.press("Enter");
  await list.waitFor({ state: "hidden" });
  assert.equal(await box.inputValue(), `hello @${bob} `);
  assert.equal(await box.getAttribute("aria-expanded"), "false");
  assert.equal(await box.getAttribute("aria-activedescendant"), null);

  // Narrowed by more letters (any case); Tab takes the chosen one.
  await box.pressSequentially(`and @${carl.slice(0, 3).toUpperCase()}`);
  await list.waitFor();
  assert.deepEqual(await options.evaluateAll((os) => os.map((o) => o.dataset.username)), [carl]);
  await box.press("Tab");
  assert.equal(await box.inputValue(), `hello @${bob} and @${carl} `);
  await a.waitForFunction(() => document.activeElement?.getAttribute("data-testid") === "composer");

  // Nobody by that name: no list. Escape closes an open one and keeps the text.
  await box.pressSequentially("@zz");
  assert.equal(await list.isVisible(), false, JSON.stringify([await box.inputValue(), await options.allInnerTexts()]));
  await box.press("Backspace");
  await box.press("Backspace");
  await list.waitFor();
  assert.equal(await options.count(), 3, "`@` alone offers everyone");
  assert.equal(
    (await options.evaluateAll((os) => os.map((o) => o.dataset.username))).includes(alice),
    false,
    "not oneself",
  );
  await box.press("Escape");
  await list.waitFor({ state: "hidden" });
  assert.equal(await box.inputValue(), `hello @${bob} and @${carl} @`);

  // A click picks one too.
  await box.press("Backspace");
  await box.pressSequentially("@be");
  await options.filter({ hasText: bea }).click();
  assert.equal(await box.inputValue(), `hello @${bob} and @${carl} @${bea} `);

  // A name typed out in full offers nothing more: Enter sends.
  await box.pressSequentially(` and @${carl}`);
  assert.equal(await list.isVisible(), false);

  // Enter with the list closed sends, the mentions as typed.
  await box.press("Enter");
  const mine = a.locator('[data-testid="messages"] [data-testid="message"]').filter({
    has: a.locator('[data-testid="message-text"]', { hasText: `hello @${bob} and @${carl} @${bea} and @${carl}` }),
  });
  await mine.waitFor();
  assert.equal(await box.inputValue(), "");

  // The thread's composer offers the same people, and Escape there closes
  // the list, not the thread.
  await mine.hover();
  await mine.locator('[data-testid="message-action-thread"]').click();
  const threadBox = byTestId(a, "thread-composer");
  await threadBox.pressSequentially("@c");
  const threadList = threadPanel(a).locator('[data-testid="mention-list"]');
  await threadList.waitFor();
  await threadBox.press("Escape");
  await threadList.waitFor({ state: "hidden" });
  assert.equal(await threadPanel(a).isVisible(), true, "the thread stays open");
  await threadBox.pressSequentially("a");
  await threadList.waitFor();
  await threadBox.press("Enter");
  assert.equal(await threadBox.inputValue(), `@${carl} `);

  await assertNoCspViolations(csp, [a]);
  assert.deepEqual(errors, [], "no page errors");
});
