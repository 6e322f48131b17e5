// What one can do with a message in the browser app: its menu (reply,
// react, reply in a thread, edit, delete), reaction chips that toggle,
// editing in place, deleting with a confirmation, quoted replies that jump
// to their message, mentions, and thread replies counted on their root.
// See harness.mjs for how servers and browsers start.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  accessToken,
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
  assertAccessibleInBothSchemes,
} from "./harness.mjs";

const password = "correct horse battery";

/**
 * A server, and two people in one room: `a` created it, `b` joined it,
 * both pages showing it. `call(page, method, fields)` calls the API as
 * that page's user (string fields only) and resolves to the reply's bytes.
 */
async function twoInARoom(name) {
  const { address, appUrl } = await startServer(name);
  const errors = [];
  const csp = [];
  const suffix = Date.now().toString(36).slice(-5);
  const names = { a: `ann_${suffix}`, b: `ben_${suffix}` };
  const a = await openPage(await launch(csp), errors, "a", appUrl);
  const b = await openPage(await launch(csp), errors, "b", appUrl);
  await register(a, names.a, password);
  await register(b, names.b, password);
  const room = `${name}-${suffix}`;
  await byTestId(a, "create-room-name").fill(room);
  await byTestId(a, "create-room-submit").click();
  await assertText(byTestId(a, "room-title"), `# ${room}`);
  await byTestId(b, "browse-rooms").click();
  await b.locator(`[data-testid="browse-room"][data-room-name="${room}"] [data-testid="join-room"]`).click();
  await assertText(byTestId(b, "room-title"), `# ${room}`);
  const roomId = await a.evaluate(() => {
    const { user } = JSON.parse(localStorage.getItem("chat.auth"));
    return localStorage.getItem(`chat.active.${user.id}`);
  });
  const call = async (page, method, fields) => {
    const res = await grpcWebCall(address, `chat.v1.ChatService/${method}`, stringFields(fields), await accessToken(page));
    assert.equal(res.status, 0, `${method}: ${res.message}`);
    return res.reply;
  };
  /** Sends `text` as the page's user through the API (fields 4, 5: reply_to_id, thread_root_id); resolves to its id. */
  const say = async (page, text, more = {}) => {
    const reply = await call(page, "SendMessage", { 1: roomId, 2: text, ...more });
    return Buffer.from(protoField(protoField(reply, 1), 1)).toString("utf8");
  };
  const done = async () => {
    assert.deepEqual(errors, [], "no console errors");
    await assertNoCspViolations(csp, [a, b]);
  };
  return { a, b, names, roomId, call, say, errors, done };
}

/** The message whose text is `text`, in the page's list. */
function message(page, text) {
  return page
    .locator('[data-testid="message"]')
    .filter({ has: page.locator('[data-testid="message-text"]', { hasText: exactly(text) }) });
}

/** The accessible names of a message's menu buttons. */
async function menuOf(page, text) {
  return message(page, text).locator('[data-testid="message-actions"] button').evaluateAll((bs) =>
    bs.map((b) => b.getAttribute("aria-label")),
  );
}

/** Each reaction chip of a message: emoji, count and whether it is pressed. */
async function chips(page, text) {
  return message(page, text)
    .locator('[data-testid="reaction"]')
    .evaluateAll((cs) => cs.map((c) => `${c.dataset.emoji} ${c.textContent.replace(c.dataset.emoji, "")} ${c.getAttribute("aria-pressed")}`));
}

async function waitForChips(page, text, want) {
  await page.waitForFunction(
    ({ text, want }) => {
      const li = [...document.querySelectorAll('[data-testid="message"]')].find(
        (m) => m.querySelector('[data-testid="message-text"]')?.textContent === text,
      );
      if (!li) return false;
      const got = [...li.querySelectorAll('[data-testid="reaction"]')].map(
        (c) => `${c.dataset.emoji} ${c.textContent.replace(c.dataset.emoji, "")} ${c.getAttribute("aria-pressed")}`,
      );
      return JSON.stringify(got) === JSON.stringify(want);
    },
    { text, want },
  );
  assert.deepEqual(await chips(page, text), want);
}

