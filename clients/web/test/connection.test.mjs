// The app tells a live connection from a dead one, honestly: a frozen
// server (SIGSTOP: its sockets stay open, it just says nothing) shows as
// offline within two heartbeat intervals, and so does a browser that went
// offline; either comes back by itself, and a message written meanwhile
// waits for the connection and lands once. On a phone the header keeps to
// one row whatever the connection's label says.
import { test } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import {
  artifacts,
  assertNoCspViolations,
  assertText,
  byTestId,
  exactly,
  launch,
  messageTexts,
  openPage,
  register,
  send,
  startServer,
  waitForMessage,
} from "./harness.mjs";

const password = "correct horse battery";

/** Resolves once the page's connection pill is in `state` (live, connecting, offline). */
function connectionState(page, state, timeout) {
  return page.waitForFunction(
    (s) => document.querySelector('[data-testid="connection"]')?.getAttribute("data-state") === s,
    state,
    { timeout, polling: 50 },
  );
}

/** How many messages (not "sending…" copies) with exactly this text the open room shows. */
async function shownCount(page, text) {
  return page.locator('[data-testid="message"] [data-testid="message-text"]', { hasText: exactly(text) }).count();
}

/** Registers each person in the same fresh room: the first creates it, the others join. */
async function intoOneRoom(pages, names, room) {
  for (const [i, page] of pages.entries()) {
    await register(page, names[i], password);
    if (i === 0) {
      await byTestId(page, "create-room-name").fill(room);
      await byTestId(page, "create-room-submit").click();
    } else {
      await byTestId(page, "browse-rooms").click();
      await page.locator(`[data-testid="browse-room"][data-room-name="${room}"] [data-testid="join-room"]`).click();
    }
    await assertText(byTestId(page, "room-title"), `# ${room}`);
    await assertText(byTestId(page, "connection"), "online");
  }
}

