// End-to-end tests of the web client against the real chat-server, in real
// headless Chromium: see harness.mjs for how servers and browsers start.
import { test } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import {
  UI_TIMEOUT,
  accessToken,
  artifacts,
  assertLoggedOut,
  assertNoCspViolations,
  assertText,
  byTestId,
  exactly,
  expectCspBreach,
  grpcWebCall,
  launch,
  logIn,
  messageTexts,
  openPage,
  openSessions,
  protoField,
  register,
  send,
  startServer,
  stopServer,
  stringFields,
  varint,
  waitForMessage,
} from "./harness.mjs";

test("two people chat in a room and directly, through reloads", { timeout: 180_000 }, async () => {
  const { appUrl } = await startServer("chat");
  const errors = [];
  const csp = [];
  const suffix = Date.now().toString(36).slice(-5);
  const alice = `alice_${suffix}`;
  const bob = `bob_${suffix}`;
  const password = "correct horse battery";
  const room = `general-${suffix}`;

  const aliceCtx = await launch(csp);
  const bobCtx = await launch(csp);
  const a = await openPage(aliceCtx, errors, "alice", appUrl);
  let b = await openPage(bobCtx, errors, "bob", appUrl);

  // A server error reaches the person in words.
  await byTestId(a, "login-username").fill(alice);
  await byTestId(a, "login-password").fill(password);
  await byTestId(a, "login-submit").click();
  const status = await byTestId(a, "auth-status").filter({ hasText: /invalid|incorrect|wrong|not/i });
  await status.waitFor();
  await a.screenshot({ path: path.join(artifacts, "login.png") });

  // Register (which logs in), log out, and log in again.
  await register(a, alice, password);
  await register(b, bob, password);
  await byTestId(a, "logout").click();
  await assertText(byTestId(a, "auth-status"), "logged out");
  await byTestId(a, "login-username").fill(alice);
  await byTestId(a, "login-password").fill(password);
  await byTestId(a, "login-submit").click();
  await assertText(byTestId(a, "me"), alice);
  await assertText(byTestId(a, "connection"), "online");
  await assertText(byTestId(b, "connection"), "online");

  // Alice creates a room; Bob finds it and joins.
  await byTestId(a, "create-room-name").fill(room);
  await byTestId(a, "create-room-submit").click();
  await assertText(byTestId(a, "room-title"), `# ${room}`);
  await byTestId(b, "browse-rooms").click();
  await b.locator(`[data-testid="browse-room"][data-room-name="${room}"] [data-testid="join-room"]`).click();
  await assertText(byTestId(b, "room-title"), `# ${room}`);

  // Each sees the other online.
  await a.locator(`[data-testid="online-user"][data-username="${bob}"]`).waitFor();
  await b.locator(`[data-testid="online-user"][data-username="${alice}"]`).waitFor();

  // Typing shows on the other side, both ways.
  await byTestId(a, "composer").pressSequentially("hel", { delay: 30 });
  await assertText(byTestId(b, "typing"), `${alice} is typing`);
  await byTestId(b, "composer").pressSequentially("hi", { delay: 30 });
  await assertText(byTestId(a, "typing"), `${bob} is typing`);
  await byTestId(a, "composer").fill("");
  await byTestId(b, "composer").fill("");

  // Messages both ways, with sender names.
  await send(a, "Hello Bob, welcome!");
  await waitForMessage(b, "Hello Bob, welcome!");
  await send(b, "Thanks Alice, glad to be here.");
  await waitForMessage(a, "Thanks Alice, glad to be here.");
  await assertText(b.locator(`[data-testid="message"][data-sender="${alice}"]`), "Hello Bob, welcome!");

  // Bob reloads while Alice writes: he misses nothing and sees nothing twice.
  const reloading = b.reload();
  await send(a, "Sent during your reload");
  await reloading;
  await assertText(byTestId(b, "room-title"), `# ${room}`);
  await waitForMessage(b, "Sent during your reload");

  // Bob closes his page; Alice writes while he is away; he comes back.
  await b.close();
  await send(a, "Away message one");
  await send(a, "Away message two");
  b = await openPage(bobCtx, errors, "bob", appUrl);
  await assertText(byTestId(b, "me"), bob);
  await assertText(byTestId(b, "room-title"), `# ${room}`);
  await waitForMessage(b, "Away message two");
  const expected = [
    "Hello Bob, welcome!",
    "Thanks Alice, glad to be here.",
    "Sent during your reload",
    "Away message one",
    "Away message two",
  ];
  assert.deepEqual(await messageTexts(b), expected, "Bob sees the whole history once, in order");
  await send(b, "Back again");
  await waitForMessage(a, "Back again");
  assert.deepEqual(await messageTexts(a), [...expected, "Back again"], "Alice sees every message once, in order");

  // Alice opens a direct conversation with Bob; it shows up on his side as unread.
  await byTestId(a, "dm-username").fill(bob);
  await byTestId(a, "dm-submit").click();
  await assertText(byTestId(a, "room-title"), `@ ${bob}`);
  await send(a, "Just between us");
  const dm = b.locator(`[data-testid="room"][data-room-name="${alice}"]`);
  await dm.and(b.locator('[data-unread="true"]')).waitFor();
  await dm.click();
  await assertText(byTestId(b, "room-title"), `@ ${alice}`);
  await waitForMessage(b, "Just between us");
  await send(b, "Sure, secret is safe");
  await waitForMessage(a, "Sure, secret is safe");
  assert.deepEqual(await messageTexts(a), ["Just between us", "Sure, secret is safe"]);

  // The sessions page lists this browser's session as current.
  await byTestId(b, "sessions-button").click();
  await b.locator('[data-testid="session"][data-current="true"]').waitFor();
  assert.equal(await b.locator('[data-testid="session"]').count(), 1);
  await byTestId(b, "sessions-close").click();

  // Screenshots of both windows in the group room, Bob typing.
  for (const page of [a, b]) {
    await page.locator(`[data-testid="room"][data-room-name="${room}"]`).click();
    await waitForMessage(page, "Back again");
  }
  await byTestId(b, "composer").pressSequentially("See you", { delay: 20 });
  await assertText(byTestId(a, "typing"), `${bob} is typing`);
  await a.screenshot({ path: path.join(artifacts, "alice.png") });
  await b.screenshot({ path: path.join(artifacts, "bob.png") });
  await byTestId(b, "composer").fill("");

  // A phone-sized window still works: the room list is a drawer.
  await b.setViewportSize({ width: 390, height: 760 });
  await byTestId(b, "menu").click();
  await b.locator(`[data-testid="room"][data-room-name="${alice}"]`).waitFor();
  await b.screenshot({ path: path.join(artifacts, "bob-phone-rooms.png") });
  await b.locator(`[data-testid="room"][data-room-name="${alice}"]`).click();
  await assertText(byTestId(b, "room-title"), `@ ${alice}`);
  await byTestId(b, "menu").click();
  await b.locator(`[data-testid="room"][data-room-name="${room}"]`).click();
  await assertText(byTestId(b, "room-title"), `# ${room}`);
  await waitForMessage(b, "Back again");
  await b.screenshot({ path: path.join(artifacts, "bob-phone.png") });

  // Bob leaves the room: it moves from his rooms to the rooms he may join.
  await b.setViewportSize({ width: 1100, height: 720 });
  await byTestId(b, "leave-room").click();
  await b.locator(`[data-testid="room"][data-room-name="${room}"]`).waitFor({ state: "detached" });
  await byTestId(b, "browse-rooms").click();
  await b.locator(`[data-testid="browse-room"][data-room-name="${room}"]`).waitFor();

  assert.deepEqual(await byTestId(a, "error").allInnerTexts(), [], "no error shown to Alice");
  assert.deepEqual(await byTestId(b, "error").allInnerTexts(), [], "no error shown to Bob");
  assert.deepEqual(errors, [], "no console errors");
  await assertNoCspViolations(csp, [a, b]);
});

