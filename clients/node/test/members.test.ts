// Rooms and people against a real chat-server: room settings (createRoom's
// topic and visibility, updateRoom), invitations, the member list, roles,
// removals and bans, with the status codes a caller meets; and the room
// events they make (`member`, `roomUpdated`), which take seqs of the room's
// log like messages: they move a stream's cursor and a RoomView's seq, so a
// resume brings each once.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  type ChatClient,
  cursorsAt,
  MemberChange,
  MemberRole,
  RoomView,
  RoomVisibility,
  type ServerEvent,
} from "../src/index.js";
import { newUser, Recorder, startServer, type Server } from "./helpers.js";

let server: Server;
before(async () => {
  server = await startServer(["--send-rate", "1000", "--send-burst", "1000"]);
});
after(async () => {
  await server?.stop();
});

/** `call` must fail with `code`. */
async function rejectsWith(call: Promise<unknown>, code: Code, what: string): Promise<void> {
  await assert.rejects(call, (e: unknown) => {
    assert.ok(e instanceof ConnectError, `${what}: ${String(e)}`);
    assert.equal(Code[e.code], Code[code], `${what}: ${e.message}`);
    return true;
  });
}

const id = (client: ChatClient) => client.session!.user.id;
const username = (client: ChatClient) => client.session!.user.username;

/** The seq of a room event (`member`, `roomUpdated`, `message`...), for comparing orders. */
function seqOf(event: ServerEvent): bigint | undefined {
  const e = event.event;
  switch (e.case) {
    case "member":
    case "roomUpdated":
    case "reaction":
    case "deleted":
    case "edited":
      return e.value.seq;
    case "message":
      return e.value.seq;
    default:
      return undefined;
  }
}

describe("room settings", { timeout: 30_000 }, () => {
  test("createRoom takes a topic and a visibility; updateRoom changes what is given, for admins and the owner", async () => {
    const alice = await newUser(server.address, "alice");
    const bob = await newUser(server.address, "bob");
    const carol = await newUser(server.address, "carol");
    const name = `settings-${randomUUID()}`;
    const room = await alice.createRoom(name, { topic: "plans" });
    assert.deepEqual(
      [room.name, room.topic, room.visibility, room.myRole, room.memberCount, room.lastSeq],
      [name, "plans", RoomVisibility.PUBLIC, MemberRole.OWNER, 1, 0n],
      "public by default; the creator is its owner; creating is no room event",
    );
    await bob.joinRoom(room.id);

    const renamed = await alice.updateRoom(room.id, { name: `${name}-2` });
    assert.deepEqual([renamed.name, renamed.topic, renamed.visibility], [`${name}-2`, "plans", RoomVisibility.PUBLIC], "unset fields are kept");
    const cleared = await alice.updateRoom(room.id, { topic: "" });
    assert.deepEqual([cleared.name, cleared.topic], [`${name}-2`, ""], "an empty topic is set, not ignored");

    await rejectsWith(bob.updateRoom(room.id, { topic: "mine now" }), Code.PermissionDenied, "a plain member");
    await rejectsWith(carol.updateRoom(room.id, { topic: "hello" }), Code.PermissionDenied, "a non-member");
    await rejectsWith(alice.updateRoom(randomUUID(), { topic: "x" }), Code.NotFound, "an unknown room");
    const direct = await alice.openDirectRoom(username(bob));
    await rejectsWith(alice.updateRoom(direct.id, { topic: "x" }), Code.FailedPrecondition, "a direct room");

    // Made private, it is no longer listed to strangers; a public one is.
    const hidden = await alice.updateRoom(room.id, { visibility: RoomVisibility.PRIVATE });
    assert.equal(hidden.visibility, RoomVisibility.PRIVATE);
    assert.ok(!(await carol.listRooms()).some((r) => r.id === room.id), "a private room is not listed to a stranger");
    assert.ok((await bob.listRooms()).some((r) => r.id === room.id), "... but is to its members");
    await rejectsWith(carol.joinRoom(room.id), Code.PermissionDenied, "joining a private room uninvited");
    const secret = await alice.createRoom(`secret-${randomUUID()}`, { visibility: RoomVisibility.PRIVATE, topic: "hush" });
    assert.equal(secret.visibility, RoomVisibility.PRIVATE);
    assert.ok(!(await carol.listRooms()).some((r) => r.id === secret.id));
  });

  test("members hear roomUpdated; it moves their cursor and RoomView by its seq, and a resume brings it once", async () => {
    const alice = await newUser(server.address, "alice");
    const bob = await newUser(server.address, "bob");
    const room = await alice.createRoom(`updated-${randomUUID()}`);
    await bob.joinRoom(room.id);
    const view = await RoomView.load(bob, room.id);
    const first = bob.chatStream({ cursors: cursorsAt(await bob.listRooms({ joinedOnly: true })) });
    const b1 = new Recorder(first);
    b1.onEvent = (event) => view.apply(event);
    await first.ready;
    await first.ping();
    const before = first.cursors.get(room.id)!;

    await alice.updateRoom(room.id, { topic: "lunch at noon" });
    await b1.until("roomUpdated", () => b1.of("roomUpdated").length === 1);
    const updated = b1.of("roomUpdated")[0];
    assert.deepEqual(
      [updated.room?.id, updated.room?.topic, updated.by?.id],
      [room.id, "lunch at noon", id(alice)],
    );
    assert.ok(updated.seq > before, "a room update takes the room's next seq");
    assert.equal(first.cursors.get(room.id), updated.seq, "the cursor is at the update's seq");
    assert.equal(view.seq, updated.seq, "so is the RoomView's");
    first.close();
    await first.done;

    await alice.send(room.id, "after the update");
    const second = bob.chatStream({ cursors: first.cursors });
    const b2 = new Recorder(second);
    await b2.until("the new message", () => b2.of("message").length === 1);
    await second.ping();
    assert.deepEqual(b2.of("roomUpdated"), [], "the update is not brought again");
    second.close();

    const replay = bob.chatStream({ cursors: new Map([[room.id, before]]) });
    const b3 = new Recorder(replay);
    await b3.until("the replay", () => b3.of("message").length === 1);
    await replay.ping();
    assert.deepEqual(b3.of("roomUpdated").map((u) => [u.seq, u.room?.topic]), [[updated.seq, "lunch at noon"]], "from before it: once");
    replay.close();
  });
});