test("a frozen server shows as offline within two heartbeats, the app recovers by itself, and a message sent meanwhile lands once", { timeout: 180_000 }, async (t) => {
  const HEARTBEAT_MS = 2_000;
  const { appUrl, srv } = await startServer("frozen", ["--heartbeat-interval", `${HEARTBEAT_MS / 1000}s`]);
  const errors = [];
  const csp = [];
  const suffix = Date.now().toString(36).slice(-5);
  const jane = `jane_${suffix}`;
  const karl = `karl_${suffix}`;
  const room = `frozen-${suffix}`;
  const j = await openPage(await launch(csp), errors, "jane", appUrl);
  const k = await openPage(await launch(csp), errors, "karl", appUrl);
  await intoOneRoom([j, k], [jane, karl], room);
  await send(j, "before the freeze");
  await waitForMessage(k, "before the freeze");

  // Written as the server freezes, before anyone can tell: its send gets no
  // answer (and times out while the server is still frozen).
  const early = "sent as the server froze";
  // Written once the app says it is offline.
  const late = "sent while offline";
  const frozenAt = Date.now();
  process.kill(srv.child.pid, "SIGSTOP");
  try {
    await byTestId(j, "composer").fill(early);
    await byTestId(j, "composer").press("Enter");

    // Both windows tell within two heartbeat intervals (and a little).
    const limit = 2 * HEARTBEAT_MS + 2_000;
    await Promise.all([connectionState(j, "offline", limit + 1_000), connectionState(k, "offline", limit + 1_000)]);
    const noticedIn = Date.now() - frozenAt;
    t.diagnostic(`offline shown ${noticedIn} ms after SIGSTOP (heartbeat ${HEARTBEAT_MS} ms)`);
    assert.ok(noticedIn < limit, `offline shown ${noticedIn} ms after the freeze, not within ${limit} ms`);
    for (const page of [j, k]) {
      assert.equal(await byTestId(page, "connection").textContent(), "offline — reconnecting");
      await byTestId(page, "offline-banner").filter({ hasText: "offline" }).waitFor({ state: "visible" });
    }

    await byTestId(j, "composer").fill(late);
    await byTestId(j, "composer").press("Enter");
    await j.locator('[data-testid="pending-message"]', { hasText: late }).waitFor();
    await j.screenshot({ path: path.join(artifacts, "frozen-server.png") });

    // Frozen for longer than a send's deadline and what five attempts
    // with backoff would have waited: the messages still wait, not failed.
    await j.waitForTimeout(Math.max(0, frozenAt + 13_000 - Date.now()));
    const pending = j.locator('[data-testid="pending-message"]');
    assert.equal(await pending.count(), 2, "both messages wait");
    assert.deepEqual(
      await byTestId(j, "pending-status").allInnerTexts(),
      ["waiting for connection…", "waiting for connection…"],
      "waiting, not failed",
    );
    assert.equal(await j.locator('[data-testid="pending-message"].failed').count(), 0);
    assert.equal(await byTestId(j, "retry-send").count(), 0);
    for (const page of [j, k]) assert.equal(await byTestId(page, "connection").getAttribute("data-state"), "offline");
  } finally {
    process.kill(srv.child.pid, "SIGCONT");
  }
  const thawedAt = Date.now();

  // Back by itself, without a reload: both live, the banner gone, each
  // message shown once on both sides, in the order written.
  await Promise.all([connectionState(j, "live", 20_000), connectionState(k, "live", 20_000)]);
  t.diagnostic(`online again ${Date.now() - thawedAt} ms after SIGCONT`);
  const expected = ["before the freeze", early, late];
  for (const page of [j, k]) {
    await assertText(byTestId(page, "connection"), "online");
    await byTestId(page, "offline-banner").waitFor({ state: "hidden" });
    await waitForMessage(page, late);
    await waitForMessage(page, early);
  }
  await j.waitForFunction(() => !document.querySelector('[data-testid="pending-message"]'), null, { timeout: 10_000 });
  for (const page of [j, k]) {
    assert.deepEqual(await messageTexts(page), expected);
    for (const text of [early, late]) assert.equal(await shownCount(page, text), 1, `"${text}" shown once`);
  }

  // The server stored each once: a reload shows what History gives.
  for (const page of [j, k]) {
    await page.reload();
    await assertText(byTestId(page, "connection"), "online");
    await waitForMessage(page, late);
    assert.deepEqual(await messageTexts(page), expected, "stored once each, in order");
    assert.equal(await byTestId(page, "pending-message").count(), 0, "nothing left to send");
  }
  // It still works: a message after the freeze goes both ways.
  await send(k, "after the freeze");
  await waitForMessage(j, "after the freeze");

  assert.deepEqual(await byTestId(j, "error").allInnerTexts(), [], "no error shown to Jane");
  assert.deepEqual(await byTestId(k, "error").allInnerTexts(), [], "no error shown to Karl");
  assert.deepEqual(errors.filter((m) => !m.includes("net::ERR_")), [], "no console errors but the browser's own failed requests");
  await assertNoCspViolations(csp, [j, k]);
});

test("a browser that goes offline says so at once, and comes back by itself when the network does", { timeout: 120_000 }, async (t) => {
  const { appUrl } = await startServer("offline");
  const errors = [];
  const csp = [];
  const suffix = Date.now().toString(36).slice(-5);
  const lena = `lena_${suffix}`;
  const room = `offline-${suffix}`;
  const ctx = await launch(csp);
  const page = await openPage(ctx, errors, "lena", appUrl);
  await intoOneRoom([page], [lena], room);

  // The server's heartbeat is 30 s or so apart: only the browser's own
  // offline event can tell this quickly.
  const wentOffline = Date.now();
  await ctx.setOffline(true);
  await connectionState(page, "offline", 3_000);
  const noticedIn = Date.now() - wentOffline;
  t.diagnostic(`offline shown ${noticedIn} ms after the network went`);
  assert.ok(noticedIn < 1_500, `offline shown ${noticedIn} ms after the network went`);
  await byTestId(page, "offline-banner").filter({ hasText: "offline" }).waitFor({ state: "visible" });

  const text = "written without a network";
  await byTestId(page, "composer").fill(text);
  await byTestId(page, "composer").press("Enter");
  await assertText(byTestId(page, "pending-status"), "waiting for connection…");
  await page.waitForTimeout(3_000);
  assert.equal(await byTestId(page, "connection").getAttribute("data-state"), "offline");
  assert.deepEqual(await byTestId(page, "pending-status").allInnerTexts(), ["waiting for connection…"]);

  const cameBack = Date.now();
  await ctx.setOffline(false);
  await connectionState(page, "live", 5_000);
  assert.ok(Date.now() - cameBack < 3_000, "back online at once, not after a backoff");
  await waitForMessage(page, text);
  await page.waitForFunction(() => !document.querySelector('[data-testid="pending-message"]'), null, { timeout: 10_000 });
  assert.equal(await shownCount(page, text), 1);
  await byTestId(page, "offline-banner").waitFor({ state: "hidden" });

  assert.deepEqual(await byTestId(page, "error").allInnerTexts(), [], "no error shown");
  assert.deepEqual(errors.filter((m) => !m.includes("net::ERR_")), [], "no console errors but the browser's own failed requests");
  await assertNoCspViolations(csp, [page]);
});

