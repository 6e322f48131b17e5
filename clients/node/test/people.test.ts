// People against a real chat-server: display names (updateProfile, and the
// `profile` event that tells our own streams and everyone who shares a room
// with us), finding people (searchUsers), and blocking (blockUser,
// unblockUser, listBlockedUsers), with the status codes a caller meets.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { Code, ConnectError } from "@connectrpc/connect";
import { ChatClient, cursorsAt, RoomView, RoomVisibility, type Message, type User } from "../src/index.js";
import { newUser, Recorder, startServer, type Server } from "./helpers.js";

let server: Server;
before(async () => {
  server = await startServer(["--send-rate", "1000", "--send-burst", "1000"]);
});
after(async () => {
  await server?.stop();
});

/** `call` must fail with `code` (and, when given, a message holding `text`). */
async function rejectsWith(call: Promise<unknown>, code: Code, what: string, text?: string): Promise<void> {
  await assert.rejects(call, (e: unknown) => {
    assert.ok(e instanceof ConnectError, `${what}: ${String(e)}`);
    assert.equal(Code[e.code], Code[code], `${what}: ${e.message}`);
    if (text !== undefined) assert.ok(e.rawMessage.includes(text), `${what}: ${e.rawMessage}`);
    return true;
  });
}

const id = (client: ChatClient) => client.session!.user.id;
const username = (client: ChatClient) => client.session!.user.username;
/** A user as the server sends it, to compare. */
const seen = (u: User | undefined) => [u?.id, u?.username, u?.displayName];
/** The users a message names, as a client shows them. */
const people = (m: Message) => ({
  id: m.id,
  sender: seen(m.sender),
  mentions: m.mentions.map(seen),
  quoted: m.replyTo ? seen(m.replyTo.sender) : undefined,
});
/** A name no other test's users start with. */
const uniquePrefix = () => `p${randomUUID().replaceAll("-", "").slice(0, 10)}`;

/** The refusal a blocked user meets. */
const BLOCKED = "you cannot message this user";

describe("display names", { timeout: 30_000 }, () => {
  test("updateProfile sets, keeps and clears the display name; every User the server sends carries it", async () => {
    const alice = await newUser(server.address, "alice");
    const bob = await newUser(server.address, "bob");
    const room = await alice.createRoom(`names-${randomUUID()}`);
    await bob.joinRoom(room.id);

    const named = await alice.updateProfile({ displayName: "Alice Liddell" });
    assert.deepEqual(seen(named), [id(alice), username(alice), "Alice Liddell"]);
    assert.equal(alice.session!.user.displayName, "Alice Liddell", "the session holds us as we are now");
    assert.deepEqual(seen(await alice.updateProfile({})), seen(named), "nothing given changes nothing");

    const sent = await alice.send(room.id, "by any other name");
    assert.deepEqual(seen(sent.sender), seen(named), "a message's sender");
    assert.deepEqual(seen((await bob.history(room.id)).messages.find((m) => m.id === sent.id)?.sender), seen(named), "History's");
    assert.deepEqual(seen((await bob.listMembers(room.id)).find((m) => m.user?.id === id(alice))?.user), seen(named), "ListMembers'");

    await rejectsWith(alice.updateProfile({ displayName: "x".repeat(65) }), Code.InvalidArgument, "65 characters");
    await rejectsWith(alice.updateProfile({ displayName: "Alice\u0007" }), Code.InvalidArgument, "a control character");
    await rejectsWith(alice.updateProfile({ displayName: "\u202eecilA" }), Code.InvalidArgument, "a bidi control");
    assert.equal((await alice.updateProfile({ displayName: "é".repeat(64) })).displayName, "é".repeat(64), "64 characters, not bytes");

    const cleared = await alice.updateProfile({ displayName: "" });
    assert.deepEqual(seen(cleared), [id(alice), username(alice), ""], "an empty name clears it");
    assert.equal(alice.session!.user.displayName, "");
  });

  test("profile reaches our streams and those sharing a room with us, not a stranger's; it takes no seq; a RoomView renames the held messages as History does", async () => {
    const alice = await newUser(server.address, "alice");
    const bob = await newUser(server.address, "bob");
    const carol = await newUser(server.address, "carol");
    const room = await alice.createRoom(`profile-${randomUUID()}`);
    await bob.joinRoom(room.id);
    const first = await alice.send(room.id, "hello");
    await bob.send(room.id, `hi @${username(alice)}`, "", { replyToId: first.id });

    const view = await RoomView.load(bob, room.id);
    const aliceStream = alice.chatStream();
    const bobStream = bob.chatStream({ cursors: cursorsAt(await bob.listRooms({ joinedOnly: true })) });
    const carolStream = carol.chatStream();
    const a = new Recorder(aliceStream);
    const b = new Recorder(bobStream);
    const c = new Recorder(carolStream);
    b.onEvent = (event) => view.apply(event);
    for (const s of [aliceStream, bobStream, carolStream]) await s.ready;
    for (const s of [aliceStream, bobStream, carolStream]) await s.ping();
    const cursor = bobStream.cursors.get(room.id);

    const named = await alice.updateProfile({ displayName: "Alice L." });
    await b.until("bob hears the profile", () => b.of("profile").length === 1);
    await a.until("alice hears her own", () => a.of("profile").length === 1);
    assert.deepEqual(seen(b.of("profile")[0].user), seen(named));
    assert.deepEqual(seen(a.of("profile")[0].user), seen(named));
    await carolStream.ping();
    assert.deepEqual(c.of("profile"), [], "carol shares no room with alice");
    assert.equal(bobStream.cursors.get(room.id), cursor, "a profile is no room event: no cursor moves");
    assert.equal(view.seq, cursor, "nor does the view");

    const held = view.timeline().map(people);
    assert.deepEqual(
      held.map((m) => [m.sender[2], m.mentions.map((u) => u[2]), m.quoted?.[2]]),
      [["Alice L.", [], undefined], ["", ["Alice L."], "Alice L."]],
      "the sender, the mention and the quote of alice",
    );
    assert.deepEqual(held, (await bob.history(room.id)).messages.map(people), "as History shows them");
    for (const s of [aliceStream, bobStream, carolStream]) s.close();
  });
});

