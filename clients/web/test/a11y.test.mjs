// Accessibility: axe-core on every screen in both colour schemes, and the
// whole app used with the keyboard alone, with a visible focus ring on
// every control it reaches. See harness.mjs for how servers and browsers
// start.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  assertNoCspViolations,
  assertText,
  byTestId,
  launch,
  openPage,
  openSessions,
  register,
  send,
  startServer,
  waitForMessage,
  assertAccessibleInBothSchemes,
} from "./harness.mjs";

const PASSWORD = "correct horse battery";
const unique = (prefix) => `${prefix}_${Math.random().toString(36).slice(2, 8)}`;

test("axe-core finds no serious or critical problem on any screen, light or dark", { timeout: 240_000 }, async () => {
  const { appUrl } = await startServer("a11y-axe");
  const errors = [];
  const csp = [];
  const alice = unique("alice");
  const bob = unique("bob");
  const room = unique("general");
  const other = unique("other");
  const aliceCtx = await launch(csp);
  const bobCtx = await launch(csp);
  const a = await openPage(aliceCtx, errors, "alice", appUrl);
  const b = await openPage(bobCtx, errors, "bob", appUrl);

  // The login page, with an error showing.
  await byTestId(b, "login-username").fill(bob);
  await byTestId(b, "login-password").fill(PASSWORD);
  await byTestId(b, "login-submit").click();
  await byTestId(b, "auth-status").filter({ hasText: /\w/ }).waitFor();
  await assertAccessibleInBothSchemes(b, "a11y", "login");

  await register(a, alice, PASSWORD);
  await register(b, bob, PASSWORD);
  await byTestId(a, "create-room-name").fill(room);
  await byTestId(a, "create-room-submit").click();
  await assertText(byTestId(a, "room-title"), `# ${room}`);
  await byTestId(a, "create-room-name").fill(other);
  await byTestId(a, "create-room-submit").click();
  await assertText(byTestId(a, "room-title"), `# ${other}`);
  await byTestId(b, "browse-rooms").click();
  await b.locator(`[data-testid="browse-room"][data-room-name="${other}"] [data-testid="join-room"]`).click();
  await assertText(byTestId(b, "room-title"), `# ${other}`);
  await b.locator(`[data-testid="browse-room"][data-room-name="${room}"] [data-testid="join-room"]`).click();
  await assertText(byTestId(b, "room-title"), `# ${room}`);

  // A room with messages both ways, someone online, someone typing, an
  // unread count on another room, and the room browser open.
  await a.locator(`[data-testid="room"][data-room-name="${room}"]`).click();
  await send(a, "Hello Bob, welcome!");
  await waitForMessage(b, "Hello Bob, welcome!");
  await send(b, "Thanks, glad to be here.");
  await a.locator(`[data-testid="room"][data-room-name="${other}"]`).click();
  await send(a, "Over here too");
  await b.locator(`[data-testid="room"][data-room-name="${other}"] [data-testid="unread"]`).waitFor();
  await b.locator(`[data-testid="online-user"][data-username="${alice}"]`).waitFor();
  await assertText(byTestId(b, "connection"), "online");
  await assertAccessibleInBothSchemes(b, "a11y", "room");

  // A direct room.
  await byTestId(b, "dm-username").fill(alice);
  await byTestId(b, "dm-submit").click();
  await assertText(byTestId(b, "room-title"), `@ ${alice}`);
  await send(b, "A word in private");
  await waitForMessage(b, "A word in private");
  await assertAccessibleInBothSchemes(b, "a11y", "direct-room");

  // The sessions page, after a wrong password (its error showing).
  await openSessions(b);
  await byTestId(b, "current-password").fill("not my password");
  await byTestId(b, "new-password").fill("another long password");
  await byTestId(b, "change-password-submit").click();
  await byTestId(b, "password-status").filter({ hasText: "wrong" }).waitFor();
  await assertAccessibleInBothSchemes(b, "a11y", "sessions");
  await byTestId(b, "sessions-close").click();

  // A phone: the room list closed (☰ with its count), then open.
  await b.setViewportSize({ width: 390, height: 844 });
  await a.locator(`[data-testid="room"][data-room-name="${room}"]`).click();
  await send(a, "For the phone");
  await byTestId(b, "menu-unread").waitFor();
  await assertAccessibleInBothSchemes(b, "a11y", "phone");
  await byTestId(b, "menu").click();
  await b.locator(".drawer-open").waitFor();
  await assertAccessibleInBothSchemes(b, "a11y", "phone-drawer");

  await byTestId(b, "menu").click();
  await b.setViewportSize({ width: 1100, height: 720 });

  // Offline: the banner, the pill and a message waiting for the
  // connection; back in a room with a "New messages" line.
  await b.locator(`[data-testid="room"][data-room-name="${other}"]`).click();
  await a.locator(`[data-testid="room"][data-room-name="${room}"]`).click();
  await send(a, "While you were away");
  await b.locator(`[data-testid="room"][data-room-name="${room}"] [data-testid="unread"]`).waitFor();
  await b.locator(`[data-testid="room"][data-room-name="${room}"]`).click();
  await byTestId(b, "new-messages-divider").waitFor();
  await bobCtx.setOffline(true);
  await byTestId(b, "offline-banner").waitFor();
  await byTestId(b, "composer").fill("Sent once the network is back");
  await byTestId(b, "composer").press("Enter");
  await byTestId(b, "pending-status").filter({ hasText: "waiting" }).waitFor();
  await assertAccessibleInBothSchemes(b, "a11y", "offline");
  await bobCtx.setOffline(false);
  await assertText(byTestId(b, "connection"), "online");
  await waitForMessage(b, "Sent once the network is back");

  await assertNoCspViolations(csp, [a, b]);
  assert.deepEqual(errors, [], "no page errors");
});