test("the message menu: keyboard reachable and named; edit in place (Enter saves, Escape cancels) and delete with a confirmation, only one's own", { timeout: 150_000 }, async () => {
  const { a, b, done } = await twoInARoom("menu");
  await send(a, "helo everyone");
  await waitForMessage(b, "helo everyone");

  // Anyone may reply, react or start a thread; only the sender edits or deletes.
  assert.deepEqual(await menuOf(a, "helo everyone"), ["Reply", "Add reaction", "Reply in thread", "Edit", "Delete"]);
  assert.deepEqual(await menuOf(b, "helo everyone"), ["Reply", "Add reaction", "Reply in thread"]);

  // With the keyboard alone: the message, then Tab to its menu, Enter on Edit.
  await message(a, "helo everyone").focus();
  const names = [];
  for (let i = 0; i < 4; i++) {
    await a.keyboard.press("Tab");
    names.push(await a.evaluate(() => document.activeElement.getAttribute("aria-label")));
  }
  assert.deepEqual(names, ["Reply", "Add reaction", "Reply in thread", "Edit"]);
  // A toolbar: the arrow keys move along it too.
  const focused = () => a.evaluate(() => document.activeElement.getAttribute("aria-label"));
  await a.keyboard.press("ArrowRight");
  assert.equal(await focused(), "Delete");
  await a.keyboard.press("ArrowLeft");
  assert.equal(await focused(), "Edit");
  await a.keyboard.press("Enter");
  const box = byTestId(a, "edit-box");
  await box.waitFor();
  assert.equal(await box.inputValue(), "helo everyone");
  assert.equal(await box.evaluate((el) => el === document.activeElement), true, "the edit box has the focus");

  // Escape cancels: nothing changed, the focus back on the message.
  await box.fill("something else entirely");
  await box.press("Escape");
  await box.waitFor({ state: "detached" });
  assert.deepEqual(await messageTexts(a), ["helo everyone"]);
  assert.equal(await a.evaluate(() => document.activeElement.dataset.testid), "message");
  // Escape in the menu goes back to the message too.
  await a.keyboard.press("Tab");
  assert.equal(await focused(), "Reply");
  await a.keyboard.press("Escape");
  assert.equal(await a.evaluate(() => document.activeElement.dataset.testid), "message");

  // Enter saves: both see the new text, marked edited.
  await message(a, "helo everyone").hover();
  await message(a, "helo everyone").getByRole("button", { name: "Edit", exact: true }).click();
  await box.fill("hello everyone");
  await box.press("Enter");
  await waitForMessage(a, "hello everyone (edited)");
  await waitForMessage(b, "hello everyone (edited)");

  // Delete asks first; Cancel keeps it.
  await message(a, "hello everyone (edited)").hover();
  await message(a, "hello everyone (edited)").getByRole("button", { name: "Delete", exact: true }).click();
  const dialog = a.getByRole("dialog", { name: "Delete this message?" });
  await dialog.waitFor();
  await dialog.getByRole("button", { name: "Cancel", exact: true }).click();
  await dialog.waitFor({ state: "detached" });
  assert.deepEqual(await messageTexts(a), ["hello everyone (edited)"]);
  // Escape says no too.
  await message(a, "hello everyone (edited)").hover();
  await message(a, "hello everyone (edited)").getByRole("button", { name: "Delete", exact: true }).click();
  await dialog.waitFor();
  await a.keyboard.press("Escape");
  await dialog.waitFor({ state: "detached" });
  assert.deepEqual(await messageTexts(a), ["hello everyone (edited)"]);
  // Delete erases it, for both: the tombstone, and no menu to edit or delete it.
  await message(a, "hello everyone (edited)").hover();
  await message(a, "hello everyone (edited)").getByRole("button", { name: "Delete", exact: true }).click();
  await dialog.getByRole("button", { name: "Delete", exact: true }).click();
  for (const page of [a, b]) {
    await page.locator('[data-testid="message-text"][data-deleted="true"]', { hasText: "message deleted" }).waitFor();
    assert.deepEqual(await messageTexts(page), ["message deleted"]);
    assert.deepEqual(await menuOf(page, "message deleted"), []);
  }
  await done();
});