describe("invitations", { timeout: 30_000 }, () => {
  test("the invitee hears invited (no seq), sees the room, and joins; the room hears the invitation as a member event", async () => {
    const alice = await newUser(server.address, "alice");
    const bob = await newUser(server.address, "bob");
    const carol = await newUser(server.address, "carol");
    const room = await alice.createRoom(`invite-${randomUUID()}`, { visibility: RoomVisibility.PRIVATE });
    await rejectsWith(bob.joinRoom(room.id), Code.PermissionDenied, "a private room without an invitation");

    const aliceStream = alice.chatStream({ cursors: cursorsAt(await alice.listRooms({ joinedOnly: true })) });
    const bobStream = bob.chatStream();
    const a = new Recorder(aliceStream);
    const b = new Recorder(bobStream);
    for (const s of [aliceStream, bobStream]) await s.ready;
    for (const s of [aliceStream, bobStream]) await s.ping();

    await alice.inviteToRoom(room.id, username(bob));
    await b.until("invited", () => b.of("invited").length === 1);
    const invited = b.of("invited")[0];
    assert.deepEqual([invited.room?.id, invited.by?.id], [room.id, id(alice)]);
    assert.equal(bobStream.cursors.get(room.id), undefined, "an invitation is no event of a room one is in: no cursor");
    await a.until("the INVITED member event", () => a.of("member").some((m) => m.change === MemberChange.INVITED));
    const inv = a.of("member").find((m) => m.change === MemberChange.INVITED)!;
    assert.deepEqual([inv.roomId, inv.user?.id, inv.by?.id], [room.id, id(bob), id(alice)]);
    assert.equal(aliceStream.cursors.get(room.id), inv.seq, "the member event moves the room's cursor");

    const listed = (await bob.listRooms()).find((r) => r.id === room.id);
    assert.ok(listed, "the invitee sees the private room");
    assert.deepEqual([listed.invited, listed.joined], [true, false]);
    await rejectsWith(alice.inviteToRoom(room.id, username(alice)), Code.FailedPrecondition, "inviting a member");
    await rejectsWith(alice.inviteToRoom(room.id, `nobody-${Date.now()}`), Code.NotFound, "an unknown user");
    const dave = await newUser(server.address, "dave");
    await rejectsWith(carol.inviteToRoom(room.id, username(dave)), Code.PermissionDenied, "a stranger inviting");

    const joined = await bob.joinRoom(room.id);
    assert.deepEqual([joined.joined, joined.invited, joined.myRole], [true, false, MemberRole.MEMBER], "joining accepts the invitation");
    await a.until("bob's JOINED", () => a.of("member").some((m) => m.change === MemberChange.JOINED && m.user?.id === id(bob)));
    const join = a.of("member").find((m) => m.change === MemberChange.JOINED)!;
    assert.ok(join.seq > inv.seq);
    assert.equal(join.seq, joined.lastSeq, "the join is the room's newest event");
    // A plain member of a private room may not invite.
    await rejectsWith(bob.inviteToRoom(room.id, username(carol)), Code.PermissionDenied, "a plain member of a private room");

    // Declining: leaveRoom drops the invitation.
    await alice.inviteToRoom(room.id, username(carol));
    assert.equal((await carol.listRooms()).find((r) => r.id === room.id)?.invited, true);
    await carol.leaveRoom(room.id);
    assert.ok(!(await carol.listRooms()).some((r) => r.id === room.id), "declined: no longer listed");
    for (const s of [aliceStream, bobStream]) s.close();
  });
});

