// How the message list looks and reads: groups by sender and time, date
// separators, a time on every message, safe links and Markdown, the "New
// messages" line and "Jump to latest". See harness.mjs for how servers and
// browsers start.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
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
  register,
  send,
  startServer,
  stopServer,
  stringFields,
  waitForMessage,
  webDir,
} from "./harness.mjs";

const password = "correct horse battery";

/** Registers `name` on a fresh browser profile and opens a new room `room`. */
async function personWithRoom(csp, errors, appUrl, name, room) {
  const page = await openPage(await launch(csp), errors, name, appUrl);
  await register(page, name, password);
  if (room) await createRoom(page, room);
  return page;
}

async function createRoom(page, room) {
  await byTestId(page, "create-room-name").fill(room);
  await byTestId(page, "create-room-submit").click();
  await assertText(byTestId(page, "room-title"), `# ${room}`);
}

/**
 * Sends `text` as typed, and waits until the server has it: Markdown
 * shows other words than were typed, so no wait on the text.
 */
async function sendRaw(page, text) {
  const before = await byTestId(page, "message").count();
  await byTestId(page, "composer").fill(text);
  await byTestId(page, "composer").press("Enter");
  await page.waitForFunction(
    (n) =>
      document.querySelectorAll('[data-testid="message"]').length > n &&
      !document.querySelector('[data-testid="pending-message"]'),
    before,
  );
  return byTestId(page, "message").last();
}

/** The open room's id, as the page keeps it. */
async function openRoomId(page) {
  return page.evaluate(() => {
    const { user } = JSON.parse(localStorage.getItem("chat.auth"));
    return localStorage.getItem(`chat.active.${user.id}`);
  });
}

/** What the message list holds, top to bottom, in words. */
async function listOutline(page) {
  return byTestId(page, "messages").evaluate((list) =>
    [...list.children].map((li) => {
      const id = li.getAttribute("data-testid");
      if (id === "message") {
        const head = li.querySelector('[data-testid="message-sender"]') ? "head" : "cont";
        return `${head}: ${li.querySelector('[data-testid="message-text"]').textContent}`;
      }
      if (id === "date-separator" || id === "new-messages-divider") {
        return `${id}: ${li.querySelector('[role="separator"]').getAttribute("aria-label")}`;
      }
      return `${id ?? li.className}: ${li.textContent}`;
    }),
  );
}

/**
 * Rewrites when messages were sent, in the server's SQLite file (the server
 * stopped): `times` maps a message's text to milliseconds since the epoch.
 * chat-store keeps `messages.sent_at` in microseconds.
 */
function setSentAt(db, times) {
  const script = `
import json, sqlite3, sys
con = sqlite3.connect(sys.argv[1])
for text, micros in json.loads(sys.argv[2]):
    n = con.execute("UPDATE messages SET sent_at = ? WHERE text = ?", (micros, text)).rowcount
    assert n == 1, (text, n)
con.commit()
`;
  const rows = Object.entries(times).map(([text, ms]) => [text, ms * 1000]);
  execFileSync("python3", ["-c", script, db, JSON.stringify(rows)]);
}