/**
 * Whether the focused element shows a focus ring: `:focus-visible`, an
 * outline (or a box-shadow ring) of at least 3:1 against what is around it.
 */
async function assertFocusRing(page, what) {
  const ring = await page.evaluate(() => {
    const node = document.activeElement;
    const style = getComputedStyle(node);
    const rgb = (c) => (c.match(/[\d.]+/g) ?? []).map(Number);
    const lum = ([r, g, b]) => {
      const f = (v) => ((v /= 255) <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4);
      return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
    };
    let around = node.parentElement;
    let bg = "rgb(255, 255, 255)";
    while (around) {
      const c = getComputedStyle(around).backgroundColor;
      const parts = rgb(c);
      if (parts.length >= 3 && (parts.length < 4 || parts[3] > 0)) {
        bg = c;
        break;
      }
      around = around.parentElement;
    }
    const color = style.outlineStyle !== "none" ? style.outlineColor : style.boxShadow;
    const [l1, l2] = [lum(rgb(color)), lum(rgb(bg))].sort((x, y) => y - x);
    return {
      tag: node.tagName.toLowerCase(),
      testid: node.getAttribute("data-testid"),
      focusVisible: node.matches(":focus-visible"),
      outlineStyle: style.outlineStyle,
      outlineWidth: parseFloat(style.outlineWidth),
      boxShadow: style.boxShadow,
      contrast: (l1 + 0.05) / (l2 + 0.05),
      color,
      bg,
    };
  });
  const shows = (ring.outlineStyle !== "none" && ring.outlineWidth >= 1) || ring.boxShadow !== "none";
  assert.ok(ring.focusVisible && shows, `${what}: no visible focus ring: ${JSON.stringify(ring)}`);
  assert.ok(ring.contrast >= 3, `${what}: the focus ring's contrast is ${ring.contrast.toFixed(2)}: ${JSON.stringify(ring)}`);
}

/** Presses Tab (or Shift+Tab) until `selector` has the focus. */
async function tabTo(page, selector, { back = false, max = 80 } = {}) {
  const seen = [];
  for (let i = 0; i <= max; i++) {
    const { matches, name } = await page.evaluate((sel) => {
      const node = document.activeElement;
      return {
        matches: !!node?.matches(sel),
        name: node ? `${node.tagName.toLowerCase()}[${node.getAttribute("data-testid") ?? node.textContent?.slice(0, 20)}]` : "none",
      };
    }, selector);
    if (matches) return;
    seen.push(name);
    await page.keyboard.press(back ? "Shift+Tab" : "Tab");
  }
  assert.fail(`${back ? "Shift+Tab" : "Tab"} never reached ${selector}; went through ${seen.join(", ")}`);
}

/** Tabs to a control, checks its focus ring, and presses `key` on it. */
async function press(page, selector, key, { back = false } = {}) {
  await tabTo(page, selector, { back });
  await assertFocusRing(page, selector);
  await page.keyboard.press(key);
}

