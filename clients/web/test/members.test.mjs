// Rooms and the people in them, in the browser app: the member panel
// (roles, presence, live changes), room settings for admins, inviting by
// username with suggestions, removing, banning and roles from the member
// list, display names, the private-room lock, and blocking. Each test runs
// a real server and real browsers, and checks the server's state where the
// page alone could be wrong. See harness.mjs for how they start.
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
  openPage,
  openSessions,
  protoField,
  register,
  send,
  startServer,
  stringFields,
  varint,
  waitForMessage,
  assertAccessibleInBothSchemes,
} from "./harness.mjs";

const password = "correct horse battery";
/** gRPC status codes the tests expect. */
const PERMISSION_DENIED = 7;
const FAILED_PRECONDITION = 9;
/** MemberRole and RoomVisibility numbers (chat.proto). */
const ADMIN = 2;
const PRIVATE = 2;

/** A protobuf message of string fields and varint fields: `({ 1: "id" }, { 3: 2 })`. */
function fields(strings, varints = {}) {
  return Buffer.concat([
    stringFields(strings),
    ...Object.entries(varints).map(([n, v]) => Buffer.concat([varint(Number(n) << 3), varint(v)])),
  ]);
}

/**
 * A server, and people with pages: `a` created a room and has it open, the
 * others (`more` names) joined it through the room browser. `call(page,
 * method, strings, varints)` calls the API as that page's user and
 * resolves to `{ status, message, reply }`.
 */
async function aRoomWith(name, more = ["ben"], { server } = {}) {
  const started = server ?? (await startServer(name));
  const { address, appUrl } = started;
  const errors = [];
  const csp = [];
  const suffix = Date.now().toString(36).slice(-5);
  const names = { a: `ann_${suffix}` };
  const a = await openPage(await launch(csp), errors, "a", appUrl);
  await register(a, names.a, password);
  const pages = { a };
  for (const who of more) {
    names[who] = `${who}_${suffix}`;
    pages[who] = await openPage(await launch(csp), errors, who, appUrl);
    await register(pages[who], names[who], password);
  }
  const room = `${name}-${suffix}`;
  await byTestId(a, "create-room-name").fill(room);
  await byTestId(a, "create-room-submit").click();
  await assertText(byTestId(a, "room-title"), `# ${room}`);
  for (const who of more) await joinByBrowsing(pages[who], room);
  const roomId = await a.evaluate(() => {
    const { user } = JSON.parse(localStorage.getItem("chat.auth"));
    return localStorage.getItem(`chat.active.${user.id}`);
  });
  const call = async (page, method, strings, varints) => {
    return grpcWebCall(address, `chat.v1.ChatService/${method}`, fields(strings, varints), await accessToken(page));
  };
  const ok = async (page, method, strings, varints) => {
    const res = await call(page, method, strings, varints);
    assert.equal(res.status, 0, `${method}: ${res.message}`);
    return res.reply;
  };
  const idOf = (page) => page.evaluate(() => JSON.parse(localStorage.getItem("chat.auth")).user.id);
  const done = async () => {
    assert.deepEqual(errors, [], "no console errors");
    await assertNoCspViolations(csp, Object.values(pages));
  };
  return { ...pages, pages, names, room, roomId, address, appUrl, call, ok, idOf, errors, csp, done };
}

async function joinByBrowsing(page, room) {
  await byTestId(page, "browse-rooms").click();
  await page.locator(`[data-testid="browse-room"][data-room-name="${room}"] [data-testid="join-room"]`).click();
  await assertText(byTestId(page, "room-title"), `# ${room}`);
}

/** The member list's row of `username`. */
const memberRow = (page, username) => page.locator(`[data-testid="member"][data-username="${username}"]`);

/** The member list as `username role online` lines, in its order. */
async function memberLines(page) {
  return page.locator('[data-testid="member"]').evaluateAll((items) =>
    items.map((li) => `${li.querySelector('[data-testid="member-name"]').textContent} ${li.dataset.role} ${li.dataset.online}`),
  );
}