test("messages group by sender and time, days are separated, and every message tells its time", { timeout: 120_000 }, async () => {
  const first = await startServer("groups-1");
  const errors = [];
  const csp = [];
  const suffix = Date.now().toString(36).slice(-5);
  const page = await personWithRoom(csp, errors, first.appUrl, `gus_${suffix}`, `times-${suffix}`);

  // Three days ago: two within five minutes, one after a longer pause;
  // yesterday; today, twice in a minute.
  const at = (daysAgo, h, m, s = 0) => {
    const d = new Date();
    return new Date(d.getFullYear(), d.getMonth(), d.getDate() - daysAgo, h, m, s).getTime();
  };
  const times = {
    "three days ago": at(3, 10, 0),
    "four minutes later": at(3, 10, 4),
    "five and a half minutes after that": at(3, 10, 9, 30),
    "yesterday at noon": at(1, 12, 0),
    "today, just after midnight": at(0, 0, 0, 10),
    "a minute later": at(0, 0, 1, 10),
  };
  for (const text of Object.keys(times)) await send(page, text);

  await stopServer(first.srv);
  setSentAt(first.db, times);
  await startServer("groups-2", [], { db: first.db, listen: first.address });
  await page.reload();
  await waitForMessage(page, "a minute later");

  const longDate = await page.evaluate(
    (ms) => new Date(ms).toLocaleDateString([], { weekday: "long", year: "numeric", month: "long", day: "numeric" }),
    times["three days ago"],
  );
  assert.deepEqual(await listOutline(page), [
    `date-separator: ${longDate}`,
    "head: three days ago",
    "cont: four minutes later",
    "head: five and a half minutes after that",
    "date-separator: Yesterday",
    "head: yesterday at noon",
    "date-separator: Today",
    "head: today, just after midnight",
    "cont: a minute later",
  ]);
  const separators = byTestId(page, "date-separator");
  for (const sep of await separators.all()) assert.equal(await sep.locator('[role="separator"]').count(), 1);
  assert.deepEqual(await separators.allInnerTexts(), [longDate, "Yesterday", "Today"]);

  // Every message has its time, the server's, to the second in a tooltip.
  const stamps = await byTestId(page, "message").evaluateAll((items) =>
    items.map((li) => {
      const time = li.querySelector("time[datetime]");
      return time && { text: li.querySelector('[data-testid="message-text"]').textContent, datetime: time.getAttribute("datetime"), title: time.title };
    }),
  );
  assert.deepEqual(
    stamps.map((s) => s && [s.text, s.datetime]),
    Object.entries(times).map(([text, ms]) => [text, new Date(ms).toISOString()]),
  );
  for (const s of stamps) assert.match(s.title, new RegExp(String(new Date(times[s.text]).getFullYear())), "the tooltip has the full date");

  // A grouped message shows its time on hover, and on keyboard focus.
  const cont = page.locator('[data-testid="message"]', { hasText: "four minutes later" });
  const contTime = cont.locator("time");
  const head = page.locator('[data-testid="message"]', { hasText: "three days ago" });
  assert.equal(await contTime.isVisible(), false, "a grouped message's time waits for the pointer");
  assert.equal(await head.locator("time").isVisible(), true, "a group's first message shows its time");
  await cont.hover();
  assert.equal(await contTime.isVisible(), true, "hovering shows the time");
  await byTestId(page, "room-title").hover();
  assert.equal(await contTime.isVisible(), false);
  await head.focus();
  await page.keyboard.press("ArrowDown");
  assert.equal(await cont.evaluate((li) => li === document.activeElement), true, "the arrow keys move between messages");
  assert.equal(await contTime.isVisible(), true, "keyboard focus shows the time");
  await page.screenshot({ path: path.join(artifacts, "groups.png") });

  assert.deepEqual(await byTestId(page, "error").allInnerTexts(), [], "no error shown");
  // While the server is down, Chromium itself logs each refused connection.
  const appErrors = errors.filter((m) => !m.includes("net::ERR_CONNECTION_REFUSED"));
  assert.deepEqual(appErrors, [], "no console errors but the browser's own refused connections");
  await assertNoCspViolations(csp, [page]);
});