test("expiring tokens are refreshed, streams resume, history pages back, sessions revoke", { timeout: 180_000 }, async () => {
  // Access tokens live 5 s here: the test outlives several of them.
  const { appUrl } = await startServer("short-tokens", ["--access-token-ttl", "5s"]);
  const errors = [];
  const csp = [];
  const suffix = Date.now().toString(36).slice(-5);
  const carol = `carol_${suffix}`;
  const dave = `dave_${suffix}`;
  const password = "correct horse battery";
  const room = `paging-${suffix}`;

  const carolCtx = await launch(csp);
  const daveCtx = await launch(csp);
  const c = await openPage(carolCtx, errors, "carol", appUrl);
  const d = await openPage(daveCtx, errors, "dave", appUrl);
  await register(c, carol, password);
  await register(d, dave, password);
  const subscribes = { carol: 0, dave: 0 };
  c.on("request", (r) => r.url().endsWith("/chat.v1.ChatService/Subscribe") && subscribes.carol++);
  d.on("request", (r) => r.url().endsWith("/chat.v1.ChatService/Subscribe") && subscribes.dave++);
  const firstToken = await c.evaluate(() => JSON.parse(localStorage.getItem("chat.auth")).accessToken);

  await byTestId(c, "create-room-name").fill(room);
  await byTestId(c, "create-room-submit").click();
  await assertText(byTestId(c, "room-title"), `# ${room}`);
  await byTestId(d, "browse-rooms").click();
  await d.locator(`[data-testid="browse-room"][data-room-name="${room}"] [data-testid="join-room"]`).click();
  await assertText(byTestId(d, "room-title"), `# ${room}`);

  // 60 messages, typed in quick succession: they arrive in order.
  const texts = Array.from({ length: 60 }, (_, i) => `message number ${i + 1}`);
  for (const t of texts) {
    await byTestId(c, "composer").fill(t);
    await byTestId(c, "composer").press("Enter");
  }
  await waitForMessage(d, "message number 60");
  assert.deepEqual(await messageTexts(d), texts);

  // Both streams outlive two tokens: each is ended and resumed at least twice
  // more. Waiting for that, rather than for a fixed time, keeps a slow
  // machine from deciding the outcome.
  const base = { ...subscribes };
  const deadline = Date.now() + 60_000;
  while (subscribes.carol < base.carol + 2 || subscribes.dave < base.dave + 2) {
    assert.ok(Date.now() < deadline, `streams resubscribed: ${JSON.stringify({ base, subscribes })}`);
    await c.waitForTimeout(250);
  }
  await send(c, "still here after the tokens expired");
  await waitForMessage(d, "still here after the tokens expired");
  await send(d, "me too");
  await waitForMessage(c, "me too");
  const laterToken = await c.evaluate(() => JSON.parse(localStorage.getItem("chat.auth")).accessToken);
  assert.notEqual(laterToken, firstToken, "the access token was refreshed");

  // After a reload, the room shows its newest page, and older ones on demand.
  await d.reload();
  await assertText(byTestId(d, "room-title"), `# ${room}`);
  await waitForMessage(d, "me too");
  const all = [...texts, "still here after the tokens expired", "me too"];
  assert.deepEqual(await messageTexts(d), all.slice(-50));
  await byTestId(d, "load-older").click();
  await waitForMessage(d, "message number 1");
  assert.deepEqual(await messageTexts(d), all);
  await byTestId(d, "load-older").waitFor({ state: "hidden" });

  // Dave logs in on a second device, then revokes it from the first.
  const dave2Ctx = await launch(csp);
  const d2 = await openPage(dave2Ctx, errors, "dave-2", appUrl);
  await byTestId(d2, "login-username").fill(dave);
  await byTestId(d2, "login-password").fill(password);
  await byTestId(d2, "login-submit").click();
  await assertText(byTestId(d2, "connection"), "online");
  await byTestId(d, "sessions-button").click();
  await d.locator('[data-testid="session"]').nth(1).waitFor();
  assert.equal(await d.locator('[data-testid="session"]').count(), 2);
  await d.locator('[data-testid="session"][data-current="false"] [data-testid="revoke-session"]').click();
  // The list is fetched again: only this device's session is left.
  await d.waitForFunction(() => document.querySelectorAll('[data-testid="session"]').length === 1);
  await d.locator('[data-testid="session"][data-current="true"]').waitFor();
  // The revoked device is told, in words, and is back at the login page.
  await assertText(byTestId(d2, "auth-status"), "session ended");
  await byTestId(d2, "login-submit").waitFor();

  await d.screenshot({ path: path.join(artifacts, "sessions.png") });
  assert.deepEqual(await byTestId(c, "error").allInnerTexts(), [], "no error shown to Carol");
  assert.deepEqual(await byTestId(d, "error").allInnerTexts(), [], "no error shown to Dave");
  assert.deepEqual(errors, [], "no console errors");
  await assertNoCspViolations(csp, [c, d, d2]);
});