async function waitForMembers(page, want) {
  await page.waitForFunction(
    (want) =>
      JSON.stringify(
        [...document.querySelectorAll('[data-testid="member"]')].map(
          (li) => `${li.querySelector('[data-testid="member-name"]').textContent} ${li.dataset.role} ${li.dataset.online}`,
        ),
      ) === JSON.stringify(want),
    want,
  ).catch(async (e) => {
    assert.deepEqual(await memberLines(page), want);
    throw e;
  });
}

/** Opens the member panel of the open room. */
async function openMembers(page) {
  await byTestId(page, "members-button").click();
  await byTestId(page, "members-panel").waitFor();
  await byTestId(page, "member-count").filter({ hasText: /\d+ members?/ }).waitFor();
}

/** Opens a member's actions in the member panel. */
async function actionsOf(page, username) {
  const row = memberRow(page, username);
  const toggle = row.locator('[data-testid="member-actions-toggle"]');
  if ((await toggle.getAttribute("aria-expanded")) !== "true") await toggle.click();
  return row.locator('[data-testid="member-actions"]');
}

/** The usernames ListMembers gives `page`'s user. */
async function serverMembers(ctx, page) {
  const reply = await ctx.ok(page, "ListMembers", { 1: ctx.roomId });
  const out = [];
  // Each repeated field 1 is a Member; its field 1 a User, whose field 2 is the username.
  for (let i = 0; i < reply.length; ) {
    const len = reply[i + 1];
    if (reply[i] !== 0x0a || len & 0x80) break;
    const member = reply.subarray(i + 2, i + 2 + len);
    out.push(Buffer.from(protoField(protoField(member, 1), 2)).toString("utf8"));
    i += 2 + len;
  }
  return out.sort();
}

test("the member panel lists each member's name, role and presence, and follows joins, leaves, roles, profiles and presence live", { timeout: 180_000 }, async () => {
  const ctx = await aRoomWith("members", ["ben", "cat"]);
  const { a, ben, cat, names, roomId, ok, idOf } = ctx;
  await openMembers(a);
  // Owner first, then members by when they joined; everyone is online.
  await waitForMembers(a, [`${names.a} owner true`, `${names.ben} member true`, `${names.cat} member true`]);
  assert.equal(await memberRow(a, names.a).locator('[data-testid="member-role"]').textContent(), "owner");
  assert.equal(await memberRow(a, names.ben).locator('[data-testid="member-role"]').count(), 0, "no badge for a plain member");
  await assertText(byTestId(a, "member-count"), "3 members");
  // Screen readers hear the presence, not only a dot's colour.
  assert.match(await memberRow(a, names.ben).innerText(), /online/);

  // Made an admin elsewhere: the badge shows at once.
  await ok(a, "SetMemberRole", { 1: roomId, 2: await idOf(ben) }, { 3: ADMIN });
  await waitForMembers(a, [`${names.a} owner true`, `${names.ben} admin true`, `${names.cat} member true`]);

  // A display name set: shown instead of the username, which stays in the tooltip.
  await ok(cat, "UpdateProfile", { 1: "Catherine" });
  await waitForMembers(a, [`${names.a} owner true`, `${names.ben} admin true`, `Catherine member true`]);
  assert.equal(await memberRow(a, names.cat).locator('[data-testid="member-name"]').getAttribute("title"), `@${names.cat}`);

  // cat closes her browser: offline; she leaves: gone; she comes back: there again.
  await cat.context().close();
  await waitForMembers(a, [`${names.a} owner true`, `${names.ben} admin true`, `Catherine member false`]);
  await ok(ben, "LeaveRoom", { 1: roomId });
  await waitForMembers(a, [`${names.a} owner true`, `Catherine member false`]);
  await ok(ben, "JoinRoom", { 1: roomId });
  await waitForMembers(a, [`${names.a} owner true`, `Catherine member false`, `${names.ben} member true`]);
  assert.deepEqual(await serverMembers(ctx, a), [names.a, names.ben, names.cat].sort(), "the server agrees");
  delete ctx.pages.cat;
  await assertAccessibleInBothSchemes(a, "members", "panel");
  await ctx.done();
});