test("reaction chips show emoji and count in order of first use, toggle the reader's own, and survive edits and reloads", { timeout: 150_000 }, async () => {
  const { a, b, roomId, say, call, done } = await twoInARoom("react");
  const id = await say(b, "react to me");
  await waitForMessage(a, "react to me");

  // Ann picks 👍 from the picker: a chip, pressed for her, not for Ben.
  await message(a, "react to me").hover();
  await message(a, "react to me").getByRole("button", { name: "Add reaction", exact: true }).click();
  const picker = a.getByRole("dialog", { name: "Pick a reaction" });
  await picker.getByRole("button", { name: "React with 👍", exact: true }).click();
  await picker.waitFor({ state: "detached" });
  await waitForChips(a, "react to me", ["👍 1 true"]);
  await waitForChips(b, "react to me", ["👍 1 false"]);

  // Ben adds his by clicking the chip, then ❤️ (last: order of first use).
  await message(b, "react to me").locator('[data-testid="reaction"][data-emoji="👍"]').click();
  await waitForChips(b, "react to me", ["👍 2 true"]);
  await waitForChips(a, "react to me", ["👍 2 true"]);
  await call(b, "AddReaction", { 1: roomId, 2: id, 3: "❤️" });
  await waitForChips(a, "react to me", ["👍 2 true", "❤️ 1 false"]);
  await waitForChips(b, "react to me", ["👍 2 true", "❤️ 1 true"]);

  // Ann's click on her pressed chip takes hers away.
  await message(a, "react to me").getByRole("button", { name: /^👍 2 reactions/ }).click();
  await waitForChips(a, "react to me", ["👍 1 false", "❤️ 1 false"]);
  await waitForChips(b, "react to me", ["👍 1 true", "❤️ 1 true"]);

  // Gone to zero and added again, an emoji goes last.
  await call(b, "RemoveReaction", { 1: roomId, 2: id, 3: "👍" });
  await waitForChips(a, "react to me", ["❤️ 1 false"]);
  await call(b, "AddReaction", { 1: roomId, 2: id, 3: "👍" });
  await waitForChips(a, "react to me", ["❤️ 1 false", "👍 1 false"]);

  // An edit (its event carries no reactions) keeps them.
  await call(b, "EditMessage", { 1: roomId, 2: id, 3: "react to this" });
  await waitForMessage(a, "react to this (edited)");
  await waitForChips(a, "react to this (edited)", ["❤️ 1 false", "👍 1 false"]);

  // History brings the same, pressed for whoever reacted.
  await a.reload();
  await b.reload();
  await waitForChips(a, "react to this (edited)", ["❤️ 1 false", "👍 1 false"]);
  await waitForChips(b, "react to this (edited)", ["❤️ 1 true", "👍 1 true"]);
  await done();
});

test("reactions made while the reader was offline come with the resume, each counted once", { timeout: 120_000 }, async () => {
  const { a, b, roomId, say, call, done } = await twoInARoom("resume");
  const id = await say(b, "while you were away");
  await waitForMessage(a, "while you were away");
  await call(b, "AddReaction", { 1: roomId, 2: id, 3: "👀" });
  await waitForChips(a, "while you were away", ["👀 1 false"]);

  await a.context().setOffline(true);
  await assertText(byTestId(a, "connection"), "offline");
  await call(b, "AddReaction", { 1: roomId, 2: id, 3: "👍" });
  await call(b, "AddReaction", { 1: roomId, 2: id, 3: "❤️" });
  await call(b, "RemoveReaction", { 1: roomId, 2: id, 3: "👀" });
  await call(b, "RemoveReaction", { 1: roomId, 2: id, 3: "❤️" });
  // Ann's own, from another device: hers when it arrives.
  await call(a, "AddReaction", { 1: roomId, 2: id, 3: "🎉" });
  await a.context().setOffline(false);
  await assertText(byTestId(a, "connection"), "online");
  await waitForChips(a, "while you were away", ["👍 1 false", "🎉 1 true"]);

  // Live again: her click takes hers away, once.
  await message(a, "while you were away").locator('[data-testid="reaction"][data-emoji="🎉"]').click();
  await waitForChips(b, "while you were away", ["👍 1 true"]);
  await waitForChips(a, "while you were away", ["👍 1 false"]);
  await done();
});