test("a server restart loses no message: sends are retried, the stream resumes", { timeout: 180_000 }, async () => {
  const first = await startServer("restart-1");
  const errors = [];
  const csp = [];
  const suffix = Date.now().toString(36).slice(-5);
  const erin = `erin_${suffix}`;
  const frank = `frank_${suffix}`;
  const password = "correct horse battery";
  const room = `restart-${suffix}`;

  const erinCtx = await launch(csp);
  const frankCtx = await launch(csp);
  const e = await openPage(erinCtx, errors, "erin", first.appUrl);
  const f = await openPage(frankCtx, errors, "frank", first.appUrl);
  await register(e, erin, password);
  await register(f, frank, password);
  await byTestId(e, "create-room-name").fill(room);
  await byTestId(e, "create-room-submit").click();
  await assertText(byTestId(e, "room-title"), `# ${room}`);
  await byTestId(f, "browse-rooms").click();
  await f.locator(`[data-testid="browse-room"][data-room-name="${room}"] [data-testid="join-room"]`).click();
  await assertText(byTestId(f, "room-title"), `# ${room}`);
  await send(e, "before the restart");
  await waitForMessage(f, "before the restart");

  await stopServer(first.srv);
  await assertText(byTestId(e, "connection"), "reconnecting");
  await assertText(byTestId(f, "connection"), "reconnecting");
  // Written while the server is down: shown as sending, and retried.
  await byTestId(e, "composer").fill("written while the server was down");
  await byTestId(e, "composer").press("Enter");
  await byTestId(e, "pending-message").waitFor();

  // The same database and port: tokens and cursors still hold.
  await startServer("restart-2", [], { db: first.db, listen: first.address });
  await waitForMessage(e, "written while the server was down");
  await waitForMessage(f, "written while the server was down");
  await assertText(byTestId(e, "connection"), "online");
  await assertText(byTestId(f, "connection"), "online");
  await send(f, "after the restart");
  await waitForMessage(e, "after the restart");
  const expected = ["before the restart", "written while the server was down", "after the restart"];
  assert.deepEqual(await messageTexts(e), expected);
  assert.deepEqual(await messageTexts(f), expected);

  assert.deepEqual(await byTestId(e, "error").allInnerTexts(), [], "no error shown to Erin");
  assert.deepEqual(await byTestId(f, "error").allInnerTexts(), [], "no error shown to Frank");
  // While the server is down, Chromium itself logs each refused connection.
  const appErrors = errors.filter((m) => !m.includes("net::ERR_CONNECTION_REFUSED"));
  assert.deepEqual(appErrors, [], "no console errors but the browser's own refused connections");
  await assertNoCspViolations(csp, [e, f]);
});