test("room settings are for admins and the owner: name, topic and visibility change for everyone, and a refusal is said as the server says it", { timeout: 180_000 }, async () => {
  const ctx = await aRoomWith("settings");
  const { a, ben, names, room, roomId, call, ok } = ctx;
  // A plain member has no settings to open.
  assert.equal(await byTestId(ben, "room-settings-button").isVisible(), false);
  assert.equal(await byTestId(a, "room-topic").isVisible(), false, "no topic, no line for it");

  await byTestId(a, "room-settings-button").click();
  const form = byTestId(a, "room-settings");
  assert.equal(await byTestId(a, "room-settings-name").inputValue(), room);
  assert.equal(await byTestId(a, "room-visibility-public").isChecked(), true);
  await byTestId(a, "room-settings-topic").fill("Plans for the week");
  await byTestId(a, "room-settings-save").click();
  await assertText(byTestId(a, "room-settings-status"), "Saved.");
  for (const page of [a, ben]) await assertText(byTestId(page, "room-topic"), "Plans for the week");
  await ben.locator('[data-testid="member-event"][data-kind="topic"]', { hasText: exactly(`${names.a} set the topic: Plans for the week`) }).waitFor();

  // A name another room has: the server's refusal, word for word, on the name field.
  const taken = `taken-${Date.now().toString(36).slice(-5)}`;
  await ok(ben, "CreateRoom", { 1: taken });
  const refusal = await call(a, "UpdateRoom", { 1: roomId, 2: taken });
  assert.notEqual(refusal.status, 0);
  await byTestId(a, "room-settings-name").fill(taken);
  await byTestId(a, "room-settings-save").click();
  const said = `Not saved: ${refusal.message.charAt(0).toUpperCase()}${refusal.message.slice(1)}`;
  await byTestId(a, "room-settings-status").filter({ hasText: exactly(said) }).waitFor();
  assert.equal(await byTestId(a, "room-settings-name").getAttribute("aria-invalid"), "true");
  await assertAccessibleInBothSchemes(a, "members", "settings-refused");

  // A new name and private: both pages' headers and room lists change.
  const renamed = `renamed-${Date.now().toString(36).slice(-5)}`;
  await byTestId(a, "room-settings-name").fill(renamed);
  await byTestId(a, "room-visibility-private").check();
  await byTestId(a, "room-settings-save").click();
  await assertText(byTestId(a, "room-settings-status"), "Saved.");
  for (const page of [a, ben]) {
    await assertText(byTestId(page, "room-title"), `# ${renamed}`);
    await byTestId(page, "room-title").locator('[data-testid="private-indicator"]').waitFor();
    await page.locator(`[data-testid="room"][data-room-name="${renamed}"][data-private="true"]`).waitFor();
  }
  // Made an admin, ben gets the settings too, live.
  await ok(a, "SetMemberRole", { 1: roomId, 2: await ben.evaluate(() => JSON.parse(localStorage.getItem("chat.auth")).user.id) }, { 3: ADMIN });
  await byTestId(ben, "room-settings-button").waitFor();
  await byTestId(ben, "room-settings-button").click();
  assert.equal(await byTestId(ben, "room-visibility-private").isChecked(), true);
  assert.equal(await byTestId(ben, "room-settings-topic").inputValue(), "Plans for the week");
  await form.waitFor();
  await ctx.done();
});

