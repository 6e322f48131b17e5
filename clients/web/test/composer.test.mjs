// The composer and the limits on what people type, end to end: a text box
// that grows and then scrolls, Enter on a keyboard and on a touch screen,
// the counter in characters (as the server counts them), a message too
// long or refused that stays to be fixed, errors that cover nothing, drafts
// per room, and passwords checked in characters. See harness.mjs for how
// servers and browsers start.
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
  openSessions,
  register,
  startServer,
} from "./harness.mjs";

const PASSWORD = "correct horse battery";
const LIMIT = 4096;

/** One server for this file's tests: each has users and rooms of its own. */
let server;
async function appUrl() {
  server ??= await startServer("composer");
  return server.appUrl;
}

const suffix = () => Date.now().toString(36).slice(-5) + Math.floor(Math.random() * 100);

/** A new person in a new room of their own, on a page of a new browser. */
async function personInRoom(name, contextOptions = {}) {
  const errors = [];
  const csp = [];
  const s = suffix();
  const user = `${name}_${s}`;
  const room = `${name}-${s}`;
  const ctx = await launch(csp, contextOptions);
  const page = await openPage(ctx, errors, name, await appUrl());
  if (contextOptions.isMobile) {
    // A phone hides the name in the header: wait for it in the page.
    await byTestId(page, "login-username").fill(user);
    await byTestId(page, "login-password").fill(PASSWORD);
    await byTestId(page, "register-submit").click();
    await byTestId(page, "me").filter({ hasText: user }).waitFor({ state: "attached" });
  } else {
    await register(page, user, PASSWORD);
  }
  await createRoom(page, room);
  return { ctx, page, errors, csp, user, room };
}

async function createRoom(page, room) {
  const menu = byTestId(page, "menu");
  if (await menu.isVisible()) await menu.click();
  await byTestId(page, "create-room-name").fill(room);
  await byTestId(page, "create-room-submit").click();
  await assertText(byTestId(page, "room-title"), `# ${room}`);
  // On a phone the drawer stays open over the new room: close it.
  if ((await menu.getAttribute("aria-expanded")) === "true") await page.keyboard.press("Escape");
}

async function openRoom(page, room) {
  await page.locator(`[data-testid="room"][data-room-name="${room}"]`).click();
  await assertText(byTestId(page, "room-title"), `# ${room}`);
}

/** The texts of the messages shown, whole (new lines and all). */
function shownTexts(page) {
  return byTestId(page, "message-text").evaluateAll((nodes) => nodes.map((n) => n.textContent));
}

/** Waits until `n` messages show, or fails with the error the app showed instead. */
async function waitForMessages(page, n) {
  await page.waitForFunction(
    (n) =>
      document.querySelectorAll('[data-testid="message"]').length >= n || document.querySelector('[data-testid="error"]'),
    n,
  );
  const error = await byTestId(page, "error").allInnerTexts();
  assert.deepEqual(error, [], "no error instead of the message");
}

/** The composer's box: its height, and whether its text scrolls. */
function boxMetrics(page) {
  return byTestId(page, "composer").evaluate((n) => ({
    height: n.getBoundingClientRect().height,
    scrollHeight: n.scrollHeight,
    clientHeight: n.clientHeight,
    overflowY: getComputedStyle(n).overflowY,
  }));
}

/** What covers the centre of the Send button: null when the button itself is there. */
function whatCoversSend(page) {
  return byTestId(page, "send").evaluate((button) => {
    const r = button.getBoundingClientRect();
    const at = document.elementFromPoint(r.x + r.width / 2, r.y + r.height / 2);
    return at && (at === button || button.contains(at)) ? null : (at?.outerHTML.slice(0, 120) ?? "nothing (off screen)");
  });
}

async function drafts(page) {
  return page.evaluate(() => {
    const id = JSON.parse(localStorage.getItem("chat.auth")).user.id;
    return JSON.parse(localStorage.getItem(`chat.drafts.${id}`) ?? "{}");
  });
}

async function done({ page, errors, csp }) {
  assert.deepEqual(errors, [], "no console errors");
  await assertNoCspViolations(csp, [page]);
}