test("a reply quotes its message, with a cancel; the quote goes to the message, paging back, and says when it is deleted", { timeout: 180_000 }, async () => {
  const { a, b, names, say, call, roomId, done } = await twoInARoom("reply");
  const original = await say(a, "the original question");
  await waitForMessage(a, "the original question");
  for (let i = 1; i <= 60; i++) await say(b, `filler ${i}`);
  await waitForMessage(a, "filler 60");

  // Reply, then think better of it: the bar goes, and nothing is quoted.
  await message(a, "the original question").scrollIntoViewIfNeeded();
  await message(a, "the original question").hover();
  await message(a, "the original question").getByRole("button", { name: "Reply", exact: true }).click();
  await assertText(byTestId(a, "reply-target"), `Replying to ${names.a}: the original question`);
  await a.getByRole("button", { name: "Cancel reply", exact: true }).click();
  assert.equal(await byTestId(a, "reply-bar").isHidden(), true);
  await send(a, "not a reply");
  assert.equal(await message(a, "not a reply").locator('[data-testid="reply-quote"]').count(), 0);

  // Reply for real: the composer has the focus, the message shows its quote.
  await message(a, "the original question").scrollIntoViewIfNeeded();
  await message(a, "the original question").hover();
  await message(a, "the original question").getByRole("button", { name: "Reply", exact: true }).click();
  assert.equal(await byTestId(a, "composer").evaluate((el) => el === document.activeElement), true);
  await send(a, "the answer");
  assert.equal(await byTestId(a, "reply-bar").isHidden(), true, "the bar goes once the reply is sent");
  for (const page of [a, b]) {
    await waitForMessage(page, "the answer");
    const quote = message(page, "the answer").locator('[data-testid="reply-quote"]');
    await assertText(quote, names.a);
    assert.equal(await quote.locator('[data-testid="quote-text"]').textContent(), "the original question");
  }

  // Ben, freshly loaded, holds only the last page: the quote pages back to
  // the original, scrolls to it and highlights it.
  await b.reload();
  await waitForMessage(b, "the answer");
  assert.equal(await message(b, "the original question").count(), 0, "not loaded yet");
  await message(b, "the answer").locator('[data-testid="reply-quote"]').click();
  const target = message(b, "the original question");
  await target.waitFor();
  await b.waitForFunction(() => document.activeElement?.classList.contains("highlight"));
  assert.equal(await target.evaluate((el) => el === document.activeElement), true, "the quoted message has the focus");
  const inView = await target.evaluate((el) => {
    const r = el.getBoundingClientRect();
    const log = el.closest('[data-testid="messages"]').getBoundingClientRect();
    return r.top >= log.top && r.bottom <= log.bottom;
  });
  assert.equal(inView, true, "the quoted message is in view");

  // An edit of it shows in the quote at once, and so does its deletion.
  await call(a, "EditMessage", { 1: roomId, 2: original, 3: "the question, rephrased" });
  for (const page of [a, b]) {
    await message(page, "the answer").locator('[data-testid="quote-text"]', { hasText: exactly("the question, rephrased") }).waitFor();
  }
  await call(a, "DeleteMessage", { 1: roomId, 2: original });
  for (const page of [a, b]) {
    await message(page, "the answer").locator('[data-testid="quote-text"]', { hasText: exactly("deleted message") }).waitFor();
  }
  await a.reload();
  await message(a, "the answer").locator('[data-testid="quote-text"]', { hasText: exactly("deleted message") }).waitFor();
  await done();
});

test("mentions are highlighted, the reader's own more strongly, never inside code", { timeout: 120_000 }, async () => {
  const { a, b, names, done } = await twoInARoom("mention");
  const text = `hi @${names.b.toUpperCase()}, ask @${names.a}. not @nobody_here or \`@${names.b}\` or x@${names.b}`;
  await byTestId(a, "composer").fill(text);
  await byTestId(a, "composer").press("Enter");
  // As shown: the code span without its backticks.
  const shown = text.replaceAll("`", "");
  for (const page of [a, b]) await waitForMessage(page, shown);
  const spans = async (page) =>
    message(page, shown)
      .locator('[data-testid="mention"]')
      .evaluateAll((ss) => ss.map((s) => `${s.textContent}${s.dataset.me ? " (me)" : ""}`));
  assert.deepEqual(await spans(b), [`@${names.b.toUpperCase()} (me)`, `@${names.a}`]);
  assert.deepEqual(await spans(a), [`@${names.b.toUpperCase()}`, `@${names.a} (me)`]);
  // The reader's own looks stronger than another's.
  const looks = await message(b, shown)
    .locator('[data-testid="mention"]')
    .evaluateAll((ss) => ss.map((s) => getComputedStyle(s).backgroundColor));
  assert.notEqual(looks[0], looks[1]);
  await done();
});