test("every main action works with the keyboard alone, with a visible focus ring", { timeout: 180_000 }, async () => {
  const { appUrl } = await startServer("a11y-keyboard");
  const errors = [];
  const csp = [];
  const dana = unique("dana");
  const first = unique("first");
  const second = unique("second");
  const ctx = await launch(csp);
  const page = await openPage(ctx, errors, "dana", appUrl);
  const kb = page.keyboard;
  const focused = (selector) => page.waitForFunction((sel) => document.activeElement?.matches(sel), selector);

  // Create an account: the username field has the focus from the start.
  await focused('[data-testid="login-username"]');
  await kb.type(dana);
  await kb.press("Tab");
  await kb.type(PASSWORD);
  await tabTo(page, '[data-testid="login-submit"]');
  await assertFocusRing(page, "Log in");
  await press(page, '[data-testid="register-submit"]', "Enter");
  await assertText(byTestId(page, "me"), dana);
  await assertText(byTestId(page, "connection"), "online");

  // Create two rooms; each opens with the focus in the composer.
  for (const name of [first, second]) {
    await tabTo(page, '[data-testid="create-room-name"]', { back: true });
    await assertFocusRing(page, "new room name");
    await kb.type(name);
    await kb.press("Enter");
    await assertText(byTestId(page, "room-title"), `# ${name}`);
    await focused('[data-testid="composer"]');
  }

  // Send a message with Enter, and one with the Send button and Space.
  await assertFocusRing(page, "composer");
  await kb.type("Typed, sent with Enter");
  await kb.press("Enter");
  await waitForMessage(page, "Typed, sent with Enter");
  await kb.type("Sent with the button");
  await press(page, '[data-testid="send"]', "Space");
  await waitForMessage(page, "Sent with the button");

  // Switch rooms: Enter on one, Space on the other.
  await press(page, `[data-testid="room"][data-room-name="${first}"]`, "Enter", { back: true });
  await assertText(byTestId(page, "room-title"), `# ${first}`);
  await press(page, `[data-testid="room"][data-room-name="${second}"]`, "Space", { back: true });
  await assertText(byTestId(page, "room-title"), `# ${second}`);
  await waitForMessage(page, "Sent with the button");

  // The rest in the dark theme: the rings must show there too.
  await page.emulateMedia({ colorScheme: "dark" });
  await tabTo(page, '[data-testid="enable-notifications"]');
  await assertFocusRing(page, "notifications toggle (dark sidebar)");
  await tabTo(page, '[data-testid="composer"]');
  await assertFocusRing(page, "composer (dark)");

  // The sessions page, and back: the focus returns to its button.
  await press(page, '[data-testid="sessions-button"]', "Enter", { back: true });
  await page.locator('[data-testid="session"][data-current="true"]').waitFor();
  await press(page, '[data-testid="sessions-close"]', "Enter");
  await byTestId(page, "messages").waitFor({ state: "visible" });
  await focused('[data-testid="sessions-button"]');

  // A phone: ☰ opens the room list with the focus in it; a room chosen
  // with Enter closes it; Escape closes it too and gives ☰ the focus back.
  await page.setViewportSize({ width: 390, height: 844 });
  await press(page, '[data-testid="menu"]', "Enter", { back: true });
  await page.locator(".drawer-open").waitFor();
  assert.equal(await byTestId(page, "menu").getAttribute("aria-expanded"), "true");
  await focused(`[data-testid="room"][data-room-name="${second}"]`);
  await press(page, `[data-testid="room"][data-room-name="${first}"]`, "Enter", { back: true });
  await assertText(byTestId(page, "room-title"), `# ${first}`);
  await page.locator(".drawer-open").waitFor({ state: "detached" });
  await press(page, '[data-testid="menu"]', "Enter", { back: true });
  await page.locator(".drawer-open").waitFor();
  await kb.press("Escape");
  await page.locator(".drawer-open").waitFor({ state: "detached" });
  await focused('[data-testid="menu"]');
  assert.equal(await byTestId(page, "menu").getAttribute("aria-expanded"), "false");

  // With the room list closed, Tab never lands in it.
  const stops = [];
  for (let i = 0; i < 30; i++) {
    await kb.press("Tab");
    stops.push(await page.evaluate(() => !!document.activeElement?.closest(".sidebar")));
  }
  assert.ok(!stops.includes(true), "the closed drawer's controls are out of the tab order");

  // Log out.
  await page.setViewportSize({ width: 1100, height: 720 });
  await press(page, '[data-testid="logout"]', "Enter", { back: true });
  await assertText(byTestId(page, "auth-status"), "logged out");

  await assertNoCspViolations(csp, [page]);
  assert.deepEqual(errors, [], "no page errors");
});