describe("members, roles, removals and bans", { timeout: 60_000 }, () => {
  test("listMembers follows every page: owner first, then admins, then members, by when they joined", async () => {
    const alice = await newUser(server.address, "alice");
    const room = await alice.createRoom(`members-${randomUUID()}`);
    const others: ChatClient[] = [];
    for (let i = 0; i < 5; i++) {
      const u = await newUser(server.address, "member");
      await u.joinRoom(room.id);
      others.push(u);
    }
    await alice.setMemberRole(room.id, id(others[3]), MemberRole.ADMIN);
    const stream = others[1].chatStream(); // online
    await stream.ready;

    const expected = [alice, others[3], others[0], others[1], others[2], others[4]].map(id);
    const paged = await alice.listMembers(room.id, { pageSize: 2 });
    assert.deepEqual(paged.map((m) => m.user?.id), expected);
    assert.deepEqual(
      paged.map((m) => m.role),
      [MemberRole.OWNER, MemberRole.ADMIN, MemberRole.MEMBER, MemberRole.MEMBER, MemberRole.MEMBER, MemberRole.MEMBER],
    );
    assert.ok(paged.every((m) => m.joinedAt), "each has joinedAt");
    assert.equal(paged.find((m) => m.user?.id === id(others[1]))?.online, true, "online from a stream");
    assert.deepEqual((await others[0].listMembers(room.id)).map((m) => m.user?.id), expected, "the default page size gives the same");
    const oneByOne = [];
    for await (const m of alice.members(room.id, { pageSize: 1 })) oneByOne.push(m.user?.id);
    assert.deepEqual(oneByOne, expected);

    const stranger = await newUser(server.address, "stranger");
    await rejectsWith(stranger.listMembers(room.id), Code.PermissionDenied, "a non-member");
    await rejectsWith(alice.listMembers(randomUUID()), Code.NotFound, "an unknown room");
    await rejectsWith(alice.chatService.listMembers({ roomId: room.id, pageToken: "not a token" }), Code.InvalidArgument, "a malformed page token");
    stream.close();
  });

  test("setMemberRole: the owner makes admins, and hands the room over; the room hears ROLE_CHANGED", async () => {
    const alice = await newUser(server.address, "alice");
    const bob = await newUser(server.address, "bob");
    const carol = await newUser(server.address, "carol");
    const room = await alice.createRoom(`roles-${randomUUID()}`);
    await bob.joinRoom(room.id);
    await carol.joinRoom(room.id);
    const stream = carol.chatStream({ cursors: cursorsAt(await carol.listRooms({ joinedOnly: true })) });
    const c = new Recorder(stream);
    await stream.ready;
    await stream.ping();

    await rejectsWith(bob.setMemberRole(room.id, id(carol), MemberRole.ADMIN), Code.PermissionDenied, "a plain member");
    await alice.setMemberRole(room.id, id(bob), MemberRole.ADMIN);
    await c.until("ROLE_CHANGED", () => c.of("member").length === 1);
    const changed = c.of("member")[0];
    assert.deepEqual(
      [changed.change, changed.user?.id, changed.role, changed.by?.id],
      [MemberChange.ROLE_CHANGED, id(bob), MemberRole.ADMIN, id(alice)],
    );
    assert.equal(stream.cursors.get(room.id), changed.seq);
    await rejectsWith(bob.setMemberRole(room.id, id(carol), MemberRole.ADMIN), Code.PermissionDenied, "an admin making admins");

    // Ownership to carol: alice becomes an admin.
    await alice.setMemberRole(room.id, id(carol), MemberRole.OWNER);
    const roles = new Map((await carol.listMembers(room.id)).map((m) => [m.user?.id, m.role]));
    assert.deepEqual(
      [roles.get(id(carol)), roles.get(id(alice)), roles.get(id(bob))],
      [MemberRole.OWNER, MemberRole.ADMIN, MemberRole.ADMIN],
    );
    assert.equal((await alice.listRooms({ joinedOnly: true })).find((r) => r.id === room.id)?.myRole, MemberRole.ADMIN);
    await rejectsWith(alice.setMemberRole(room.id, id(bob), MemberRole.MEMBER), Code.PermissionDenied, "the old owner");
    await carol.setMemberRole(room.id, id(bob), MemberRole.MEMBER);
    assert.equal((await bob.listRooms({ joinedOnly: true })).find((r) => r.id === room.id)?.myRole, MemberRole.MEMBER);
    stream.close();
  });

  test("removeMember and bans: the removed stream hears its member event and nothing more; unbanMember lets them back", async () => {
    const alice = await newUser(server.address, "alice");
    const bob = await newUser(server.address, "bob");
    const carol = await newUser(server.address, "carol");
    const room = await alice.createRoom(`remove-${randomUUID()}`);
    await bob.joinRoom(room.id);
    await carol.joinRoom(room.id);

    await rejectsWith(bob.removeMember(room.id, id(carol)), Code.PermissionDenied, "a plain member removing");
    await rejectsWith(bob.removeMember(room.id, id(alice)), Code.PermissionDenied, "removing the owner");
    await rejectsWith(bob.unbanMember(room.id, id(carol)), Code.PermissionDenied, "a plain member unbanning");

    const bobStream = bob.chatStream({ cursors: cursorsAt(await bob.listRooms({ joinedOnly: true })) });
    const carolStream = carol.chatStream({ cursors: cursorsAt(await carol.listRooms({ joinedOnly: true })) });
    const b = new Recorder(bobStream);
    const c = new Recorder(carolStream);
    for (const s of [bobStream, carolStream]) await s.ready;
    for (const s of [bobStream, carolStream]) await s.ping();

    await alice.removeMember(room.id, id(bob), { ban: true, reason: "spam" });
    for (const [who, r] of [["bob", b], ["carol", c]] as const) {
      await r.until(`${who} hears the ban`, () => r.of("member").some((m) => m.user?.id === id(bob)));
    }
    const banned = c.of("member").find((m) => m.user?.id === id(bob))!;
    assert.deepEqual(
      [banned.change, banned.role, banned.by?.id, banned.reason],
      [MemberChange.BANNED, MemberRole.UNSPECIFIED, id(alice), "spam"],
    );
    assert.deepEqual(b.of("member").map((m) => m.seq), [banned.seq], "the banned user hears the same event");
    assert.equal(carolStream.cursors.get(room.id), banned.seq);

    const after = await alice.send(room.id, "bob is gone");
    await c.until("the message", () => c.of("message").some((m) => m.id === after.id));
    await bobStream.ping();
    assert.ok(!b.of("message").some((m) => m.id === after.id), "the removed user hears nothing more of the room");
    await rejectsWith(bob.history(room.id), Code.PermissionDenied, "history after removal");
    await rejectsWith(bob.send(room.id, "let me back"), Code.PermissionDenied, "sending after removal");
    await rejectsWith(bob.joinRoom(room.id), Code.PermissionDenied, "a banned user joining");
    await rejectsWith(alice.inviteToRoom(room.id, username(bob)), Code.FailedPrecondition, "inviting a banned user");

    // A resume cursor for the room now brings an error event for it, and the stream goes on.
    const resumed = bob.chatStream({ cursors: new Map([[room.id, 0n]]) });
    const r = new Recorder(resumed);
    await resumed.ready;
    await r.until("the room's error", () => r.of("error").some((e) => e.roomId === room.id));
    assert.equal(r.of("error").find((e) => e.roomId === room.id)?.code, Code.PermissionDenied);
    assert.equal(typeof (await resumed.ping()), "number", "the stream goes on");
    assert.deepEqual(r.of("message"), [], "nothing of the room");
    resumed.close();

    await alice.unbanMember(room.id, id(bob));
    await c.until("UNBANNED", () => c.of("member").some((m) => m.change === MemberChange.UNBANNED));
    await alice.unbanMember(room.id, id(bob)); // not banned any more: succeeds
    const back = await bob.joinRoom(room.id);
    assert.equal(back.joined, true, "unbanned, bob joins again");

    // Without a ban, a removed user may come back at once; nobody removes the owner.
    await alice.removeMember(room.id, id(carol));
    await c.until("carol's removal", () => c.of("member").some((m) => m.change === MemberChange.REMOVED && m.user?.id === id(carol)));
    assert.equal((await carol.joinRoom(room.id)).joined, true);
    await alice.setMemberRole(room.id, id(carol), MemberRole.ADMIN);
    await rejectsWith(carol.removeMember(room.id, id(alice)), Code.PermissionDenied, "an admin removing the owner");
    await carol.removeMember(room.id, id(bob)); // an admin removes a member
    assert.ok(!(await alice.listMembers(room.id)).some((m) => m.user?.id === id(bob)));
    for (const s of [bobStream, carolStream]) s.close();
  });

  test("membership events replay on resume in seq order with messages, once each; a RoomView follows their seqs", async () => {
    const alice = await newUser(server.address, "alice");
    const bob = await newUser(server.address, "bob");
    const carol = await newUser(server.address, "carol");
    const room = await alice.createRoom(`replay-${randomUUID()}`);
    await bob.joinRoom(room.id);
    await alice.send(room.id, "one");
    await carol.joinRoom(room.id);
    await alice.updateRoom(room.id, { topic: "t" });
    await carol.leaveRoom(room.id);
    const last = await alice.send(room.id, "two");

    const stream = alice.chatStream({ cursors: new Map([[room.id, 0n]]) });
    const a = new Recorder(stream);
    const view = new RoomView(room.id, id(alice));
    a.onEvent = (event) => view.apply(event);
    await a.until("everything", () => a.of("message").some((m) => m.id === last.id));
    await stream.ping();
    const seqs = a.events.map(seqOf).filter((s) => s !== undefined);
    const kinds = a.events.filter((e) => seqOf(e) !== undefined).map((e) => (e.event.case === "member" ? MemberChange[e.event.value.change] : e.event.case));
    assert.deepEqual(kinds, ["JOINED", "message", "JOINED", "roomUpdated", "LEFT", "message"]);
    assert.deepEqual(seqs, [...seqs].sort((x, y) => (x < y ? -1 : 1)), "in seq order");
    assert.equal(new Set(seqs).size, seqs.length, "each once");
    assert.equal(stream.cursors.get(room.id), last.seq);
    assert.equal(view.seq, last.seq);
    assert.deepEqual(view.timeline().map((m) => m.text), ["one", "two"], "membership changes are no messages");
    stream.close();
  });
});