test("with a keyboard, Shift+Enter breaks the line and Enter sends; the composer grows to six lines, then scrolls", { timeout: 120_000 }, async () => {
  const t = await personInRoom("kim");
  const { page } = t;
  const box = byTestId(page, "composer");
  const oneLine = (await boxMetrics(page)).height;

  await box.click();
  await page.keyboard.type("line 1");
  for (let i = 2; i <= 6; i++) {
    await page.keyboard.press("Shift+Enter");
    await page.keyboard.type(`line ${i}`);
  }
  const six = ["line 1", "line 2", "line 3", "line 4", "line 5", "line 6"].join("\n");
  assert.equal(await box.inputValue(), six, "Shift+Enter starts new lines");
  assert.equal(await byTestId(page, "message").count(), 0, "and sends nothing");
  const grown = await boxMetrics(page);
  assert.ok(grown.height > oneLine * 3, `six lines show whole: the box grew from ${oneLine}px to ${grown.height}px`);
  assert.ok(grown.scrollHeight <= grown.clientHeight + 1, "six lines fit without scrolling");
  await page.screenshot({ path: path.join(artifacts, "composer-six-lines.png") });

  for (let i = 7; i <= 14; i++) {
    await page.keyboard.press("Shift+Enter");
    await page.keyboard.type(`line ${i}`);
  }
  const tall = await boxMetrics(page);
  assert.ok(tall.height <= grown.height + 2, `it stops growing at about six lines (${grown.height}px, then ${tall.height}px)`);
  assert.ok(tall.scrollHeight > tall.clientHeight + 20, "the rest scrolls");
  assert.equal(tall.overflowY, "auto");

  const text = await box.inputValue();
  await page.keyboard.press("Enter");
  await waitForMessages(page, 1);
  assert.deepEqual(await shownTexts(page), [text], "Enter sends the whole text, new lines and all");
  assert.equal(await box.inputValue(), "");
  assert.equal((await boxMetrics(page)).height, oneLine, "and the box is one line again");

  // Send is a real, labelled button, reached with Tab, and sends from the keyboard.
  const send = byTestId(page, "send");
  assert.deepEqual(await send.evaluate((b) => [b.tagName, b.type, b.textContent, b.tabIndex]), ["BUTTON", "button", "Send", 0]);
  await box.fill("sent with the button, from the keyboard");
  await box.focus();
  await page.keyboard.press("Tab");
  assert.equal(await page.evaluate(() => document.activeElement?.getAttribute("data-testid")), "send");
  await page.keyboard.press("Enter");
  await waitForMessages(page, 2);
  assert.equal((await shownTexts(page))[1], "sent with the button, from the keyboard");
  await done(t);
});

test("on a touch screen, Enter starts a new line and the Send button sends", { timeout: 120_000 }, async () => {
  const t = await personInRoom("tia", { hasTouch: true, isMobile: true, viewport: { width: 390, height: 844 } });
  const { page } = t;
  assert.equal(await page.evaluate(() => matchMedia("(pointer: coarse)").matches), true, "the page sees a touch screen");
  const box = byTestId(page, "composer");

  await box.tap();
  await page.keyboard.type("one");
  await page.keyboard.press("Enter");
  await page.keyboard.type("two");
  assert.equal(await box.inputValue(), "one\ntwo", "Enter made a new line");
  assert.equal(await byTestId(page, "message").count(), 0, "and sent nothing");

  await byTestId(page, "send").tap();
  await waitForMessages(page, 1);
  assert.deepEqual(await shownTexts(page), ["one\ntwo"]);
  assert.equal(await box.inputValue(), "");
  assert.equal(await box.getAttribute("enterkeyhint"), "enter", "the on-screen keyboard's Enter says new line");
  await page.screenshot({ path: path.join(artifacts, "composer-touch.png") });
  await done(t);
});

test("a counter near the limit counts characters as the server does; a message too long stays, and says so in characters", { timeout: 120_000 }, async () => {
  const t = await personInRoom("cho");
  const { page } = t;
  const box = byTestId(page, "composer");
  const counter = byTestId(page, "composer-counter");
  const send = byTestId(page, "send");
  const status = page.locator("#composer-status");

  await box.fill("a".repeat(3686));
  assert.equal(await counter.textContent(), "", "no counter far from the limit");
  await box.fill("a".repeat(3687));
  assert.equal(await counter.textContent(), "409 left");
  assert.equal(await status.getAttribute("aria-live"), "polite", "screen readers hear it");
  // An emoji is one character (two UTF-16 units, four bytes).
  await box.fill("😀".repeat(3687));
  assert.equal(await counter.textContent(), "409 left", "an emoji counts once");

  // 5000 characters: over, Send disabled, and the text stays where it is.
  const long = "ab😀 ".repeat(1250);
  await box.fill(long);
  assert.equal(await counter.textContent(), "904 over the limit");
  assert.match(await status.textContent(), /at most 4096 characters/);
  assert.equal(await send.isDisabled(), true, "Send is disabled");
  assert.equal(await box.getAttribute("aria-invalid"), "true");
  await box.press("Enter");
  await page.waitForTimeout(300);
  assert.equal(await box.inputValue(), long, "Enter takes nothing out of the composer");
  assert.equal(await byTestId(page, "pending-message").count(), 0, "nothing is on its way");
  assert.equal(await byTestId(page, "error").count(), 0, "no server error: the app knew");
  assert.equal(await byTestId(page, "message").count(), 0);
  await page.screenshot({ path: path.join(artifacts, "composer-over-limit.png") });

  // Shortened to the limit, it goes.
  const cut = "x".repeat(LIMIT);
  await box.fill(cut);
  assert.equal(await counter.textContent(), "0 left");
  assert.equal(await send.isEnabled(), true);
  await box.press("Enter");
  await waitForMessages(page, 1);
  assert.deepEqual(await shownTexts(page), [cut]);
  assert.equal(await box.inputValue(), "");
  assert.equal(await counter.textContent(), "", "the counter goes with the text");
  await done(t);
});