test("inviting by username offers matching users as one types, picked with the arrows and Enter, and says why an invitation is refused", { timeout: 180_000 }, async () => {
  const ctx = await aRoomWith("invite", []);
  const { a, names, roomId, address, appUrl, call, ok } = ctx;
  await ok(a, "UpdateRoom", { 1: roomId }, { 4: PRIVATE });
  // Two people whose names start alike, one with a page to see the invitation.
  const suffix = Date.now().toString(36).slice(-4);
  const zed = `zed${suffix}`;
  const zelda = `zelda${suffix}`;
  const res = await grpcWebCall(address, "chat.v1.AuthService/Register", stringFields({ 1: zed, 2: password }), "");
  assert.equal(res.status, 0, res.message);
  const z = await openPage(await launch(ctx.csp), ctx.errors, "zelda", appUrl);
  ctx.pages.zelda = z;
  await register(z, zelda, password);

  await openMembers(a);
  const box = byTestId(a, "invite-username");
  assert.equal(await box.getAttribute("role"), "combobox");
  await box.pressSequentially("ze");
  const options = a.locator('[data-testid="invite-suggestion"]');
  await options.nth(1).waitFor();
  assert.deepEqual(await options.evaluateAll((os) => os.map((o) => o.dataset.username)), [zed, zelda]);
  assert.equal(await box.getAttribute("aria-expanded"), "true");
  await box.press("ArrowDown");
  await box.press("ArrowDown");
  const activeId = await box.getAttribute("aria-activedescendant");
  assert.equal(await a.locator(`#${activeId}`).getAttribute("data-username"), zelda);
  assert.equal(await a.locator(`#${activeId}`).getAttribute("aria-selected"), "true");
  await assertAccessibleInBothSchemes(a, "members", "invite-suggestions");
  await box.press("Enter");
  assert.equal(await box.inputValue(), zelda);
  assert.equal(await box.getAttribute("aria-expanded"), "false");
  await box.press("Enter");
  await byTestId(a, "invite-status").filter({ hasText: exactly(`Invited ${zelda}.`) }).waitFor();
  // zelda hears of it: the private room waits in her room browser.
  await byTestId(z, "browse-rooms").click();
  await z.locator(`[data-testid="browse-room"][data-room-name="${ctx.room}"] [data-testid="invited"]`).waitFor();

  // Members are not offered; inviting one is refused, in the server's words.
  await box.fill(names.a.slice(0, 5));
  await a.waitForTimeout(600);
  assert.equal(await a.locator(`[data-testid="invite-suggestion"][data-username="${names.a}"]`).count(), 0);
  const refusal = await call(a, "InviteToRoom", { 1: roomId, 2: names.a });
  assert.equal(refusal.status, FAILED_PRECONDITION);
  await box.fill(names.a);
  await byTestId(a, "invite-submit").click();
  const said = `Could not invite ${names.a}: ${refusal.message.charAt(0).toUpperCase()}${refusal.message.slice(1)}`;
  await byTestId(a, "invite-status").filter({ hasText: exactly(said) }).waitFor();
  await ctx.done();
});

