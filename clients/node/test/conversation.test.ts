// The calls of a conversation against a real chat-server: edits, deletions,
// reactions, replies, threads and read markers, with every status code a
// caller can meet; `reaction` and `read` events reaching other streams live;
// a resume after a reaction not bringing it again; and a RoomView fed by a
// stream ending with what History and ListThread say.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { Code, ConnectError } from "@connectrpc/connect";
import { type ChatClient, type Message, RoomView, cursorsAt } from "../src/index.js";
import { newUser, Recorder, startServer, type Server } from "./helpers.js";

let server: Server;
before(async () => {
  // A send rate that the tests' bursts of reactions do not reach, so that
  // RESOURCE_EXHAUSTED can only mean the 20-emoji cap.
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

/** Alice's room with bob in it, and carol, who is not. */
async function threeUsers(label: string) {
  const alice = await newUser(server.address, "alice");
  const bob = await newUser(server.address, "bob");
  const carol = await newUser(server.address, "carol");
  const room = await alice.createRoom(`${label}-${randomUUID()}`);
  await bob.joinRoom(room.id);
  return { alice, bob, carol, room };
}

const reactions = (m: Message | undefined) => (m?.reactions ?? []).map((r) => [r.emoji, r.count, r.reactedByMe]);

/** A small seeded PRNG (mulberry32): a failing random run can be repeated. */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** What a client shows of a message, to compare a RoomView with History and ListThread. */
const shown = (m: Message) => ({
  id: m.id,
  seq: m.seq,
  text: m.text,
  deleted: m.deleted,
  edited: m.editedAt !== undefined,
  replyTo: m.replyTo ? [m.replyTo.messageId, m.replyTo.text, m.replyTo.deleted] : undefined,
  threadRootId: m.threadRootId,
  threadReplyCount: m.threadReplyCount,
  threadLastReplyAt: m.threadLastReplyAt?.seconds,
  reactions: reactions(m),
  mentions: m.mentions.map((u) => u.id),
});

describe("edits and deletions", { timeout: 30_000 }, () => {
  test("the sender edits and deletes; others, non-members and unknown messages are refused", async () => {
    const { alice, bob, carol, room } = await threeUsers("edits");
    const m = await alice.send(room.id, "teh plan");
    const edited = await alice.editMessage(room.id, m.id, "the plan");
    assert.equal(edited.text, "the plan");
    assert.equal(edited.seq, m.seq, "keeps its own seq");
    assert.ok(edited.editedAt, "editedAt is set");
    assert.equal((await alice.editMessage(room.id, m.id, "the plan")).text, "the plan", "the same text again is accepted");

    await rejectsWith(bob.editMessage(room.id, m.id, "bob's words"), Code.PermissionDenied, "another member edits");
    await rejectsWith(bob.deleteMessage(room.id, m.id), Code.PermissionDenied, "another member deletes");
    await rejectsWith(carol.editMessage(room.id, m.id, "x"), Code.PermissionDenied, "a non-member edits");
    await rejectsWith(carol.deleteMessage(room.id, m.id), Code.PermissionDenied, "a non-member deletes");
    await rejectsWith(alice.editMessage(room.id, randomUUID(), "x"), Code.NotFound, "an unknown message");
    await rejectsWith(alice.deleteMessage(room.id, randomUUID()), Code.NotFound, "deleting an unknown message");
    await rejectsWith(alice.editMessage(room.id, m.id, "   "), Code.InvalidArgument, "a blank text");

    await alice.deleteMessage(room.id, m.id);
    await alice.deleteMessage(room.id, m.id); // again: succeeds, changes nothing
    await rejectsWith(alice.editMessage(room.id, m.id, "back"), Code.FailedPrecondition, "editing a deleted message");
    const [tomb] = (await bob.history(room.id)).messages;
    assert.deepEqual([tomb.id, tomb.deleted, tomb.text, tomb.editedAt], [m.id, true, "", undefined]);
  });
});

describe("reactions", { timeout: 30_000 }, () => {
  test("counted per emoji in order of first use, reactedByMe per caller, idempotent both ways", async () => {
    const { alice, bob, room } = await threeUsers("reactions");
    const m = await alice.send(room.id, "lunch?");
    await alice.addReaction(room.id, m.id, "👍");
    await bob.addReaction(room.id, m.id, "❤"); // unqualified: stored as ❤️
    await bob.addReaction(room.id, m.id, "👍");
    await bob.addReaction(room.id, m.id, "👍"); // twice: no change
    await alice.removeReaction(room.id, m.id, "🎉"); // absent: no change
    const [forAlice] = (await alice.history(room.id)).messages;
    assert.deepEqual(reactions(forAlice), [
      ["👍", 2, true],
      ["❤️", 1, false],
    ]);
    const [forBob] = (await bob.history(room.id)).messages;
    assert.deepEqual(reactions(forBob), [
      ["👍", 2, true],
      ["❤️", 1, true],
    ]);

    // 👍 falls to zero and comes back: it goes last.
    await alice.removeReaction(room.id, m.id, "👍");
    await bob.removeReaction(room.id, m.id, "👍");
    await alice.addReaction(room.id, m.id, "🏳️‍🌈");
    await alice.addReaction(room.id, m.id, "👍");
    assert.deepEqual(reactions((await bob.history(room.id)).messages[0]), [
      ["❤️", 1, true],
      ["🏳️‍🌈", 1, false],
      ["👍", 1, false],
    ]);
  });

  test("status codes: bad emoji, unknown message, non-member, deleted message, more than 20 emoji", async () => {
    const { alice, bob, carol, room } = await threeUsers("reaction-codes");
    const m = await alice.send(room.id, "react to me");
    for (const bad of ["", "a", "👍👍", ":+1:", "👍 "]) {
      await rejectsWith(bob.addReaction(room.id, m.id, bad), Code.InvalidArgument, `emoji ${JSON.stringify(bad)}`);
    }
    await rejectsWith(bob.addReaction(room.id, randomUUID(), "👍"), Code.NotFound, "an unknown message");
    await rejectsWith(bob.removeReaction(room.id, randomUUID(), "👍"), Code.NotFound, "removing from an unknown message");
    await rejectsWith(carol.addReaction(room.id, m.id, "👍"), Code.PermissionDenied, "a non-member adds");
    await rejectsWith(carol.removeReaction(room.id, m.id, "👍"), Code.PermissionDenied, "a non-member removes");

    const many = ["😀", "😁", "😂", "🤣", "😃", "😄", "😅", "😆", "😉", "😊", "😋", "😎", "😍", "😘", "🥰", "😗", "😙", "😚", "🙂", "🤗"];
    for (const emoji of many) await bob.addReaction(room.id, m.id, emoji);
    await rejectsWith(bob.addReaction(room.id, m.id, "🤩"), Code.ResourceExhausted, "a 21st emoji");
    await bob.addReaction(room.id, m.id, "😀"); // one already there is no new emoji
    await alice.addReaction(room.id, m.id, "🤩"); // the cap is per user

    await alice.deleteMessage(room.id, m.id);
    await rejectsWith(alice.addReaction(room.id, m.id, "👍"), Code.FailedPrecondition, "reacting to a deleted message");
    await bob.removeReaction(room.id, m.id, "😀"); // succeeds: a tombstone has no reactions
    assert.deepEqual(reactions((await bob.history(room.id)).messages[0]), []);
  });

  test("a second client sees reaction events live; its cursor moves by their seq, so a resume does not bring them again", async () => {
    const { alice, bob, room } = await threeUsers("reaction-live");
    const m = await alice.send(room.id, "vote here");
    const first = bob.chatStream({ cursors: cursorsAt(await bob.listRooms({ joinedOnly: true })) });
    const b1 = new Recorder(first);
    await first.ready;
    await first.ping();

    await alice.addReaction(room.id, m.id, "👍");
    await alice.removeReaction(room.id, m.id, "👍");
    await b1.until("two reaction events", () => b1.of("reaction").length === 2);
    const [added, removed] = b1.of("reaction");
    assert.deepEqual(
      [added.roomId, added.messageId, added.emoji, added.user?.id, added.added],
      [room.id, m.id, "👍", alice.session!.user.id, true],
    );
    assert.equal(added.seq, m.seq + 1n);
    assert.deepEqual([removed.seq, removed.added], [m.seq + 2n, false]);
    assert.equal(first.cursors.get(room.id), removed.seq, "the cursor is at the last reaction's seq");
    first.close();
    await first.done;

    await alice.send(room.id, "after the vote");
    const second = bob.chatStream({ cursors: first.cursors });
    const b2 = new Recorder(second);
    await second.ready;
    await b2.until("the new message", () => b2.of("message").length === 1);
    await second.ping();
    assert.deepEqual(b2.of("reaction"), [], "no reaction brought again");
    assert.deepEqual(b2.of("message").map((x) => x.text), ["after the vote"]);
    second.close();

    // From a cursor before them, a resume replays each once, in seq order.
    const replay = bob.chatStream({ cursors: new Map([[room.id, m.seq]]) });
    const b3 = new Recorder(replay);
    await replay.ready;
    await b3.until("the replay", () => b3.of("message").length === 1);
    await replay.ping();
    assert.deepEqual(b3.of("reaction").map((r) => [r.seq, r.added]), [
      [m.seq + 1n, true],
      [m.seq + 2n, false],
    ]);
    replay.close();
  });
});

describe("replies and threads", { timeout: 30_000 }, () => {
  test("a reply quotes its target as it is now; a thread reply counts on its root and is listed by listThread only", async () => {
    const { alice, bob, room } = await threeUsers("threads");
    const root = await alice.send(room.id, "where shall we eat?");
    const quote = await bob.send(room.id, "somewhere warm", "", { replyToId: root.id });
    assert.deepEqual([quote.replyTo?.messageId, quote.replyTo?.text, quote.replyTo?.sender?.id], [
      root.id,
      "where shall we eat?",
      alice.session!.user.id,
    ]);
    const r1 = await bob.send(room.id, "the noodle place", "k-r1", { threadRootId: root.id });
    assert.equal(r1.threadRootId, root.id);
    const again = await bob.send(room.id, "the noodle place", "k-r1", { threadRootId: root.id });
    assert.equal(again.id, r1.id, "a retried thread reply returns the original");
    const stream = alice.chatStream();
    await stream.ready;
    const r2 = await stream.send(room.id, "or the bakery", undefined, { threadRootId: root.id, replyToId: r1.id });
    assert.deepEqual([r2.threadRootId, r2.replyTo?.messageId], [root.id, r1.id]);
    stream.close();

    const history = await bob.history(room.id);
    assert.deepEqual(history.messages.map((x) => x.text), ["where shall we eat?", "somewhere warm"], "top-level only");
    assert.equal(history.messages[0].threadReplyCount, 2);
    assert.ok(history.messages[0].threadLastReplyAt);

    const thread = await bob.listThread(room.id, root.id);
    assert.equal(thread.root?.id, root.id);
    assert.equal(thread.root?.threadReplyCount, 2);
    assert.deepEqual(thread.messages.map((x) => x.text), ["the noodle place", "or the bakery"]);
    assert.equal(thread.hasMore, false);
    const older = await bob.listThread(room.id, root.id, { beforeSeq: r2.seq, limit: 1 });
    assert.deepEqual(older.messages.map((x) => x.id), [r1.id]);

    await alice.editMessage(room.id, root.id, "where shall we eat tonight?");
    assert.equal((await bob.history(room.id)).messages[1].replyTo?.text, "where shall we eat tonight?", "the quote follows an edit");
    await bob.deleteMessage(room.id, r1.id);
    const after = await bob.listThread(room.id, root.id);
    assert.equal(after.root?.threadReplyCount, 2, "a deleted reply keeps its place in the count");
    assert.deepEqual(after.messages.map((x) => x.deleted), [true, false]);
    assert.deepEqual([after.messages[1].replyTo?.deleted, after.messages[1].replyTo?.text], [true, ""]);
  });

  test("status codes: unknown targets, targets in another room, a reply as a root, non-members", async () => {
    const { alice, bob, carol, room } = await threeUsers("thread-codes");
    const root = await alice.send(room.id, "root");
    const reply = await bob.send(room.id, "reply", "", { threadRootId: root.id });
    const elsewhere = await alice.createRoom(`elsewhere-${randomUUID()}`);
    const foreign = await alice.send(elsewhere.id, "in another room");

    await rejectsWith(alice.send(room.id, "x", "", { replyToId: randomUUID() }), Code.NotFound, "reply to an unknown message");
    await rejectsWith(alice.send(room.id, "x", "", { replyToId: foreign.id }), Code.NotFound, "reply to another room's message");
    await rejectsWith(alice.send(room.id, "x", "", { threadRootId: randomUUID() }), Code.NotFound, "an unknown thread root");
    await rejectsWith(alice.send(room.id, "x", "", { threadRootId: foreign.id }), Code.NotFound, "a root in another room");
    await rejectsWith(alice.send(room.id, "x", "", { threadRootId: reply.id }), Code.InvalidArgument, "a thread reply as a root");
    await rejectsWith(alice.listThread(room.id, randomUUID()), Code.NotFound, "listThread of an unknown root");
    await rejectsWith(alice.listThread(room.id, foreign.id), Code.NotFound, "listThread of another room's message");
    await rejectsWith(carol.listThread(room.id, root.id), Code.PermissionDenied, "listThread by a non-member");
    await rejectsWith(carol.send(room.id, "x", "", { threadRootId: root.id }), Code.PermissionDenied, "a thread reply by a non-member");
  });
});

describe("read markers", { timeout: 30_000 }, () => {
  test("markRead moves forward only, is clamped to the room's last seq, and tells the reader's streams and the other members", async () => {
    const { alice, bob, carol, room } = await threeUsers("read");
    const joined = (await bob.listRooms({ joinedOnly: true })).find((r) => r.id === room.id)!;
    // The room was empty when bob joined: his marker starts at its last seq,
    // which is his own join (a room event), so nothing is unread.
    assert.ok(joined.lastSeq > 0n, "the join took a seq");
    assert.deepEqual([joined.lastReadSeq, joined.unreadCount], [joined.lastSeq, 0], "bob's marker starts at his join");
    const m1 = await alice.send(room.id, "one @" + bob.session!.user.username);
    const m2 = await alice.send(room.id, "two");
    let seen = (await bob.listRooms({ joinedOnly: true })).find((r) => r.id === room.id)!;
    assert.deepEqual([seen.unreadCount, seen.mentionCount, seen.lastMessage?.id], [2, 1, m2.id]);

    const view = await RoomView.load(bob, room.id);
    assert.deepEqual([view.lastReadSeq, view.unreadCount()], [joined.lastReadSeq, 2]);
    const phone = bob.chatStream(); // another of bob's streams
    const laptop = bob.chatStream();
    const aliceStream = alice.chatStream();
    const p = new Recorder(phone);
    p.onEvent = (event) => view.apply(event);
    const l = new Recorder(laptop);
    const a = new Recorder(aliceStream);
    for (const s of [phone, laptop, aliceStream]) await s.ready;
    for (const s of [phone, laptop, aliceStream]) await s.ping();

    assert.equal(await bob.markRead(room.id, m1.seq), m1.seq);
    for (const [who, r] of [["phone", p], ["laptop", l], ["alice", a]] as const) {
      await r.until(`${who} hears bob's marker`, () =>
        r.of("read").some((x) => x.roomId === room.id && x.user?.id === bob.session!.user.id && x.lastReadSeq === m1.seq),
      );
    }
    assert.equal(phone.cursors.get(room.id), undefined, "a read event is no room event: no cursor moves");
    assert.deepEqual([view.lastReadSeq, view.unreadCount(), view.seq], [m1.seq, 1, m2.seq], "a RoomView takes our marker from it");
    seen = (await bob.listRooms({ joinedOnly: true })).find((r) => r.id === room.id)!;
    assert.deepEqual([seen.lastReadSeq, seen.unreadCount, seen.mentionCount], [m1.seq, 1, 0]);

    assert.equal(await bob.markRead(room.id, 0n), m1.seq, "never backwards");
    assert.equal(await bob.markRead(room.id, 1_000_000n), m2.seq, "clamped to the room's last seq");
    seen = (await bob.listRooms({ joinedOnly: true })).find((r) => r.id === room.id)!;
    assert.deepEqual([seen.lastReadSeq, seen.unreadCount], [m2.seq, 0]);

    await rejectsWith(carol.markRead(room.id, 1n), Code.PermissionDenied, "a non-member");
    await rejectsWith(bob.markRead(randomUUID(), 1n), Code.NotFound, "an unknown room");
    for (const s of [phone, laptop, aliceStream]) s.close();
  });
});

describe("RoomView on a live stream", { timeout: 60_000 }, () => {
  test("a view loaded, then fed by its stream, ends with what History and ListThread say", async () => {
    const { alice, bob, room } = await threeUsers("view");
    const early = await alice.send(room.id, "before the view");
    await alice.addReaction(room.id, early.id, "👋");
    await bob.addReaction(room.id, early.id, "👋");
    const root = await alice.send(room.id, "a thread");
    await bob.send(room.id, "first reply", "", { threadRootId: root.id });

    const view = await RoomView.load(bob, room.id);
    assert.deepEqual(reactions(view.get(early.id)), [["👋", 2, true]]);
    assert.equal(view.get(root.id)?.threadReplyCount, 1);
    await view.loadThread(bob, root.id);
    const stream = bob.resumingStream({ cursors: new Map([[room.id, view.seq]]) });
    const r = new Recorder(stream); // the stream's one reader: it applies each event as it records it
    r.onEvent = (event) => view.apply(event);
    await r.until("ready", () => r.of("ready").length === 1);

    // Everything a conversation does, by both of them.
    const q = await alice.send(room.id, "quoting you", "", { replyToId: early.id });
    await alice.addReaction(room.id, q.id, "👍");
    await bob.addReaction(room.id, q.id, "👍");
    await bob.addReaction(room.id, q.id, "🎉");
    await alice.removeReaction(room.id, q.id, "👍");
    await alice.removeReaction(room.id, early.id, "👋");
    await alice.editMessage(room.id, early.id, "before the view (edited)");
    const r2 = await alice.send(room.id, "second reply @" + bob.session!.user.username, "", { threadRootId: root.id });
    await bob.addReaction(room.id, r2.id, "👀");
    await alice.send(room.id, "third reply", "", { threadRootId: root.id });
    await alice.deleteMessage(room.id, r2.id);
    const gone = await alice.send(room.id, "soon gone");
    await bob.addReaction(room.id, gone.id, "😮");
    await alice.deleteMessage(room.id, gone.id);
    const last = await alice.send(room.id, "the end");

    await r.until("the last message", () => r.of("message").some((m) => m.id === last.id));
    const history = await bob.history(room.id);
    const thread = await bob.listThread(room.id, root.id);
    assert.deepEqual(view.timeline().map(shown), history.messages.map(shown));
    assert.deepEqual(view.thread(root.id).map(shown), thread.messages.map(shown));
    assert.deepEqual(shown(view.get(root.id)!), shown(thread.root!));
    const seqs = r.events.flatMap(({ event: e }) =>
      e.case === "message" ? [e.value.seq] : e.case === "edited" || e.case === "deleted" || e.case === "reaction" ? [e.value.seq] : [],
    );
    assert.equal(new Set(seqs).size, seqs.length, "every event seq once");
    assert.equal(view.seq, last.seq);
    stream.close();
    assert.equal(await stream.done, undefined);
  });

  test("random conversations: a live view and one that keeps resuming both end with History and ListThread", async () => {
    const seed = Number(process.env.SEED ?? Date.now() % 1_000_000);
    const random = mulberry32(seed);
    const pick = <T>(xs: T[]): T => xs[Math.floor(random() * xs.length)];
    const { alice, bob, room } = await threeUsers("random");
    const users = [alice, bob];
    const live = await RoomView.load(bob, room.id);
    const away = await RoomView.load(alice, room.id);
    const liveStream = bob.resumingStream({ cursors: new Map([[room.id, live.seq]]) });
    const heard: bigint[] = [];
    const applying = (async () => {
      for await (const event of liveStream) {
        const e = event.event;
        if (e.case === "message" || e.case === "edited" || e.case === "deleted" || e.case === "reaction") {
          heard.push(e.value.seq);
        }
        live.apply(event);
      }
    })();
    // Alice's view follows a ChatStream that she closes and reopens from the view's seq at random.
    let awayStream: ReturnType<typeof alice.chatStream> | undefined;
    let awayApplying: Promise<void> = Promise.resolve();
    const disconnect = async () => {
      awayStream?.close();
      await awayApplying;
      awayStream = undefined;
    };
    const reconnect = async () => {
      await disconnect();
      const stream = alice.chatStream({ cursors: new Map([[room.id, away.seq]]) });
      awayStream = stream;
      awayApplying = (async () => {
        for await (const event of stream) away.apply(event);
      })().catch(() => {});
      await stream.ready;
    };
    await reconnect();

    type Sent = { id: string; by: ChatClient; top: boolean; deleted: boolean };
    const sent: Sent[] = [];
    const emoji = ["👍", "❤️", "😂", "🎉"];
    for (let step = 0; step < 150; step++) {
      const roll = random();
      const alive = sent.filter((m) => !m.deleted);
      if (roll < 0.05) {
        // Away for a while, or back (resuming from the view's seq).
        if (awayStream) await disconnect();
        else await reconnect();
      } else if (roll < 0.3 || alive.length === 0) {
        const by = pick(users);
        const roots = alive.filter((m) => m.top);
        const threaded = roots.length > 0 && random() < 0.4;
        const replyTo = alive.length > 0 && random() < 0.2 ? pick(alive).id : "";
        const m = await by.send(room.id, `step ${step} @${pick(users).session!.user.username}`, "", {
          threadRootId: threaded ? pick(roots).id : "",
          replyToId: replyTo,
        });
        sent.push({ id: m.id, by, top: !threaded, deleted: false });
      } else if (roll < 0.4) {
        const m = pick(alive);
        await m.by.editMessage(room.id, m.id, `edited at step ${step}`);
      } else if (roll < 0.47) {
        const m = pick(alive);
        await m.by.deleteMessage(room.id, m.id);
        m.deleted = true;
      } else {
        const m = pick(alive);
        const by = pick(users);
        if (random() < 0.65) await by.addReaction(room.id, m.id, pick(emoji));
        else await by.removeReaction(room.id, m.id, pick(emoji));
      }
    }
    if (!awayStream) await reconnect();
    const end = await alice.send(room.id, "the end");
    const deadline = Date.now() + 20_000;
    while ((live.seq < end.seq || away.seq < end.seq) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    const context = `seed ${seed} (SEED=${seed} repeats it)`;
    assert.equal(live.seq, end.seq, `the live view got everything; ${context}`);
    assert.equal(away.seq, end.seq, `the resuming view got everything; ${context}`);

    for (const [view, client] of [
      [live, bob],
      [away, alice],
    ] as const) {
      const history = await client.history(room.id, { limit: 200 });
      assert.equal(history.hasMore, false);
      assert.deepEqual(view.timeline().map(shown), history.messages.map(shown), `timeline of ${view.me}; ${context}`);
      for (const root of history.messages.filter((m) => m.threadReplyCount > 0)) {
        const thread = await client.listThread(room.id, root.id, { limit: 200 });
        assert.deepEqual(view.thread(root.id).map(shown), thread.messages.map(shown), `thread ${root.id}; ${context}`);
      }
    }
    assert.equal(new Set(heard).size, heard.length, `every event seq heard once; ${context}`);
    assert.deepEqual(heard, [...heard].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)), `in seq order; ${context}`);
    liveStream.close();
    awayStream?.close();
    await applying;
    await awayApplying;
  });
});