describe("finding people", { timeout: 30_000 }, () => {
  test("searchUsers: a prefix of the username or the display name, without regard to case, by username, at most 20", async () => {
    const prefix = uniquePrefix();
    const searcher = await newUser(server.address, "searcher");
    const [one, two, three] = [await newUser(server.address, prefix), await newUser(server.address, prefix), await newUser(server.address, prefix)];
    const nickname = uniquePrefix();
    await two.updateProfile({ displayName: `${nickname} Star` });

    const found = await searcher.searchUsers(prefix.toUpperCase());
    assert.deepEqual(found.map((u) => u.username), [one, two, three].map(username).sort(), "by username, whatever the case");
    assert.deepEqual(
      (await searcher.searchUsers(nickname.toUpperCase())).map(seen),
      [[id(two), username(two), `${nickname} Star`]],
      "by display name, which it carries",
    );
    assert.deepEqual((await searcher.searchUsers(`${nickname} s`)).map((u) => u.id), [id(two)], "the prefix may hold a space");
    assert.deepEqual((await searcher.searchUsers(prefix, { limit: 2 })).map((u) => u.username), [one, two, three].map(username).sort().slice(0, 2));
    assert.deepEqual(await searcher.searchUsers(uniquePrefix()), [], "no match");

    // More users than a search answers: 20 by default and at most.
    const many = new ChatClient(server.address);
    for (let i = 0; i < 18; i++) await many.register(`${prefix}_more_${i}`, "correct horse battery");
    assert.equal((await searcher.searchUsers(prefix)).length, 20);
    assert.equal((await searcher.searchUsers(prefix, { limit: 100 })).length, 20, "a larger limit is capped");

    await rejectsWith(searcher.searchUsers(""), Code.InvalidArgument, "an empty prefix");
    await rejectsWith(searcher.searchUsers("x".repeat(33)), Code.InvalidArgument, "33 characters");
  });
});

