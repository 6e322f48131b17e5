// The heartbeat watchdog against a real chat-server beating every second:
// a server frozen with SIGSTOP keeps its connections open and says
// nothing, as a hung server or a dead network would. The client must take
// the silence for a dead stream, reconnect, and once the server is back,
// have every message (and every other room event) once.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import { cursorsAt } from "../src/index.js";
import { newUser, Recorder, startServer, type Server } from "./helpers.js";

let server: Server;
before(async () => {
  server = await startServer(["--heartbeat-interval", "1s"]);
});
after(async () => {
  await server?.stop();
});

describe("the heartbeat watchdog", { timeout: 60_000 }, () => {
  test("a ChatStream learns the interval from ready and hears a heartbeat within it", async () => {
    const alice = await newUser(server.address, "alice");
    const stream = alice.chatStream();
    const r = new Recorder(stream);
    const ready = await stream.ready;
    const opened = Date.now();
    await r.until("a heartbeat", () => r.of("pong").some((p) => p.nonce === 0n), 5_000);

    assert.equal(ready.heartbeatInterval?.seconds, 1n);
    assert.equal(stream.heartbeatIntervalMs, 1_000);
    assert.ok(Date.now() - opened < 1_500, `the first heartbeat came ${Date.now() - opened} ms after ready`);
    stream.close();
    assert.equal(await stream.done, undefined);
    assert.equal(stream.stalled, false);
  });

  test("a frozen server is noticed, and after the thaw every message arrives once", async () => {
    const alice = await newUser(server.address, "alice");
    const bob = await newUser(server.address, "bob");
    const room = await alice.createRoom(`frozen-${Date.now()}`);
    const joinSeq = (await bob.joinRoom(room.id)).lastSeq;
    const live = bob.resumingStream({ cursors: cursorsAt(await bob.listRooms({ joinedOnly: true })) });
    const r = new Recorder(live);
    await r.until("ready", () => r.of("ready").length === 1);
    assert.equal(live.heartbeatIntervalMs, 1_000);
    assert.equal(live.state, "live");
    await alice.send(room.id, "before", "k-before");
    await r.until("before", () => r.of("message").length === 1);

    // Longer than the watchdog's two intervals and a second; alice's send
    // waits for the thaw.
    server.signal("SIGSTOP");
    const during = alice.send(room.id, "while frozen", "k-during");
    await sleep(4_500);
    const whileFrozen = { stalls: live.stalls, state: live.state, connections: live.connections };
    server.signal("SIGCONT");
    await during;
    await alice.send(room.id, "after", "k-after");
    await r.until("after", () => r.of("message").some((m) => m.text === "after"), 20_000);

    assert.ok(whileFrozen.stalls >= 1, `the watchdog gave the silent stream up: ${JSON.stringify(whileFrozen)}`);
    assert.equal(whileFrozen.state, "connecting", "it was reconnecting while the server was frozen");
    assert.ok(whileFrozen.connections >= 2);
    assert.equal(live.state, "live");
    assert.ok(r.of("ready").length >= 2, "a new stream said ready after the thaw");
    // Bob's join took a seq of the room's log before them.
    assert.deepEqual(
      r.of("message").map((m) => [m.text, m.seq]),
      [
        ["before", joinSeq + 1n],
        ["while frozen", joinSeq + 2n],
        ["after", joinSeq + 3n],
      ],
    );
    assert.equal(live.cursors.get(room.id), joinSeq + 3n);
    live.close();
    assert.equal(await live.done, undefined);
  });

  test("an edit heard before a reconnect is not heard again after it", async () => {
    const alice = await newUser(server.address, "alice");
    const bob = await newUser(server.address, "bob");
    const room = await alice.createRoom(`edited-${Date.now()}`);
    await bob.joinRoom(room.id);
    const live = bob.resumingStream({ cursors: cursorsAt(await bob.listRooms({ joinedOnly: true })) });
    const r = new Recorder(live);
    await r.until("ready", () => r.of("ready").length === 1);
    const first = await alice.send(room.id, "frist", "k-first");
    await r.until("the message", () => r.of("message").length === 1);
    // The edit takes the room's next seq (after the message's), and moves bob's cursor there.
    await alice.chatService.editMessage({ roomId: room.id, messageId: first.id, text: "first" });
    await r.until("the edit", () => r.of("edited").length === 1);
    const editSeq = r.of("edited")[0].seq;
    assert.equal(editSeq, first.seq + 1n, "the edit has a seq of its own");
    assert.equal(live.cursors.get(room.id), editSeq, "the edit's own seq");

    // A silence makes the stream resume from its cursor: after the edit.
    server.signal("SIGSTOP");
    await sleep(4_500);
    server.signal("SIGCONT");
    await alice.send(room.id, "after", "k-after2");
    await r.until("after", () => r.of("message").some((m) => m.text === "after"), 20_000);

    assert.ok(live.stalls >= 1, "the stream was given up and resumed");
    assert.deepEqual(r.of("edited").map((e) => [e.seq, e.message?.text]), [[editSeq, "first"]], "the edit once");
    assert.deepEqual(r.of("message").map((m) => [m.text, m.seq]), [["frist", first.seq], ["after", editSeq + 1n]]);
    live.close();
    assert.equal(await live.done, undefined);
  });

  test("a reaction heard before a reconnect is not heard again after it", async () => {
    const alice = await newUser(server.address, "alice");
    const bob = await newUser(server.address, "bob");
    const room = await alice.createRoom(`reacted-${Date.now()}`);
    await bob.joinRoom(room.id);
    const live = bob.resumingStream({ cursors: cursorsAt(await bob.listRooms({ joinedOnly: true })) });
    const r = new Recorder(live);
    await r.until("ready", () => r.of("ready").length === 1);
    const first = await alice.send(room.id, "lunch?", "k-lunch");
    await r.until("the message", () => r.of("message").length === 1);
    // The reaction takes the room's next seq (after the message's), and moves bob's cursor there.
    await alice.addReaction(room.id, first.id, "👍");
    await r.until("the reaction", () => r.of("reaction").length === 1);
    const reactionSeq = r.of("reaction")[0].seq;
    assert.equal(reactionSeq, first.seq + 1n, "the reaction has a seq of its own");
    assert.equal(live.cursors.get(room.id), reactionSeq, "the reaction's own seq");

    // A silence makes the stream resume from its cursor: after the reaction.
    server.signal("SIGSTOP");
    await sleep(4_500);
    server.signal("SIGCONT");
    await alice.send(room.id, "after", "k-after3");
    await r.until("after", () => r.of("message").some((m) => m.text === "after"), 20_000);

    assert.ok(live.stalls >= 1, "the stream was given up and resumed");
    assert.deepEqual(r.of("reaction").map((e) => [e.seq, e.emoji, e.added]), [[reactionSeq, "👍", true]], "the reaction once");
    assert.deepEqual(r.of("message").map((m) => [m.text, m.seq]), [["lunch?", first.seq], ["after", reactionSeq + 1n]]);
    live.close();
    assert.equal(await live.done, undefined);
  });

  test("a membership change and a room update heard before a reconnect are not heard again after it", async () => {
    const alice = await newUser(server.address, "alice");
    const bob = await newUser(server.address, "bob");
    const carol = await newUser(server.address, "carol");
    const room = await alice.createRoom(`members-${Date.now()}`);
    await bob.joinRoom(room.id);
    const live = bob.resumingStream({ cursors: cursorsAt(await bob.listRooms({ joinedOnly: true })) });
    const r = new Recorder(live);
    await r.until("ready", () => r.of("ready").length === 1);
    // Carol's join and the topic change take seqs of the room's log, and move bob's cursor to them.
    const joined = await carol.joinRoom(room.id);
    await r.until("carol's join", () => r.of("member").length === 1);
    assert.equal(r.of("member")[0].seq, joined.lastSeq);
    await alice.updateRoom(room.id, { topic: "after the join" });
    await r.until("the room update", () => r.of("roomUpdated").length === 1);
    const updateSeq = r.of("roomUpdated")[0].seq;
    assert.ok(updateSeq > joined.lastSeq);
    assert.equal(live.cursors.get(room.id), updateSeq, "the update's own seq");

    // A silence makes the stream resume from its cursor: after the update.
    server.signal("SIGSTOP");
    await sleep(4_500);
    server.signal("SIGCONT");
    const after = await alice.send(room.id, "after", "k-after4");
    await r.until("after", () => r.of("message").some((m) => m.text === "after"), 20_000);

    assert.ok(live.stalls >= 1, "the stream was given up and resumed");
    assert.deepEqual(r.of("member").map((m) => m.seq), [joined.lastSeq], "the join once");
    assert.deepEqual(r.of("roomUpdated").map((u) => u.seq), [updateSeq], "the update once");
    assert.deepEqual(r.of("message").map((m) => [m.text, m.seq]), [["after", after.seq]]);
    live.close();
    assert.equal(await live.done, undefined);
  });
});