test("removing and banning from the member list ask first and take a reason, follow the roles, and the owner makes admins and hands the room over", { timeout: 240_000 }, async () => {
  const ctx = await aRoomWith("moderate", ["ben", "cat"]);
  const { a, ben, cat, names, roomId, call, ok, idOf } = ctx;
  await openMembers(a);
  await openMembers(ben);
  // A plain member may only block.
  const benSeesCat = await actionsOf(ben, names.cat);
  assert.deepEqual(await benSeesCat.locator("button").allInnerTexts(), ["Block"]);

  // The owner makes ben an admin: his own panel and header follow.
  const annSeesBen = await actionsOf(a, names.ben);
  assert.deepEqual(await annSeesBen.locator("button").allInnerTexts(), ["Make admin", "Transfer ownership", "Remove", "Ban", "Block"]);
  await annSeesBen.getByRole("button", { name: "Make admin" }).click();
  await waitForMembers(ben, [`${names.a} owner true`, `${names.ben} admin true`, `${names.cat} member true`]);
  await byTestId(ben, "room-settings-button").waitFor();
  // An admin removes members, never the owner.
  assert.deepEqual(await (await actionsOf(ben, names.a)).locator("button").allInnerTexts(), ["Block"]);
  const benOnCat = await actionsOf(ben, names.cat);
  assert.deepEqual(await benOnCat.locator("button").allInnerTexts(), ["Remove", "Ban", "Block"]);

  // Remove asks first: Cancel keeps cat.
  await benOnCat.getByRole("button", { name: "Remove" }).click();
  const dialog = ben.getByRole("dialog", { name: `Remove ${names.cat}?` });
  await dialog.waitFor();
  await dialog.getByRole("button", { name: "Cancel" }).click();
  await dialog.waitFor({ state: "detached" });
  assert.ok((await serverMembers(ctx, a)).includes(names.cat), "cancelled: cat stays");
  // Then with a reason.
  await (await actionsOf(ben, names.cat)).getByRole("button", { name: "Remove" }).click();
  await dialog.getByLabel("Reason").fill("off topic");
  await assertAccessibleInBothSchemes(ben, "members", "remove-dialog");
  await dialog.getByRole("button", { name: "Remove" }).click();
  await waitForMembers(a, [`${names.a} owner true`, `${names.ben} admin true`]);
  await a.locator('[data-testid="member-event"][data-kind="removed"]', { hasText: exactly(`${names.cat} was removed by ${names.ben}: off topic`) }).waitFor();
  await assertText(byTestId(cat, "error"), "off topic");

  // Back in (a public room), then banned by the owner: the server refuses her joining again.
  await ok(cat, "JoinRoom", { 1: roomId });
  await memberRow(a, names.cat).waitFor();
  await (await actionsOf(a, names.cat)).getByRole("button", { name: "Ban" }).click();
  const ban = a.getByRole("dialog", { name: `Ban ${names.cat}?` });
  await ban.getByLabel("Reason").fill("spam");
  await ban.getByLabel("Reason").press("Enter");
  await memberRow(a, names.cat).waitFor({ state: "detached" });
  await a.locator('[data-testid="member-event"][data-kind="banned"]', { hasText: exactly(`${names.cat} was banned by ${names.a}: spam`) }).waitFor();
  assert.equal((await call(cat, "JoinRoom", { 1: roomId })).status, PERMISSION_DENIED, "banned: cannot join");

  // The owner hands the room to ben: he is the owner, ann an admin, both pages agree.
  await (await actionsOf(a, names.ben)).getByRole("button", { name: "Transfer ownership" }).click();
  const transfer = a.getByRole("dialog", { name: `Make ${names.ben} the owner?` });
  await transfer.getByRole("button", { name: "Transfer ownership" }).click();
  for (const page of [a, ben]) await waitForMembers(page, [`${names.ben} owner true`, `${names.a} admin true`]);
  // Now nobody but ben acts on ben, and ben may remove the admin ann.
  assert.deepEqual(await (await actionsOf(a, names.ben)).locator("button").allInnerTexts(), ["Block"]);
  assert.deepEqual(await (await actionsOf(ben, names.a)).locator("button").allInnerTexts(), ["Remove admin", "Transfer ownership", "Remove", "Ban", "Block"]);
  assert.equal((await call(a, "RemoveMember", { 1: roomId, 2: await idOf(ben) })).status, PERMISSION_DENIED, "the server agrees: nobody removes the owner");
  await ctx.done();
});

test("display names show instead of usernames in messages, the member list, typing and presence, set on the account page and changed live", { timeout: 180_000 }, async () => {
  const ctx = await aRoomWith("names");
  const { a, ben, names } = ctx;
  await send(ben, "said before the name");
  await waitForMessage(a, "said before the name");

  await openSessions(ben);
  await byTestId(ben, "display-name").fill("Benjamin B.");
  await byTestId(ben, "display-name-save").click();
  await assertText(byTestId(ben, "display-name-status"), "Others see you as Benjamin B.");
  await assertText(byTestId(ben, "me"), "Benjamin B.");
  assert.equal(await byTestId(ben, "me").getAttribute("title"), `Logged in as @${names.ben}`);
  await byTestId(ben, "sessions-close").click();

  // ann's page, live: the message already there, the online list.
  const sender = a.locator(`[data-testid="message"][data-sender="${names.ben}"] [data-testid="message-sender"]`).first();
  await sender.filter({ hasText: exactly("Benjamin B.") }).waitFor();
  assert.equal(await sender.getAttribute("title"), `@${names.ben}`, "the username is in the tooltip");
  await a.locator(`[data-testid="online-user"][data-username="${names.ben}"]`, { hasText: "Benjamin B." }).waitFor();
  await openMembers(a);
  await waitForMembers(a, [`${names.a} owner true`, "Benjamin B. member true"]);
  await byTestId(ben, "composer").pressSequentially("typing…");
  await assertText(byTestId(a, "typing"), "Benjamin B. is typing…");
  await byTestId(ben, "composer").press("Enter");
  await waitForMessage(a, "typing…");

  // After a reload, from the server's own answers.
  await a.reload();
  await waitForMessage(a, "said before the name");
  await a.locator(`[data-testid="message"][data-sender="${names.ben}"] [data-testid="message-sender"]`, { hasText: exactly("Benjamin B.") }).first().waitFor();

  // Cleared: the username again.
  await openSessions(ben);
  await byTestId(ben, "display-name").fill("");
  await byTestId(ben, "display-name-save").click();
  await assertText(byTestId(ben, "display-name-status"), "Others see your username.");
  await a.locator(`[data-testid="message"][data-sender="${names.ben}"] [data-testid="message-sender"]`, { hasText: exactly(names.ben) }).first().waitFor();
  await ctx.done();
});