test("links open safely, only http and https are links, and a small Markdown subset shows", { timeout: 120_000 }, async () => {
  const { appUrl } = await startServer("text");
  const errors = [];
  const csp = [];
  const suffix = Date.now().toString(36).slice(-5);
  const page = await personWithRoom(csp, errors, appUrl, `tess_${suffix}`, `text-${suffix}`);
  const dialogs = [];
  page.on("dialog", (d) => {
    dialogs.push(d.message());
    void d.dismiss();
  });
  const textOf = (msg) => msg.locator('[data-testid="message-text"]');

  // A link, without the full stop that ends the sentence.
  let msg = await sendRaw(page, "read https://example.com/a?b=1.");
  assert.equal(await textOf(msg).textContent(), "read https://example.com/a?b=1.");
  const link = msg.locator("a");
  assert.equal(await link.count(), 1);
  assert.equal(await link.getAttribute("href"), "https://example.com/a?b=1");
  assert.equal(await link.textContent(), "https://example.com/a?b=1");
  assert.equal(await link.getAttribute("target"), "_blank");
  assert.deepEqual((await link.getAttribute("rel")).split(/\s+/).sort(), ["noopener", "noreferrer"]);
  msg = await sendRaw(page, "(see www.example.org/x_(y)), or http://example.net/path!");
  assert.deepEqual(
    await msg.locator("a").evaluateAll((as) => as.map((a) => [a.getAttribute("href"), a.textContent])),
    [
      ["https://www.example.org/x_(y)", "www.example.org/x_(y)"],
      ["http://example.net/path", "http://example.net/path"],
    ],
  );

  // Anything else stays words: no link, no element, nothing run.
  const hostile = [
    "javascript:alert(1)",
    "<img src=x onerror=alert(1)>",
    "[x](javascript:alert(1))",
    "data:text/html,<script>alert(1)</script>",
    "vbscript:msgbox(1) <a href=javascript:alert(1)>y</a>",
    "<b>not bold</b> &amp; <style>*{}</style>",
  ];
  for (const text of hostile) {
    msg = await sendRaw(page, text);
    assert.equal(await textOf(msg).textContent(), text);
    assert.equal(await textOf(msg).locator("*").count(), 0, `${text}: text only`);
  }

  // Bold, italic, code and code blocks, exactly; no link inside code.
  msg = await sendRaw(page, "**bold** and *italic* and _also italic_ and `a_b *c*` and **_both_**");
  assert.deepEqual(await msg.locator("strong").allTextContents(), ["bold", "both"]);
  assert.deepEqual(await msg.locator("em").allTextContents(), ["italic", "also italic", "both"]);
  assert.deepEqual(await msg.locator("code").allTextContents(), ["a_b *c*"]);
  assert.equal(await textOf(msg).textContent(), "bold and italic and also italic and a_b *c* and both");
  const block = "fn main() {\n    println!(\"{}\", 1 < 2);\n}";
  msg = await sendRaw(page, `look:\n\`\`\`rust\n${block}\n\`\`\`\nand \`https://example.com/in-code\``);
  const pre = msg.locator("pre");
  assert.equal(await pre.count(), 1);
  assert.equal(await pre.locator("code").textContent(), block);
  assert.equal(await pre.evaluate((node) => getComputedStyle(node).whiteSpace), "pre");
  assert.match(await pre.evaluate((node) => getComputedStyle(node).fontFamily), /mono/i);
  assert.equal(await msg.locator("a").count(), 0, "no link inside code");
  assert.deepEqual(await msg.locator(":not(pre) > code").allTextContents(), ["https://example.com/in-code"]);

  // What does not pair up stays as typed.
  for (const text of ["**unclosed", "2 * 3 * 4 and snake_case_name", "a ** b ** c", "`open code", "```no end"]) {
    msg = await sendRaw(page, text);
    assert.equal(await textOf(msg).textContent(), text);
    assert.equal(await textOf(msg).locator("*").count(), 0, `${text}: text only`);
  }

  // A long line in a code block scrolls sideways instead of widening the page.
  msg = await sendRaw(page, `\`\`\`\n${"x".repeat(400)}\n\`\`\``);
  const wide = await msg.locator("pre").evaluate((node) => [node.scrollWidth, node.clientWidth]);
  assert.ok(wide[0] > wide[1], `the block scrolls (${wide})`);
  assert.equal(await page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth), true);
  await page.screenshot({ path: path.join(artifacts, "markdown.png") });

  assert.deepEqual(dialogs, [], "no script ran");
  assert.deepEqual(await byTestId(page, "error").allInnerTexts(), [], "no error shown");
  assert.deepEqual(errors, [], "no console errors");
  await assertNoCspViolations(csp, [page]);
});

test("the app never turns text into markup: no innerHTML and the like in its sources", () => {
  const src = path.join(webDir, "src");
  const files = readdirSync(src, { recursive: true }).filter((f) => /\.ts$/.test(f) && !f.startsWith("gen"));
  assert.ok(files.some((f) => f.includes("messages")), "the message list's sources are there");
  for (const file of files) {
    const text = readFileSync(path.join(src, file), "utf8").replace(/\/\/.*$/gm, "");
    assert.doesNotMatch(text, /innerHTML|outerHTML|insertAdjacentHTML|document\.write|createContextualFragment|DOMParser/, file);
  }
});