test("the app is served under a strict Content-Security-Policy, and a breach of it fails the suite", { timeout: 60_000 }, async (t) => {
  if (process.env.WEB_DEV_STATIC === "1") {
    t.skip("the development file server sends no security headers");
    return;
  }
  const { appUrl } = await startServer("csp");
  const csp = [];
  expectCspBreach(csp);
  const ctx = await launch(csp);
  const page = await ctx.newPage();
  page.on("console", (msg) => {
    if (msg.text().includes("Content Security Policy")) csp.push(`console: ${msg.text()}`);
  });
  const res = await page.goto(appUrl);
  const headers = res.headers();
  assert.match(headers["content-security-policy"], /script-src 'self';/);
  assert.match(headers["content-security-policy"], /frame-ancestors 'none'/);
  assert.equal(headers["x-frame-options"], "DENY");
  assert.equal(headers["x-content-type-options"], "nosniff");
  assert.equal(headers["referrer-policy"], "no-referrer");
  await byTestId(page, "login-submit").waitFor();
  assert.deepEqual(csp, [], "the login page loads without a violation");

  // What the app must never do: an inline script does not run, and the
  // watchers every test relies on see it.
  await page.evaluate(() => {
    const script = document.createElement("script");
    script.textContent = "window.__inlineRan = true";
    document.body.append(script);
    document.body.append(Object.assign(document.createElement("div"), { id: "styled" }));
    document.getElementById("styled").setAttribute("style", "color: red");
  });
  await page.waitForFunction(() => window.__cspViolations.length >= 2);
  assert.equal(await page.evaluate(() => window.__inlineRan), undefined, "the inline script was blocked");
  const seen = await page.evaluate(() => window.__cspViolations);
  assert.ok(seen.some((v) => v.startsWith("script-src")), JSON.stringify(seen));
  assert.ok(seen.some((v) => v.startsWith("style-src")), JSON.stringify(seen));
  const deadline = Date.now() + UI_TIMEOUT;
  while (!csp.some((v) => v.startsWith("console: "))) {
    assert.ok(Date.now() < deadline, `the console reported it: ${JSON.stringify(csp)}`);
    await page.waitForTimeout(100);
  }
  await assert.rejects(assertNoCspViolations(csp, [page]), /Content-Security-Policy/);
});