test("thread replies stay out of the list; the root counts them live and opens the thread", { timeout: 150_000 }, async () => {
  const { a, b, say, done } = await twoInARoom("thread");
  const root = await say(a, "a thread starts here");
  await waitForMessage(b, "a thread starts here");
  await say(b, "first in the thread", { 5: root });
  const replies = message(b, "a thread starts here").locator('[data-testid="thread-summary"]');
  await replies.filter({ hasText: exactly("1 reply") }).waitFor();
  await say(a, "second in the thread", { 5: root });
  await say(b, "after the thread");
  for (const page of [a, b]) {
    await waitForMessage(page, "after the thread");
    await message(page, "a thread starts here").locator('[data-testid="thread-summary"]', { hasText: exactly("2 replies") }).waitFor();
    assert.deepEqual(await messageTexts(page), ["a thread starts here", "after the thread"]);
  }

  // After a reload, History's counts: the same.
  await b.reload();
  await waitForMessage(b, "after the thread");
  await replies.filter({ hasText: exactly("2 replies") }).waitFor();
  assert.deepEqual(await messageTexts(b), ["a thread starts here", "after the thread"]);

  // "2 replies" and the menu's "Reply in thread" open the thread beside the room.
  await replies.click();
  await byTestId(b, "side-panel").waitFor({ state: "visible" });
  await byTestId(b, "side-panel-close").click();
  await byTestId(b, "side-panel").waitFor({ state: "hidden" });
  await message(b, "a thread starts here").hover();
  await message(b, "a thread starts here").getByRole("button", { name: "Reply in thread", exact: true }).click();
  await byTestId(b, "side-panel").waitFor({ state: "visible" });
  await done();
});

test("every part of it passes axe, light and dark: chips, quotes, mentions, thread counts, the editor, the picker, the reply bar and the confirmation", { timeout: 180_000 }, async () => {
  const { a, names, roomId, say, call, done } = await twoInARoom("axe");
  const root = await say(a, `hello @${names.b}, **look** at this`);
  await call(a, "AddReaction", { 1: roomId, 2: root, 3: "🎉" });
  await say(a, "in the thread", { 5: root });
  await say(a, "quoting it", { 4: root });
  await waitForMessage(a, "quoting it");
  await message(a, "quoting it").locator('[data-testid="reply-quote"]').waitFor();
  await a.locator('[data-testid="reaction"][data-emoji="🎉"]').waitFor();
  await a.locator('[data-testid="thread-summary"]').waitFor();
  await a.locator('[data-testid="mention"]').waitFor();
  await assertAccessibleInBothSchemes(a, "messages", "parts");

  await message(a, "quoting it").hover();
  await message(a, "quoting it").getByRole("button", { name: "Reply", exact: true }).click();
  await byTestId(a, "reply-bar").waitFor();
  await message(a, "quoting it").hover();
  await message(a, "quoting it").getByRole("button", { name: "Edit", exact: true }).click();
  await byTestId(a, "edit-box").waitFor();
  await assertAccessibleInBothSchemes(a, "messages", "editing");
  await byTestId(a, "edit-box").press("Escape");

  await message(a, "quoting it").hover();
  await message(a, "quoting it").getByRole("button", { name: "Add reaction", exact: true }).click();
  await byTestId(a, "emoji-picker").waitFor();
  await assertAccessibleInBothSchemes(a, "messages", "picker");
  await a.keyboard.press("Escape");
  await byTestId(a, "emoji-picker").waitFor({ state: "detached" });

  await message(a, "quoting it").hover();
  await message(a, "quoting it").getByRole("button", { name: "Delete", exact: true }).click();
  await byTestId(a, "confirm-dialog").waitFor();
  await assertAccessibleInBothSchemes(a, "messages", "confirm");
  await a.keyboard.press("Escape");
  await done();
});