describe("blocking", { timeout: 60_000 }, () => {
  test("a blocked user cannot open a direct room with the blocker, send in one, or invite them; unblocking lets them again", async () => {
    const alice = await newUser(server.address, "alice");
    const mallory = await newUser(server.address, "mallory");
    const bob = await newUser(server.address, "bob");
    const direct = await mallory.openDirectRoom(username(alice));
    await mallory.send(direct.id, "before the block");
    const group = await mallory.createRoom(`mallorys-${randomUUID()}`);
    await alice.joinRoom(group.id);
    const privateRoom = await mallory.createRoom(`mallorys-private-${randomUUID()}`, { visibility: RoomVisibility.PRIVATE });

    await alice.blockUser(username(mallory));
    await alice.blockUser(username(mallory)); // twice: no error
    assert.deepEqual((await alice.listBlockedUsers()).map(seen), [seen(mallory.session!.user)]);
    assert.deepEqual(await mallory.listBlockedUsers(), [], "the blocked user blocks nobody");

    await rejectsWith(mallory.openDirectRoom(username(alice)), Code.PermissionDenied, "opening the direct room", BLOCKED);
    await rejectsWith(mallory.send(direct.id, "let me in"), Code.PermissionDenied, "sending in it", BLOCKED);
    const stream = mallory.chatStream();
    await stream.ready;
    await rejectsWith(stream.send(direct.id, "on a stream"), Code.PermissionDenied, "sending on a ChatStream", BLOCKED);
    stream.close();
    await rejectsWith(mallory.inviteToRoom(privateRoom.id, username(alice)), Code.PermissionDenied, "inviting the blocker", BLOCKED);
    // Group rooms go on as before, and others are not blocked.
    const said = await mallory.send(group.id, "in the group");
    assert.ok((await alice.history(group.id)).messages.some((m) => m.id === said.id), "the blocker reads the group room");
    await mallory.inviteToRoom(privateRoom.id, username(bob));
    await bob.openDirectRoom(username(alice));

    await rejectsWith(alice.blockUser(`nobody-${Date.now()}`), Code.NotFound, "blocking an unknown user");
    await rejectsWith(alice.unblockUser(`nobody-${Date.now()}`), Code.NotFound, "unblocking an unknown user");
    await rejectsWith(alice.blockUser(username(alice)), Code.InvalidArgument, "blocking oneself");

    await alice.unblockUser(username(mallory));
    await alice.unblockUser(username(mallory)); // not blocked any more: no error
    assert.deepEqual(await alice.listBlockedUsers(), []);
    assert.equal((await mallory.openDirectRoom(username(alice))).id, direct.id, "the same direct room opens again");
    await mallory.send(direct.id, "after the block");
    await mallory.inviteToRoom(privateRoom.id, username(alice));
  });

  test("listBlockedUsers is by username; searchUsers leaves out those who blocked the caller", async () => {
    const prefix = uniquePrefix();
    const alice = await newUser(server.address, `${prefix}a`);
    const zed = await newUser(server.address, `${prefix}z`);
    const mallory = await newUser(server.address, "mallory");
    const bob = await newUser(server.address, "bob");
    await alice.blockUser(username(zed));
    await alice.blockUser(username(mallory));
    assert.deepEqual((await alice.listBlockedUsers()).map((u) => u.username), [username(zed), username(mallory)].sort());

    assert.deepEqual((await mallory.searchUsers(prefix)).map((u) => u.id), [id(zed)], "alice blocked mallory: she is left out");
    assert.deepEqual((await bob.searchUsers(prefix)).map((u) => u.id), [id(alice), id(zed)], "bob finds both");
    assert.deepEqual((await alice.searchUsers(prefix)).map((u) => u.id), [id(alice), id(zed)], "the blocker still finds whom she blocked");
    await alice.unblockUser(username(mallory));
    assert.deepEqual((await mallory.searchUsers(prefix)).map((u) => u.id), [id(alice), id(zed)], "unblocked: found again");
  });

  test("the blocker's streams get no typing or presence from the blocked user, but still their messages in a group room", async () => {
    const alice = await newUser(server.address, "alice");
    const mallory = await newUser(server.address, "mallory");
    const bob = await newUser(server.address, "bob");
    const room = await bob.createRoom(`shared-${randomUUID()}`);
    await alice.joinRoom(room.id);
    await mallory.joinRoom(room.id);
    await alice.blockUser(username(mallory));

    const aliceStream = alice.chatStream({ cursors: cursorsAt(await alice.listRooms({ joinedOnly: true })) });
    const bobStream = bob.chatStream({ cursors: cursorsAt(await bob.listRooms({ joinedOnly: true })) });
    const a = new Recorder(aliceStream);
    const b = new Recorder(bobStream);
    for (const s of [aliceStream, bobStream]) await s.ready;
    for (const s of [aliceStream, bobStream]) await s.ping();

    const malloryStream = mallory.chatStream();
    await malloryStream.ready;
    await malloryStream.ping();
    await b.until("bob sees mallory online", () => b.of("presence").some((p) => p.online && p.user?.id === id(mallory)));
    malloryStream.typing(room.id);
    await b.until("bob sees mallory typing", () => b.of("typing").some((t) => t.user?.id === id(mallory)));
    const said = await malloryStream.send(room.id, "still here");
    await a.until("alice gets the message", () => a.of("message").some((m) => m.id === said.id));
    malloryStream.close();
    await malloryStream.done;
    await b.until("bob sees mallory offline", () => b.of("presence").some((p) => !p.online && p.user?.id === id(mallory)));
    await aliceStream.ping();
    assert.deepEqual(a.of("presence").filter((p) => p.user?.id === id(mallory)), [], "no presence of mallory for alice");
    assert.deepEqual(a.of("typing").filter((t) => t.user?.id === id(mallory)), [], "no typing of mallory for alice");

    // Unblocked, alice hears mallory again.
    await alice.unblockUser(username(mallory));
    const again = mallory.chatStream();
    await again.ready;
    await a.until("alice sees mallory online", () => a.of("presence").some((p) => p.online && p.user?.id === id(mallory)));
    again.typing(room.id);
    await a.until("alice sees mallory typing", () => a.of("typing").some((t) => t.user?.id === id(mallory)));
    for (const s of [aliceStream, bobStream, again]) s.close();
  });
});