test("\"New messages\" marks where the reader left off, and \"Jump to latest\" brings them back", { timeout: 180_000 }, async () => {
  const { appUrl, address } = await startServer("unread");
  const errors = [];
  const csp = [];
  const suffix = Date.now().toString(36).slice(-5);
  const room = `unread-${suffix}`;
  const other = `other-${suffix}`;
  const a = await personWithRoom(csp, errors, appUrl, `ann_${suffix}`, room);
  const b = await personWithRoom(csp, errors, appUrl, `ben_${suffix}`, other);
  const roomId = await openRoomId(a);
  await byTestId(b, "browse-rooms").click();
  await b.locator(`[data-testid="browse-room"][data-room-name="${room}"] [data-testid="join-room"]`).click();
  await assertText(byTestId(b, "room-title"), `# ${room}`);
  await send(a, "read by both");
  await waitForMessage(b, "read by both");
  assert.equal(await byTestId(b, "new-messages-divider").count(), 0, "nothing new in a room one is reading");

  // Ben is in another room while Ann writes; he comes back.
  await b.locator(`[data-testid="room"][data-room-name="${other}"]`).click();
  await assertText(byTestId(b, "room-title"), `# ${other}`);
  for (const text of ["new one", "new two", "new three"]) await send(a, text);
  const roomEntry = b.locator(`[data-testid="room"][data-room-name="${room}"]`);
  await roomEntry.and(b.locator('[data-unread="true"]')).waitFor();
  await roomEntry.click();
  await waitForMessage(b, "new three");
  const divider = byTestId(b, "new-messages-divider");
  const around = () =>
    divider.evaluate((node) => [
      node.previousElementSibling?.querySelector('[data-testid="message-text"]')?.textContent,
      node.textContent,
      node.querySelector('[role="separator"]')?.getAttribute("role"),
      node.nextElementSibling?.querySelector('[data-testid="message-text"]')?.textContent,
      node.nextElementSibling?.querySelector('[data-testid="message-sender"]')?.textContent,
    ]);
  const expected = ["read by both", "New messages", "separator", "new one", `ann_${suffix}`];
  assert.deepEqual(await around(), expected, "the line sits above the first new message, which names its sender");
  await b.screenshot({ path: path.join(artifacts, "new-messages.png") });

  // It stays while the room is open; back from elsewhere with nothing new, it is gone.
  await send(a, "while reading");
  await waitForMessage(b, "while reading");
  assert.deepEqual(await around(), expected);
  await b.locator(`[data-testid="room"][data-room-name="${other}"]`).click();
  await roomEntry.click();
  await waitForMessage(b, "while reading");
  assert.equal(await divider.count(), 0, "read once, not new again");

  // Many messages: scrolled up, the button shows; it brings the newest back.
  const token = await accessToken(a);
  const tall = (i) => `tall message ${i}\nsecond line\nthird line\nfourth line\nfifth line`;
  for (let i = 1; i <= 14; i++) {
    const res = await grpcWebCall(address, "chat.v1.ChatService/SendMessage", stringFields({ 1: roomId, 2: tall(i) }), token);
    assert.equal(res.status, 0, res.message);
  }
  const log = byTestId(b, "messages");
  await log.locator('[data-testid="message"]', { hasText: "tall message 14" }).waitFor();
  const jump = byTestId(b, "jump-to-latest");
  const fromBottom = () => log.evaluate((node) => node.scrollHeight - node.scrollTop - node.clientHeight);
  assert.ok((await fromBottom()) < 5, "a reader at the bottom follows new messages");
  assert.equal(await jump.isVisible(), false);
  await log.evaluate((node) => node.scrollTo(0, 0));
  await jump.waitFor({ state: "visible" });
  assert.equal((await jump.innerText()).trim(), "Jump to latest ↓");
  assert.equal(await jump.evaluate((node) => node.tagName), "BUTTON", "a button, reached with Tab");

  // Something new while scrolled up: the button says so.
  const res = await grpcWebCall(address, "chat.v1.ChatService/SendMessage", stringFields({ 1: roomId, 2: "the newest" }), token);
  assert.equal(res.status, 0, res.message);
  await jump.filter({ hasText: "New messages" }).waitFor();
  assert.ok((await fromBottom()) > 300, "the reader stays where they were");
  await b.screenshot({ path: path.join(artifacts, "jump-to-latest.png") });
  await jump.focus();
  await b.keyboard.press("Enter");
  await jump.waitFor({ state: "hidden" });
  assert.ok((await fromBottom()) < 5, "at the bottom");
  assert.equal(await log.locator('[data-testid="message"]').last().locator('[data-testid="message-text"]').textContent(), "the newest");
  assert.equal(
    await b.evaluate(() => document.activeElement?.querySelector('[data-testid="message-text"]')?.textContent),
    "the newest",
    "the focus goes to the newest message",
  );

  // The mouse works too.
  await log.evaluate((node) => node.scrollTo(0, 0));
  await jump.click();
  await jump.waitFor({ state: "hidden" });
  assert.ok((await fromBottom()) < 5, "at the bottom");

  assert.deepEqual(await byTestId(b, "error").allInnerTexts(), [], "no error shown to Ben");
  assert.deepEqual(errors, [], "no console errors");
  await assertNoCspViolations(csp, [a, b]);
});