test("every room shows, however many ListRooms pages it takes, and all stay live", { timeout: 180_000 }, async () => {
  // One more room than the largest ListRooms page, and than one Subscribe
  // may resume: Pat is a member of every one (the server lets a member
  // have that many here; by default 1000 groups, and direct rooms besides).
  const ROOMS = 1001;
  const { address, appUrl } = await startServer("many-rooms", [
    "--room-create-rate",
    "0",
    "--max-rooms-per-user",
    "2000",
  ]);
  const errors = [];
  const csp = [];
  const suffix = Date.now().toString(36).slice(-5);
  const password = "correct horse battery";
  const patCtx = await launch(csp);
  const quinnCtx = await launch(csp);
  const p = await openPage(patCtx, errors, "pat", appUrl);
  const q = await openPage(quinnCtx, errors, "quinn", appUrl);
  await register(p, `pat_${suffix}`, password);
  await register(q, `quinn_${suffix}`, password);

  // Pat creates the rooms through the API, a few calls at a time.
  const token = await accessToken(p);
  const names = Array.from({ length: ROOMS }, (_, i) => `bulk-${suffix}-${String(i + 1).padStart(4, "0")}`);
  const queue = [...names];
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      for (let name = queue.shift(); name; name = queue.shift()) {
        const res = await grpcWebCall(address, "chat.v1.ChatService/CreateRoom", stringFields({ 1: name }), token);
        assert.equal(res.status, 0, `CreateRoom ${name}: ${res.message}`);
      }
    }),
  );
  const count = (page, testId) =>
    page.evaluate((id) => document.querySelectorAll(`[data-testid="${id}"]`).length, testId);

  // Quinn, in none of them, finds every one under "Browse rooms": the app
  // asks for pages of 1000 (field 1, varint 1000) and follows the token to
  // the last page.
  const listRooms = [];
  q.on("request", (r) => r.url().endsWith("/chat.v1.ChatService/ListRooms") && listRooms.push(r.postDataBuffer()));
  await byTestId(q, "browse-rooms").click();
  await q.waitForFunction((n) => document.querySelectorAll('[data-testid="browse-room"]').length === n, ROOMS);
  for (const name of [names[0], names[999], names[1000]]) {
    await q.locator(`[data-testid="browse-room"][data-room-name="${name}"]`).waitFor({ state: "attached" });
  }
  assert.ok(listRooms.length >= 2, `ListRooms was called ${listRooms.length} times`);
  assert.deepEqual([...listRooms[0].subarray(5, 8)], [0x08, 0xe8, 0x07], "page_size 1000");

  // Pat, after a reload, has every room in the room list, and a live
  // stream although it cannot resume them all.
  await p.reload();
  await assertText(byTestId(p, "me"), `pat_${suffix}`);
  await p.waitForFunction((n) => document.querySelectorAll('[data-testid="room"]').length === n, ROOMS);
  await assertText(byTestId(p, "connection"), "online");
  await assertText(byTestId(p, "room-title"), `# ${names[0]}`);

  // Quinn joins the last room and writes: Pat's list marks it unread, then
  // it opens with the message.
  await q.locator(`[data-testid="browse-room"][data-room-name="${names[1000]}"] [data-testid="join-room"]`).click();
  await assertText(byTestId(q, "room-title"), `# ${names[1000]}`);
  await send(q, "hello from the last room");
  const last = p.locator(`[data-testid="room"][data-room-name="${names[1000]}"]`);
  await last.and(p.locator('[data-unread="true"]')).waitFor();
  await last.click();
  await waitForMessage(p, "hello from the last room");
  assert.equal(await count(p, "room"), ROOMS);

  assert.deepEqual(await byTestId(p, "error").allInnerTexts(), [], "no error shown to Pat");
  assert.deepEqual(await byTestId(q, "error").allInnerTexts(), [], "no error shown to Quinn");
  assert.deepEqual(errors, [], "no console errors");
  await assertNoCspViolations(csp, [p, q]);
});