test("on a phone the header stays one row while it says offline — reconnecting", { timeout: 120_000 }, async () => {
  const { appUrl } = await startServer("phone-header");
  const errors = [];
  const csp = [];
  const suffix = Date.now().toString(36).slice(-5);
  const mona = `mona_${suffix}`;
  const room = `phone-${suffix}`;
  const ctx = await launch(csp);
  const page = await openPage(ctx, errors, "mona", appUrl);
  await intoOneRoom([page], [mona], room);

  const parts = {
    menu: byTestId(page, "menu"),
    brand: page.locator(".topbar .brand"),
    connection: byTestId(page, "connection"),
    sessions: byTestId(page, "sessions-button"),
    logout: byTestId(page, "logout"),
  };
  const header = page.locator("header.topbar");
  const boxes = async () => {
    const out = { header: await header.boundingBox() };
    for (const [name, locator] of Object.entries(parts)) out[name] = await locator.boundingBox();
    return out;
  };

  for (const width of [390, 360, 320]) {
    await page.setViewportSize({ width, height: 844 });
    await connectionState(page, "live", 10_000);
    const live = await boxes();

    await ctx.setOffline(true);
    await connectionState(page, "offline", 3_000);
    assert.equal(await parts.connection.textContent(), "offline — reconnecting", "the full label, for screen readers");
    await byTestId(page, "offline-banner").filter({ hasText: "offline" }).waitFor({ state: "visible" });
    await page.screenshot({ path: path.join(artifacts, `phone-offline-${width}.png`) });
    const offline = await boxes();

    assert.equal(offline.header.height, live.header.height, `${width} px: the header's height is unchanged`);
    const middle = (box) => box.y + box.height / 2;
    assert.ok(
      Math.abs(middle(offline.menu) - middle(offline.logout)) <= 2,
      `${width} px: ☰ and Log out are on one row (${JSON.stringify([offline.menu, offline.logout])})`,
    );
    // The narrowest phones do without the brand; every other part shows.
    const shown = width >= 360 ? ["menu", "brand", "connection", "sessions", "logout"] : ["menu", "connection", "sessions", "logout"];
    if (width < 360) assert.equal(offline.brand, null, `${width} px: the brand makes room`);
    assert.ok(
      await parts.connection.locator(".connection-word").evaluate((word) => word.scrollWidth <= word.clientWidth),
      `${width} px: the pill's word shows whole, not cut short`,
    );
    for (const name of shown) {
      const box = offline[name];
      assert.ok(box && box.width > 0, `${width} px: ${name} shows`);
      assert.ok(box.x >= 0 && box.x + box.width <= width + 0.5, `${width} px: ${name} is within the screen`);
      assert.ok(
        box.y >= offline.header.y && box.y + box.height <= offline.header.y + offline.header.height + 0.5,
        `${width} px: ${name} is within the header's one row`,
      );
    }
    // Left to right, none over another.
    for (let i = 1; i < shown.length; i++) {
      const a = offline[shown[i - 1]];
      const b = offline[shown[i]];
      assert.ok(a.x + a.width <= b.x + 0.5, `${width} px: ${shown[i - 1]} comes before ${shown[i]}`);
    }
    await ctx.setOffline(false);
    await connectionState(page, "live", 10_000);
  }

  assert.deepEqual(errors.filter((m) => !m.includes("net::ERR_")), [], "no console errors but the browser's own failed requests");
  await assertNoCspViolations(csp, [page]);
});