test("another member's join and leave show as lines among the messages, in seq order, and move the cursor", { timeout: 120_000 }, async () => {
  const { a, b, names, roomId, call, say, done } = await twoInARoom("members");
  // ann had the room open when ben joined it: his join is an event of the
  // room's log, and a line of its timeline.
  const joined = a.locator('[data-testid="member-event"][data-kind="joined"]', { hasText: exactly(`${names.b} joined`) });
  await joined.waitFor();
  await say(b, "hello from ben");
  await waitForMessage(a, "hello from ben");
  await call(b, "LeaveRoom", { 1: roomId });
  const left = a.locator('[data-testid="member-event"][data-kind="left"]', { hasText: exactly(`${names.b} left`) });
  await left.waitFor();

  // Messages and member lines, as the list shows them: by seq.
  const timeline = () =>
    a.locator('[data-testid="messages"] > li').evaluateAll((items) =>
      items
        .filter((li) => li.matches('[data-testid="member-event"], [data-testid="message"]'))
        .map((li) => li.querySelector('[data-testid="message-text"]')?.textContent ?? li.textContent),
    );
  assert.deepEqual(await timeline(), [`${names.b} joined`, "hello from ben", `${names.b} left`]);
  const seqOf = async (line) => BigInt(await line.getAttribute("data-seq"));
  assert.ok((await seqOf(joined)) < (await seqOf(left)));

  // The leave is heard: the room's cursor is at its seq, and the next
  // message needs no History call for the seqs before it.
  const cursor = () =>
    a.evaluate((roomId) => {
      const { user } = JSON.parse(localStorage.getItem("chat.auth"));
      return JSON.parse(localStorage.getItem(`chat.cursors.${user.id}`))[roomId];
    }, roomId);
  assert.equal(BigInt(await cursor()), await seqOf(left));
  const histories = [];
  a.on("request", (req) => {
    if (req.url().endsWith("/chat.v1.ChatService/History")) histories.push(req.url());
  });
  await say(a, "ben has gone");
  await waitForMessage(a, "ben has gone");
  assert.deepEqual(histories, [], "no History call for a gap that is not one");
  assert.deepEqual(await timeline(), [`${names.b} joined`, "hello from ben", `${names.b} left`, "ben has gone"]);
  await done();
});

test("a rename shows in the room list, the title and the timeline; a member removed loses the room, and the others see a line", { timeout: 120_000 }, async () => {
  const { a, b, names, roomId, call, done } = await twoInARoom("moderation");
  const renamed = `renamed-${Date.now().toString(36).slice(-5)}`;
  await call(a, "UpdateRoom", { 1: roomId, 2: renamed });
  for (const page of [a, b]) {
    await assertText(byTestId(page, "room-title"), `# ${renamed}`);
    await page.locator(`[data-testid="room"][data-room-name="${renamed}"]`).waitFor();
    await page.locator('[data-testid="member-event"][data-kind="renamed"]', { hasText: exactly(`${names.a} renamed the room to ${renamed}`) }).waitFor();
  }

  const benId = await b.evaluate(() => JSON.parse(localStorage.getItem("chat.auth")).user.id);
  await call(a, "RemoveMember", { 1: roomId, 2: benId, 4: "spam" });
  await a.locator('[data-testid="member-event"][data-kind="removed"]', { hasText: exactly(`${names.b} was removed by ${names.a}: spam`) }).waitFor();
  // ben's page: the room leaves his rooms (a public one: to browse again),
  // and he is told why.
  await b.locator(`[data-testid="room"][data-room-name="${renamed}"]`).waitFor({ state: "detached" });
  await assertText(byTestId(b, "error"), `You were removed from ${renamed}: spam.`);
  const cursors = await b.evaluate(() => {
    const { user } = JSON.parse(localStorage.getItem("chat.auth"));
    return JSON.parse(localStorage.getItem(`chat.cursors.${user.id}`));
  });
  assert.equal(cursors[roomId], undefined, "the room is resumed no more");
  await done();
});