test("a private room shows a lock that reads 'private', in the room list, the room browser and the header", { timeout: 120_000 }, async () => {
  const ctx = await aRoomWith("private", []);
  const { a, roomId, room, ok } = ctx;
  const entry = a.locator(`[data-testid="room"][data-room-name="${room}"]`);
  assert.equal(await entry.locator('[data-testid="private-indicator"]').count(), 0, "a public room has no lock");
  await ok(a, "UpdateRoom", { 1: roomId }, { 4: PRIVATE });
  await entry.locator('[data-testid="private-indicator"]').waitFor();
  // The button's accessible name says it, not only the icon.
  await a.getByRole("button", { name: new RegExp(`${room}.*private`) }).waitFor();
  await a.getByRole("heading", { name: new RegExp(`# ${room}.*private`) }).waitFor();
  assert.equal(await entry.locator('[data-testid="private-indicator"]').getAttribute("title"), "Private room: joined by invitation");

  // An invitee sees the lock in the room browser.
  const suffix = Date.now().toString(36).slice(-4);
  const page = await openPage(await launch(ctx.csp), ctx.errors, "guest", ctx.appUrl);
  ctx.pages.guest = page;
  await register(page, `guest${suffix}`, password);
  await ok(a, "InviteToRoom", { 1: roomId, 2: `guest${suffix}` });
  await byTestId(page, "browse-rooms").click();
  await page.locator(`[data-testid="browse-room"][data-room-name="${room}"] [data-testid="private-indicator"]`).waitFor();
  await assertAccessibleInBothSchemes(a, "members", "private-room");
  await ctx.done();
});

test("blocking from the member list collapses their messages, lists them on the account page, and stops direct messages; unblocking undoes it", { timeout: 180_000 }, async () => {
  const server = await startServer("block");
  const ctx = await aRoomWith("block", ["ben"], { server });
  const { a, ben, names, call } = ctx;
  await send(ben, "before the block");
  await waitForMessage(a, "before the block");

  await openMembers(a);
  await (await actionsOf(a, names.ben)).getByRole("button", { name: "Block" }).click();
  await byTestId(a, "member-status").filter({ hasText: "is blocked" }).waitFor();
  await memberRow(a, names.ben).locator('[data-testid="member-blocked"]').waitFor();
  // His message is collapsed, and opens on asking.
  const collapsed = a.locator(`[data-testid="message"][data-sender="${names.ben}"] [data-testid="blocked-message"]`);
  await collapsed.first().waitFor();
  assert.match(await collapsed.first().innerText(), /Message from a blocked user/);
  await send(ben, "after the block");
  await collapsed.nth(1).waitFor();
  assert.equal(await a.locator('[data-testid="message-text"]', { hasText: exactly("after the block") }).count(), 0, "collapsed, not shown");
  await collapsed.first().getByRole("button", { name: "Show" }).click();
  await waitForMessage(a, "before the block");

  // The server agrees: ben cannot message ann directly.
  const dm = await call(ben, "OpenDirectRoom", { 1: names.a });
  assert.equal(dm.status, PERMISSION_DENIED);
  assert.match(dm.message, /you cannot message this user/);

  // The account page lists him; Unblock there lifts it.
  await openSessions(a);
  await a.locator(`[data-testid="blocked-user"][data-username="${names.ben}"]`).waitFor();
  await assertAccessibleInBothSchemes(a, "members", "blocked-list");
  await a.getByRole("button", { name: `Unblock ${names.ben}` }).click();
  await a.locator('[data-testid="blocked-users"]', { hasText: "You block nobody." }).waitFor();
  await byTestId(a, "sessions-close").click();
  await waitForMessage(a, "after the block");
  assert.equal((await call(ben, "OpenDirectRoom", { 1: names.a })).status, 0, "unblocked: direct messages again");
  await ctx.done();
});
