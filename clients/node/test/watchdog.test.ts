// The heartbeat watchdog against a real chat-server beating every second:
// a server frozen with SIGSTOP keeps its connections open and says
// nothing, as a hung server or a dead network would. The client must take
// the silence for a dead stream, reconnect, and once the server is back,
// have every message once.
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
    await bob.joinRoom(room.id);
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
    assert.deepEqual(
      r.of("message").map((m) => [m.text, m.seq]),
      [
        ["before", 1n],
        ["while frozen", 2n],
        ["after", 3n],
      ],
    );
    assert.equal(live.cursors.get(room.id), 3n);
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
    // The edit takes seq 2 of the room's log, and moves bob's cursor there.
    await alice.chatService.editMessage({ roomId: room.id, messageId: first.id, text: "first" });
    await r.until("the edit", () => r.of("edited").length === 1);
    assert.equal(live.cursors.get(room.id), 2n, "the edit's own seq");

    // A silence makes the stream resume from its cursor: after the edit.
    server.signal("SIGSTOP");
    await sleep(4_500);
    server.signal("SIGCONT");
    await alice.send(room.id, "after", "k-after2");
    await r.until("after", () => r.of("message").some((m) => m.text === "after"), 20_000);

    assert.ok(live.stalls >= 1, "the stream was given up and resumed");
    assert.deepEqual(r.of("edited").map((e) => [e.seq, e.message?.text]), [[2n, "first"]], "the edit once");
    assert.deepEqual(r.of("message").map((m) => [m.text, m.seq]), [["frist", 1n], ["after", 3n]]);
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
    // The reaction takes seq 2 of the room's log, and moves bob's cursor there.
    await alice.addReaction(room.id, first.id, "👍");
    await r.until("the reaction", () => r.of("reaction").length === 1);
    assert.equal(live.cursors.get(room.id), 2n, "the reaction's own seq");

    // A silence makes the stream resume from its cursor: after the reaction.
    server.signal("SIGSTOP");
    await sleep(4_500);
    server.signal("SIGCONT");
    await alice.send(room.id, "after", "k-after3");
    await r.until("after", () => r.of("message").some((m) => m.text === "after"), 20_000);

    assert.ok(live.stalls >= 1, "the stream was given up and resumed");
    assert.deepEqual(r.of("reaction").map((e) => [e.seq, e.emoji, e.added]), [[2n, "👍", true]], "the reaction once");
    assert.deepEqual(r.of("message").map((m) => [m.text, m.seq]), [["lunch?", 1n], ["after", 3n]]);
    live.close();
    assert.equal(await live.done, undefined);
  });
});