test("changing the password or logging out other devices ends every other session, not this one", { timeout: 180_000 }, async () => {
  const { appUrl } = await startServer("password");
  const errors = [];
  const csp = [];
  const suffix = Date.now().toString(36).slice(-5);
  const gina = `gina_${suffix}`;
  const oldPassword = "correct horse battery";
  const newPassword = "staple battery horse";
  const room = `secure-${suffix}`;

  const laptopCtx = await launch(csp);
  const phoneCtx = await launch(csp);
  const laptop = await openPage(laptopCtx, errors, "laptop", appUrl);
  const phone = await openPage(phoneCtx, errors, "phone", appUrl);
  await register(laptop, gina, oldPassword);
  await logIn(phone, gina, oldPassword);
  await openSessions(laptop);
  await laptop.waitForFunction(() => document.querySelectorAll('[data-testid="session"]').length === 2);

  // A wrong current password: said so, nothing changes. The form is used
  // with the keyboard alone, its fields found by their labels.
  await laptop.getByLabel("Current password").focus();
  await laptop.keyboard.type("not my password");
  await laptop.keyboard.press("Tab");
  assert.equal(await laptop.evaluate(() => document.activeElement.id), "new-password");
  await laptop.keyboard.type(newPassword);
  await laptop.keyboard.press("Enter");
  await assertText(byTestId(laptop, "password-status"), "The current password is wrong");
  assert.equal(await laptop.getByLabel("Current password").getAttribute("aria-invalid"), "true");
  assert.equal(await laptop.evaluate(() => document.activeElement.id), "current-password");
  await assertText(byTestId(phone, "connection"), "online");

  // The right one: the password changes and the phone is logged out.
  await laptop.keyboard.type(oldPassword);
  await laptop.keyboard.press("Enter");
  await assertText(byTestId(laptop, "password-status"), "Password changed. Your other devices were logged out.");
  await laptop.waitForFunction(() => document.querySelectorAll('[data-testid="session"]').length === 1);
  assert.equal(await laptop.getByLabel("Current password").inputValue(), "", "the fields are emptied");
  await assertLoggedOut(phone);
  await laptop.screenshot({ path: path.join(artifacts, "change-password.png") });

  // The old password no longer logs in; the new one does.
  await byTestId(phone, "login-username").fill(gina);
  await byTestId(phone, "login-password").fill(oldPassword);
  await byTestId(phone, "login-submit").click();
  await byTestId(phone, "auth-status").filter({ hasText: /invalid|incorrect|wrong/i }).waitFor();
  await logIn(phone, gina, newPassword);

  // "Log out other devices" ends the phone's session again, and says so.
  await byTestId(laptop, "sessions-close").click();
  await openSessions(laptop);
  await laptop.waitForFunction(() => document.querySelectorAll('[data-testid="session"]').length === 2);
  await byTestId(laptop, "revoke-others").focus();
  await laptop.keyboard.press("Enter");
  await assertText(byTestId(laptop, "revoke-others-status"), "Logged out 1 other device.");
  await laptop.waitForFunction(() => document.querySelectorAll('[data-testid="session"]').length === 1);
  await laptop.locator('[data-testid="session"][data-current="true"]').waitFor();
  await assertLoggedOut(phone);

  // The laptop goes on working: its stream is live and its calls succeed.
  await byTestId(laptop, "sessions-close").click();
  await assertText(byTestId(laptop, "connection"), "online");
  await byTestId(laptop, "create-room-name").fill(room);
  await byTestId(laptop, "create-room-submit").click();
  await assertText(byTestId(laptop, "room-title"), `# ${room}`);
  await send(laptop, "still logged in here");
  await byTestId(laptop, "sessions-button").click();
  await byTestId(laptop, "revoke-others").click();
  await assertText(byTestId(laptop, "revoke-others-status"), "No other device was logged in.");

  assert.deepEqual(await byTestId(laptop, "error").allInnerTexts(), [], "no error shown on the laptop");
  assert.deepEqual(await byTestId(phone, "error").allInnerTexts(), [], "no error shown on the phone");
  assert.deepEqual(errors, [], "no console errors");
  await assertNoCspViolations(csp, [laptop, phone]);
});

test("your own message shows once when the stream brings it before the send's reply", { timeout: 120_000 }, async () => {
  const { appUrl } = await startServer("echo-first");
  const errors = [];
  const csp = [];
  const suffix = Date.now().toString(36).slice(-5);
  const gina = `gina_${suffix}`;
  const room = `echo-${suffix}`;
  const ctx = await launch(csp);
  const g = await openPage(ctx, errors, "gina", appUrl);
  await register(g, gina, "correct horse battery");
  await byTestId(g, "create-room-name").fill(room);
  await byTestId(g, "create-room-submit").click();
  await assertText(byTestId(g, "room-title"), `# ${room}`);

  // The reply to SendMessage is held until the stream has shown the
  // message: the order a busy server or network often gives.
  const text = "the echo came first";
  let replied;
  const reply = new Promise((resolve) => (replied = resolve));
  await g.route("**/chat.v1.ChatService/SendMessage", async (route) => {
    const response = await route.fetch();
    await waitForMessage(g, text);
    await route.fulfill({ response });
    replied();
  });
  await byTestId(g, "composer").fill(text);
  await byTestId(g, "composer").press("Enter");
  await reply;
  await g.waitForFunction(() => !document.querySelector('[data-testid="pending-message"]'), null, { timeout: 5_000 });
  assert.deepEqual(await messageTexts(g), [text]);
  assert.equal(await byTestId(g, "pending-message").count(), 0, "no 'sending…' copy left");
  await g.unroute("**/chat.v1.ChatService/SendMessage");

  assert.deepEqual(errors, [], "no console errors");
  await assertNoCspViolations(csp, [g]);
});

