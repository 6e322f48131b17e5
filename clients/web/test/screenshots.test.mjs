// The README's screenshots, taken from the real app by the suite so that
// they never fall behind it: a room and a direct room on a desktop and a
// phone, in the light and the dark theme, written to docs/screenshots/.
//
// SCREENSHOTS_DIR overrides the folder. Commit the new images when the app's
// looks change.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, statSync } from "node:fs";
import path from "node:path";
import {
  assertNoCspViolations,
  assertText,
  byTestId,
  launch,
  openPage,
  register,
  send,
  startServer,
  waitForMessage,
  webDir,
} from "./harness.mjs";

const outDir = path.resolve(webDir, process.env.SCREENSHOTS_DIR ?? "../../docs/screenshots");

const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 844 };

test("screenshots of the main screens, desktop and phone, light and dark", { timeout: 180_000 }, async (t) => {
  mkdirSync(outDir, { recursive: true });
  const { appUrl } = await startServer("screenshots");
  const errors = [];
  const csp = [];
  const password = "correct horse battery";
  const [ana, ben, chloe] = ["ana", "ben", "chloe"];

  const anaCtx = await launch(csp);
  const benCtx = await launch(csp);
  const chloeCtx = await launch(csp);
  const a = await openPage(anaCtx, errors, "ana", appUrl);
  const b = await openPage(benCtx, errors, "ben", appUrl);
  const c = await openPage(chloeCtx, errors, "chloe", appUrl);
  for (const page of [a, b, c]) await page.setViewportSize(DESKTOP);

  // A cold load (a fresh profile, nothing cached): how long until the login
  // form takes typing, reported rather than asserted (timings are chat-bench's
  // business, and this machine is shared).
  const interactive = await a.evaluate(async () => {
    while (document.activeElement?.getAttribute("data-testid") !== "login-username") {
      await new Promise((r) => requestAnimationFrame(r));
    }
    return performance.now();
  });
  const transferred = await a.evaluate(() =>
    performance.getEntriesByType("resource").concat(performance.getEntriesByType("navigation"))
      .reduce((n, e) => n + e.transferSize, 0),
  );
  t.diagnostic(`cold load: login form ready ${interactive.toFixed(0)} ms after navigation, ${(transferred / 1024).toFixed(1)} KiB transferred`);
  await shoot(a, "login", DESKTOP, "light");
  await register(a, ana, password);
  await register(b, ben, password);
  await register(c, chloe, password);

  // Ana's design room, which Ben and Chloe join, and a direct room.
  await byTestId(a, "create-room-name").fill("design");
  await byTestId(a, "create-room-submit").click();
  await assertText(byTestId(a, "room-title"), "# design");
  for (const page of [b, c]) {
    await byTestId(page, "browse-rooms").click();
    await page.locator('[data-testid="browse-room"][data-room-name="design"] [data-testid="join-room"]').click();
    await assertText(byTestId(page, "room-title"), "# design");
  }
  await byTestId(a, "create-room-name").fill("release-2.0");
  await byTestId(a, "create-room-submit").click();
  await assertText(byTestId(a, "room-title"), "# release-2.0");
  await a.locator('[data-testid="room"][data-room-name="design"]').click();

  // Markdown and links show rendered: wait for the text as shown.
  await say(a, "Morning! The new sidebar is in **review** now.", "Morning! The new sidebar is in review now.");
  await say(b, "Looks good. One nit: the `unread` badge needs more contrast.", "Looks good. One nit: the unread badge needs more contrast.");
  await send(b, "Spec is at https://example.com/design/sidebar");
  await say(c, "Agreed, I'll take the badge. _Shipping today._", "Agreed, I'll take the badge. Shipping today.");
  await send(a, "Thanks both!");
  await waitForMessage(c, "Thanks both!");
  await byTestId(b, "dm-username").fill(ana);
  await byTestId(b, "dm-submit").click();
  await assertText(byTestId(b, "room-title"), `@ ${ana}`);
  await send(b, "Got a minute after standup?");
  await byTestId(c, "composer").pressSequentially("On it", { delay: 40 });
  await assertText(byTestId(a, "typing"), `${chloe} is typing`);

  for (const theme of ["light", "dark"]) {
    await a.emulateMedia({ colorScheme: theme });
    await shoot(a, "room", DESKTOP, theme);
    await a.setViewportSize(PHONE);
    await shoot(a, "room", PHONE, theme);
    await byTestId(a, "menu").click();
    await a.locator(".drawer-open").waitFor();
    await shoot(a, "drawer", PHONE, theme);
    await a.keyboard.press("Escape");
    await a.setViewportSize(DESKTOP);
  }
  await a.emulateMedia({ colorScheme: "light" });
  await a.locator(`[data-testid="room"][data-room-name="${ben}"]`).click();
  await waitForMessage(a, "Got a minute after standup?");
  await shoot(a, "direct", DESKTOP, "light");

  assert.deepEqual(errors, [], "no console errors");
  await assertNoCspViolations(csp, [a, b, c]);
});

/** Sends `text` from the composer and waits until it shows as `shown`. */
async function say(page, text, shown) {
  await byTestId(page, "composer").fill(text);
  await byTestId(page, "composer").press("Enter");
  await waitForMessage(page, shown);
}

/** Saves `name-<device>-<theme>.png` once the page has settled, and checks it is a real image. */
async function shoot(page, name, size, theme) {
  const device = size.width < 720 ? "phone" : "desktop";
  const file = path.join(outDir, `${name}-${device}-${theme}.png`);
  // Nothing half-way: no pending fonts or animation, no caret blinking.
  await page.evaluate(() => document.fonts.ready);
  await page.screenshot({ path: file, caret: "hide", animations: "disabled" });
  assert.ok(statSync(file).size > 5_000, `${file} is a screenshot`);
}