test("4096 emoji are 4096 characters: allowed, and delivered whole", { timeout: 120_000 }, async () => {
  const t = await personInRoom("emi");
  const { page } = t;
  const box = byTestId(page, "composer");
  const full = "😀".repeat(LIMIT);
  await box.fill(full);
  assert.equal(await byTestId(page, "composer-counter").textContent(), "0 left");
  assert.equal(await byTestId(page, "send").isEnabled(), true);
  await byTestId(page, "send").click();
  // The server must count characters too: 4096 emoji are 16 KiB of UTF-8.
  await waitForMessages(page, 1);
  const [shown] = await shownTexts(page);
  assert.equal([...shown].length, LIMIT, "the message arrives whole");
  assert.equal(shown, full);
  assert.equal(await box.inputValue(), "");
  await done(t);
});

test("a message the server refuses comes back to the composer, or waits with Edit, never with a Retry that cannot work", { timeout: 120_000 }, async () => {
  const t = await personInRoom("rui");
  const { page } = t;
  const box = byTestId(page, "composer");
  // The server refuses control characters (but new line and tab): a pasted bell.
  const bell = "ding \u0007 dong";
  const put = (text) =>
    box.evaluate((n, text) => {
      n.value = text;
      n.dispatchEvent(new Event("input", { bubbles: true }));
    }, text);

  await put(bell);
  await box.press("Enter");
  await byTestId(page, "error").filter({ hasText: "back in the composer" }).waitFor();
  assert.equal(await box.inputValue(), bell, "the refused text is back, to fix");
  assert.equal(await byTestId(page, "pending-message").count(), 0, "and not in the list as well");
  assert.equal(await byTestId(page, "retry-send").count(), 0, "no Retry");
  await page.screenshot({ path: path.join(artifacts, "composer-refused.png") });
  await byTestId(page, "error").getByRole("button", { name: "Dismiss" }).click();
  await put("ding dong");
  await box.press("Enter");
  await waitForMessages(page, 1);

  // A refusal that finds the composer busy: a message left unsent by a
  // reload goes out, is refused, and waits in the list with Edit.
  const writing = "something else I was writing";
  await page.evaluate((text) => {
    const id = JSON.parse(localStorage.getItem("chat.auth")).user.id;
    const roomId = localStorage.getItem(`chat.active.${id}`);
    localStorage.setItem(`chat.pending.${id}`, JSON.stringify([{ clientMsgId: crypto.randomUUID(), roomId, text }]));
  }, bell);
  await box.fill(writing);
  await page.reload();
  const failed = byTestId(page, "pending-message");
  await failed.filter({ hasText: "Not sent" }).waitFor();
  assert.equal(await box.inputValue(), writing, "what was being written stays");
  assert.equal(await byTestId(page, "retry-send").count(), 0, "no Retry");
  await byTestId(page, "edit-failed").click();
  assert.equal(await box.inputValue(), `${writing}\n${bell}`, "Edit puts it in the composer, after what was there");
  assert.equal(await failed.count(), 0);
  await done(t);
});