test("right-to-left messages read right to left, each in its own direction", { timeout: 120_000 }, async () => {
  const { appUrl } = await startServer("rtl");
  const errors = [];
  const csp = [];
  const suffix = Date.now().toString(36).slice(-5);
  const hana = `hana_${suffix}`;
  const room = `rtl-${suffix}`;
  const ctx = await launch(csp);
  const page = await openPage(ctx, errors, "hana", appUrl);
  await register(page, hana, "correct horse battery");
  await byTestId(page, "create-room-name").fill(room);
  await byTestId(page, "create-room-submit").click();
  await assertText(byTestId(page, "room-title"), `# ${room}`);

  const arabic = "مرحبا بالعالم!";
  const english = "hello, world!";
  await send(page, arabic);
  await send(page, english);
  const direction = (text) =>
    page
      .locator('[data-testid="message-text"]', { hasText: exactly(text) })
      .first()
      .evaluate((node) => getComputedStyle(node).direction);
  assert.equal(await direction(arabic), "rtl");
  assert.equal(await direction(english), "ltr");
  // What is typed takes its own direction too.
  await byTestId(page, "composer").fill(arabic);
  assert.equal(await byTestId(page, "composer").evaluate((node) => getComputedStyle(node).direction), "rtl");

  assert.deepEqual(errors, [], "no console errors");
  await assertNoCspViolations(csp, [page]);
});

test("screen readers hear the room's log, the open room, and the drawer's state; Escape closes it", { timeout: 120_000 }, async () => {
  const { appUrl } = await startServer("a11y");
  const errors = [];
  const csp = [];
  const suffix = Date.now().toString(36).slice(-5);
  const ivan = `ivan_${suffix}`;
  const room = `a11y-${suffix}`;
  const ctx = await launch(csp);
  const page = await openPage(ctx, errors, "ivan", appUrl);
  await register(page, ivan, "correct horse battery");
  await byTestId(page, "create-room-name").fill(room);
  await byTestId(page, "create-room-submit").click();
  await assertText(byTestId(page, "room-title"), `# ${room}`);
  // A phone: the room list is a drawer behind ☰.
  await page.setViewportSize({ width: 390, height: 844 });

  // The message list sits in a polite log (a list itself, so that its
  // items stay list items).
  const messages = byTestId(page, "messages");
  const log = page.locator('[role="log"]').filter({ has: messages });
  assert.equal(await log.count(), 1, "the messages are in a log");
  assert.equal(await log.getAttribute("aria-live"), "polite");

  const menu = byTestId(page, "menu");
  if ((await menu.getAttribute("aria-expanded")) !== "true") await menu.click();
  assert.equal(await menu.getAttribute("aria-expanded"), "true");
  const open = page.locator(`[data-testid="room"][data-room-name="${room}"]`);
  assert.equal(await open.getAttribute("aria-current"), "true", "the open room is marked current");
  await page.keyboard.press("Escape");
  assert.equal(await menu.getAttribute("aria-expanded"), "false", "Escape closes the drawer");
  assert.equal(await page.evaluate(() => document.querySelector(".drawer-open") !== null), false);
  assert.equal(await page.evaluate(() => document.activeElement?.getAttribute("data-testid")), "menu", "focus goes back to ☰");
  await menu.click();
  assert.equal(await menu.getAttribute("aria-expanded"), "true");
  await open.click();
  assert.equal(await menu.getAttribute("aria-expanded"), "false", "picking a room closes the drawer");

  assert.deepEqual(errors, [], "no console errors");
  await assertNoCspViolations(csp, [page]);
});

test("on a phone, creating a room or opening a conversation closes the drawer on it", { timeout: 120_000 }, async () => {
  const { appUrl } = await startServer("drawer");
  const errors = [];
  const csp = [];
  const suffix = Date.now().toString(36).slice(-5);
  const ctx = await launch(csp);
  const other = await launch(csp);
  const page = await openPage(ctx, errors, "phone", appUrl);
  const peer = await openPage(other, errors, "peer", appUrl);
  await register(peer, `peer_${suffix}`, "correct horse battery");
  await register(page, `phone_${suffix}`, "correct horse battery");
  await page.setViewportSize({ width: 390, height: 844 });
  const menu = byTestId(page, "menu");
  const drawerClosed = () => page.waitForFunction(() => !document.querySelector(".drawer-open"));

  await menu.click();
  await page.locator(".drawer-open").waitFor();
  await byTestId(page, "create-room-name").fill(`plans-${suffix}`);
  await byTestId(page, "create-room-submit").click();
  await assertText(byTestId(page, "room-title"), `# plans-${suffix}`);
  await drawerClosed();
  assert.equal(await menu.getAttribute("aria-expanded"), "false");

  await menu.click();
  await page.locator(".drawer-open").waitFor();
  await byTestId(page, "dm-username").fill(`peer_${suffix}`);
  await byTestId(page, "dm-submit").click();
  await assertText(byTestId(page, "room-title"), `@ peer_${suffix}`);
  await drawerClosed();
  assert.equal(await menu.getAttribute("aria-expanded"), "false");

  assert.deepEqual(errors, [], "no console errors");
  await assertNoCspViolations(csp, [page, peer]);
});

test("an edit or a deletion made elsewhere shows at once, and the messages after it need no history paging", { timeout: 120_000 }, async () => {
  // The browser app cannot edit or delete yet; another client can, and
  // each takes a seq of the room's log, so message seqs skip.
  const { address, appUrl } = await startServer("edits");
  const errors = [];
  const csp = [];
  const suffix = Date.now().toString(36).slice(-5);
  const password = "correct horse battery";
  const ctx = await launch(csp);
  const otherCtx = await launch(csp);
  const a = await openPage(ctx, errors, "reader", appUrl);
  const b = await openPage(otherCtx, errors, "writer", appUrl);
  const writer = `writer_${suffix}`;
  await register(b, writer, password);
  await register(a, `reader_${suffix}`, password);
  const token = await accessToken(b);
  const call = async (method, fields) => {
    const res = await grpcWebCall(address, `chat.v1.ChatService/${method}`, stringFields(fields), token);
    assert.equal(res.status, 0, `${method}: ${res.message}`);
    return res.reply;
  };
  const text = (bytes) => Buffer.from(bytes).toString("utf8");
  const room = `edits-${suffix}`;
  const roomId = text(protoField(protoField(await call("CreateRoom", { 1: room }), 1), 1));
  const say = async (words) => text(protoField(protoField(await call("SendMessage", { 1: roomId, 2: words }), 1), 1));

  await byTestId(a, "browse-rooms").click();
  await a.locator(`[data-testid="browse-room"][data-room-name="${room}"] [data-testid="join-room"]`).click();
  await assertText(byTestId(a, "room-title"), `# ${room}`);
  const first = await say("first draft");
  const second = await say("this one goes");
  await waitForMessage(a, "this one goes");

  await call("EditMessage", { 1: roomId, 2: first, 3: "first, fixed" });
  await waitForMessage(a, "first, fixed (edited)");
  await call("DeleteMessage", { 1: roomId, 2: second });
  await a.locator('[data-testid="message-text"][data-deleted="true"]', { hasText: "message deleted" }).waitFor();
  assert.deepEqual(await messageTexts(a), ["first, fixed (edited)", "message deleted"]);

  // The next message skips the edit's and the deletion's seqs: the app
  // knows it heard them, and asks History for nothing.
  const histories = [];
  a.on("request", (req) => {
    if (req.url().endsWith("/chat.v1.ChatService/History")) histories.push(req.url());
  });
  await say("after the changes");
  await waitForMessage(a, "after the changes");
  await say("and one more");
  await waitForMessage(a, "and one more");
  assert.deepEqual(histories, [], "no History call for a gap that is not one");
  assert.deepEqual(await messageTexts(a), ["first, fixed (edited)", "message deleted", "after the changes", "and one more"]);

  // After a reload, History brings the same: the text as it is now.
  await a.reload();
  await waitForMessage(a, "and one more");
  assert.deepEqual(await messageTexts(a), ["first, fixed (edited)", "message deleted", "after the changes", "and one more"]);

  assert.deepEqual(errors, [], "no console errors");
  await assertNoCspViolations(csp, [a, b]);
});