test("errors show where they cover neither the composer nor Send, on a laptop and on a phone", { timeout: 120_000 }, async () => {
  const t = await personInRoom("eve");
  const { page } = t;
  // Something that fails: a conversation with nobody.
  await byTestId(page, "dm-username").fill(`nobody_${suffix()}`);
  await byTestId(page, "dm-submit").click();
  const toast = byTestId(page, "error");
  await toast.waitFor();
  assert.equal(await whatCoversSend(page), null, "at 1100×720 the Send button is not covered");
  await page.screenshot({ path: path.join(artifacts, "composer-error-laptop.png") });

  await page.setViewportSize({ width: 390, height: 844 });
  assert.equal(await toast.isVisible(), true, "the error still shows");
  assert.equal(await whatCoversSend(page), null, "at 390×844 the Send button is not covered");
  await page.screenshot({ path: path.join(artifacts, "composer-error-phone.png") });
  await byTestId(page, "composer").fill("sent while an error shows");
  await byTestId(page, "send").click({ timeout: 3_000 });
  await page.waitForFunction(() => document.querySelectorAll('[data-testid="message"]').length === 1);
  await done(t);
});

test("a draft is kept per room across room switches and reloads, and goes once sent or the room is left", { timeout: 120_000 }, async () => {
  const t = await personInRoom("dana");
  const { page, room: first } = t;
  const second = `${first}-b`;
  await createRoom(page, second);
  const box = byTestId(page, "composer");

  await openRoom(page, first);
  await box.fill("a draft for the first room");
  await openRoom(page, second);
  assert.equal(await box.inputValue(), "", "each room has its own");
  await box.fill("a draft for the second");
  await openRoom(page, first);
  assert.equal(await box.inputValue(), "a draft for the first room");

  await page.reload();
  await assertText(byTestId(page, "room-title"), `# ${first}`);
  await page.waitForFunction(() => !document.querySelector('[data-testid="composer"]').disabled);
  assert.equal(await box.inputValue(), "a draft for the first room", "a reload keeps it");
  await openRoom(page, second);
  assert.equal(await box.inputValue(), "a draft for the second");

  await box.press("Enter");
  await waitForMessages(page, 1);
  assert.equal(await box.inputValue(), "");
  assert.deepEqual(Object.keys(await drafts(page)).length, 1, "the sent draft is gone");
  await page.reload();
  await assertText(byTestId(page, "room-title"), `# ${second}`);
  await page.waitForFunction(() => !document.querySelector('[data-testid="composer"]').disabled);
  assert.equal(await box.inputValue(), "", "and stays gone after a reload");
  await openRoom(page, first);
  assert.equal(await box.inputValue(), "a draft for the first room");

  await byTestId(page, "leave-room").click();
  await assertText(byTestId(page, "room-title"), `# ${second}`);
  assert.deepEqual(await drafts(page), {}, "a room left keeps no draft");
  await done(t);
});

test("passwords are checked in characters: on creating an account and on changing it", { timeout: 120_000 }, async () => {
  const errors = [];
  const csp = [];
  const ctx = await launch(csp);
  const page = await openPage(ctx, errors, "pia", await appUrl());
  const user = `pia_${suffix()}`;
  const status = byTestId(page, "auth-status");

  await byTestId(page, "login-username").fill(user);
  await byTestId(page, "login-password").fill("short12");
  await byTestId(page, "register-submit").click();
  await status.filter({ hasText: "8 to 1024 characters" }).waitFor();
  assert.match(await status.textContent(), /has 7/);
  assert.equal(await byTestId(page, "login-password").getAttribute("aria-invalid"), "true");

  // Four emoji: sixteen bytes, but four characters.
  await byTestId(page, "login-password").fill("😀😀😀😀");
  await byTestId(page, "register-submit").click();
  await status.filter({ hasText: "has 4" }).waitFor();
  assert.match(await status.textContent(), /8 to 1024 characters/);
  await page.waitForTimeout(300);
  assert.equal(await byTestId(page, "me").count(), 0, "no account was made");
  assert.match(await page.locator("#auth-hint").textContent(), /8 to 1024 characters/, "the page says so beforehand");

  // Eight emoji are eight characters: enough.
  const password = "😀".repeat(8);
  await register(page, user, password);

  await openSessions(page);
  assert.match(await page.locator("#new-password-hint").textContent(), /8 to 1024 characters/);
  const said = byTestId(page, "password-status");
  for (const [next, n] of [["1234567", 7], ["🔑🔑🔑🔑🔑", 5]]) {
    await byTestId(page, "current-password").fill(password);
    await byTestId(page, "new-password").fill(next);
    await byTestId(page, "change-password-submit").click();
    await said.filter({ hasText: `has ${n}.` }).waitFor();
    assert.match(await said.textContent(), /8 to 1024 characters.*not changed/);
    assert.equal(await byTestId(page, "new-password").getAttribute("aria-invalid"), "true");
  }
  assert.deepEqual(errors, [], "no console errors");
  await assertNoCspViolations(csp, [page]);
});
