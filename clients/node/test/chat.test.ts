// The Node client against a real chat-server: ChatStream both ways, typing,
// acknowledgements, resume after a reconnect, the unary calls, and the
// example program (conversations: conversation.test.ts).
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Code, ConnectError } from "@connectrpc/connect";
import { ChatClient, cursorsAt } from "../src/index.js";
import { newUser, Recorder, startServer, type Server } from "./helpers.js";

let server: Server;
before(async () => {
  // The resume test sends more at once than the default send rate allows.
  server = await startServer(["--send-rate", "1000", "--send-burst", "1000"]);
});
after(async () => {
  await server?.stop();
});

describe("ChatStream", { timeout: 60_000 }, () => {
  test("two users chat both ways; typing and sent reach the right stream", async () => {
    const alice = await newUser(server.address, "alice");
    const bob = await newUser(server.address, "bob");
    const room = await alice.createRoom(`both-ways-${Date.now()}`);
    // Bob's join is an event of the room's log: it takes the room's first seq.
    const joinSeq = (await bob.joinRoom(room.id)).lastSeq;
    assert.ok(joinSeq > 0n, "a join takes a seq");

    const aliceStream = alice.chatStream();
    const bobStream = bob.chatStream();
    const a = new Recorder(aliceStream);
    const b = new Recorder(bobStream);
    const aliceReady = await aliceStream.ready;
    assert.equal(aliceReady.user?.username, alice.session!.user.username);
    await bobStream.ready;
    // Bob's stream is live once a ping went round (the resume was its first event).
    await bobStream.ping();
    await aliceStream.ping();

    aliceStream.typing(room.id);
    await b.until("alice typing", () =>
      b.of("typing").some((t) => t.roomId === room.id && t.user?.username === alice.session!.user.username),
    );

    const sent = await aliceStream.send(room.id, "hi bob", "alice-1");
    assert.equal(sent.text, "hi bob");
    assert.equal(sent.seq, joinSeq + 1n, "the message after the join");
    assert.equal(sent.clientMsgId, "alice-1");
    await a.until("alice's sent", () => a.of("sent").length === 1);
    const ack = a.of("sent")[0];
    assert.equal(ack.clientMsgId, "alice-1");
    assert.equal(ack.message?.id, sent.id);
    await b.until("hi bob", () => b.of("message").some((m) => m.text === "hi bob"));
    const got = b.of("message").find((m) => m.text === "hi bob")!;
    assert.equal(got.sender?.username, alice.session!.user.username);
    assert.equal(got.seq, sent.seq);

    bobStream.typing(room.id);
    const reply = await bobStream.send(room.id, "hi alice", "bob-1");
    assert.equal(reply.seq, sent.seq + 1n);
    await a.until("alice typing from bob then hi alice", () => a.of("message").some((m) => m.text === "hi alice"));
    assert.ok(a.of("typing").some((t) => t.user?.username === bob.session!.user.username), "bob's typing reached alice");
    // The sender's own stream gets `sent`, never `message`, for its sends.
    assert.deepEqual(a.of("message").map((m) => m.text), ["hi alice"]);
    await b.until("bob's sent", () => b.of("sent").length === 1);
    assert.deepEqual(b.of("message").map((m) => m.text), ["hi bob"]);
    assert.deepEqual([...aliceStream.cursors], [[room.id, reply.seq]]);

    aliceStream.close();
    bobStream.close();
    assert.equal(await aliceStream.done, undefined);
    assert.equal(await bobStream.done, undefined);
  });

  test("a failed send rejects with the server's error; the stream goes on", async () => {
    const carol = await newUser(server.address, "carol");
    const room = await carol.createRoom(`errors-${Date.now()}`);
    const stream = carol.chatStream();
    await stream.ready;
    await assert.rejects(stream.send(room.id, "   ", "blank-1"), (e: unknown) => {
      assert.ok(e instanceof ConnectError);
      assert.equal(e.code, Code.InvalidArgument);
      return true;
    });
    const ok = await stream.send(room.id, "still here", "ok-1");
    assert.equal(ok.seq, 1n);
    stream.close();
  });

  test("resume after a reconnect gets every missed message exactly once, in order", async () => {
    const alice = await newUser(server.address, "alice");
    const bob = await newUser(server.address, "bob");
    const room = await alice.createRoom(`resume-${Date.now()}`);
    // Bob's join takes a seq of the room's log; the messages follow it.
    const joinSeq = (await bob.joinRoom(room.id)).lastSeq;

    const first = alice.chatStream();
    const a1 = new Recorder(first);
    await first.ready;
    await first.ping();
    await bob.send(room.id, "m1");
    await a1.until("m1", () => a1.of("message").length === 1);
    const m1 = a1.of("message")[0];
    assert.ok(m1.seq > joinSeq, "m1 comes after bob's join");
    assert.deepEqual([...first.cursors], [[room.id, m1.seq]]);
    first.close();
    await first.done;

    // Missed while away.
    for (let i = 2; i <= 5; i++) await bob.send(room.id, `m${i}`);
    // And more sent while alice reconnects: the seam between catch-up and live.
    const during = (async () => {
      for (let i = 6; i <= 25; i++) await bob.send(room.id, `m${i}`);
    })();
    const second = alice.chatStream({ cursors: first.cursors });
    const a2 = new Recorder(second);
    await during;
    await a2.until("m2..m25", () => a2.of("message").length >= 24);
    await second.ping(); // anything else would have arrived before the pong
    const seqs = a2.of("message").map((m) => m.seq);
    assert.deepEqual(seqs, Array.from({ length: 24 }, (_, i) => m1.seq + BigInt(i + 1)), "m2..m25, each once, in order");
    assert.deepEqual(a2.of("message").map((m) => m.text), Array.from({ length: 24 }, (_, i) => `m${i + 2}`));
    assert.equal(second.cursors.get(room.id), seqs[seqs.length - 1]);
    second.close();
  });

  test("cursors from listRooms catch up on what was sent before the stream opened", async () => {
    const alice = await newUser(server.address, "alice");
    const room = await alice.createRoom(`fresh-${Date.now()}`);
    await alice.send(room.id, "old");
    const cursors = cursorsAt(await alice.listRooms());
    assert.equal(cursors.get(room.id), 1n);
    await alice.send(room.id, "while connecting");
    const stream = alice.chatStream({ cursors });
    const r = new Recorder(stream);
    await stream.ready;
    await stream.send(room.id, "new", "new-1");
    await stream.ping();
    assert.deepEqual(r.of("message").map((m) => m.text), ["while connecting"]);
    assert.deepEqual(r.of("sent").map((s) => s.message?.text), ["new"]);
    assert.equal(stream.cursors.get(room.id), 3n);
    stream.close();
  });
});

describe("unary calls", { timeout: 30_000 }, () => {
  test("rooms, idempotent send, history, online users", async () => {
    const alice = await newUser(server.address, "alice");
    const bob = await newUser(server.address, "bob");
    const name = `unary-${Date.now()}`;
    const room = await alice.createRoom(name);
    assert.equal(room.name, name);
    assert.ok(room.joined);
    const seen = (await bob.listRooms()).find((r) => r.name === name);
    assert.ok(seen && !seen.joined);
    const joined = await bob.joinRoom(room.id);
    assert.ok(joined.joined);
    // Bob's join is the room's first event: the messages follow it.
    const joinSeq = joined.lastSeq;
    assert.ok(joinSeq > 0n, "a join takes a seq");

    const m1 = await alice.send(room.id, "once", "key-1");
    const again = await alice.send(room.id, "once", "key-1");
    assert.equal(again.id, m1.id, "a retry with the same client_msg_id stores nothing new");
    await bob.send(room.id, "twice");
    const history = await bob.history(room.id);
    assert.deepEqual(history.messages.map((m) => [m.seq, m.text]), [
      [joinSeq + 1n, "once"],
      [joinSeq + 2n, "twice"],
    ]);
    const older = await bob.history(room.id, { beforeSeq: joinSeq + 2n, limit: 1 });
    assert.deepEqual(older.messages.map((m) => m.text), ["once"]);

    const stream = bob.chatStream();
    await stream.ready;
    const online = await alice.onlineUsers(room.id);
    assert.ok(online.some((u) => u.username === bob.session!.user.username));
    stream.close();

    const direct = await alice.openDirectRoom(bob.session!.user.username);
    assert.equal((await bob.openDirectRoom(alice.session!.user.username)).id, direct.id);
    await alice.refresh();
    assert.ok((await alice.listRooms()).length >= 2, "calls work with the refreshed token");
  });
});

describe("rooms, a page at a time", { timeout: 30_000 }, () => {
  test("listRooms follows every page and returns each room once", async () => {
    const alice = await newUser(server.address, "alice");
    const bob = await newUser(server.address, "bob");
    const stamp = Date.now();
    const created = [];
    for (let i = 0; i < 7; i++) created.push(await alice.createRoom(`paged-${stamp}-${i}`));
    for (const room of created.filter((_, i) => i % 2 === 1)) await bob.joinRoom(room.id);
    const direct = await alice.openDirectRoom(bob.session!.user.username);

    // Pages of three: the rooms of earlier tests, then ours, in order of creation.
    const paged = (await alice.listRooms({ pageSize: 3 })).map((r) => r.id);
    assert.equal(new Set(paged).size, paged.length, "no room twice");
    assert.deepEqual(paged.slice(-8), [...created.map((r) => r.id), direct.id]);
    assert.deepEqual((await alice.listRooms()).map((r) => r.id), paged, "the default page size gives the same");
    const oneByOne = [];
    for await (const room of alice.rooms({ pageSize: 1 })) oneByOne.push(room.id);
    assert.deepEqual(oneByOne, paged);

    const mine = await bob.listRooms({ pageSize: 2, joinedOnly: true });
    assert.deepEqual(
      mine.map((r) => r.id),
      [...created.filter((_, i) => i % 2 === 1).map((r) => r.id), direct.id],
    );
    assert.ok(mine.every((r) => r.joined));
    assert.deepEqual([...cursorsAt(mine).keys()], mine.map((r) => r.id));
  });
});

describe("account security", { timeout: 30_000 }, () => {
  test("changePassword: the new password logs in, the old one fails, other sessions end", async () => {
    const alice = await newUser(server.address, "alice");
    const username = alice.session!.user.username;
    const phone = new ChatClient(server.address);
    await phone.login(username, "correct horse battery");
    await phone.listRooms({ joinedOnly: true });

    await assert.rejects(alice.changePassword("not the password", "a brand new secret"), (e: unknown) => {
      assert.ok(e instanceof ConnectError);
      assert.equal(e.code, Code.PermissionDenied);
      assert.equal(e.rawMessage, "wrong password");
      return true;
    });
    await alice.changePassword("correct horse battery", "a brand new secret");

    const still = await alice.createRoom(`after-change-${Date.now()}`);
    assert.ok(still.joined, "this session goes on");
    await assert.rejects(phone.listRooms(), (e: unknown) => {
      assert.ok(e instanceof ConnectError);
      assert.equal(e.code, Code.Unauthenticated);
      return true;
    });
    await assert.rejects(new ChatClient(server.address).login(username, "correct horse battery"), (e: unknown) => {
      assert.ok(e instanceof ConnectError);
      assert.equal(e.code, Code.Unauthenticated);
      return true;
    });
    const fresh = await new ChatClient(server.address).login(username, "a brand new secret");
    assert.equal(fresh.user.username, username);
  });

  test("revokeOtherSessions ends the others, says how many, and keeps this one", async () => {
    const alice = await newUser(server.address, "alice");
    const username = alice.session!.user.username;
    const others = [new ChatClient(server.address), new ChatClient(server.address)];
    for (const other of others) await other.login(username, "correct horse battery");
    const stream = others[0].chatStream();
    await stream.ready;

    assert.equal(await alice.revokeOtherSessions(), 2);
    const ended = await stream.done;
    assert.ok(ended instanceof ConnectError, "the other session's stream ends with an error");
    assert.equal(ended.code, Code.Unauthenticated);
    for (const other of others) {
      await assert.rejects(other.listRooms(), (e: unknown) => e instanceof ConnectError && e.code === Code.Unauthenticated);
    }
    assert.ok((await alice.createRoom(`after-revoke-${Date.now()}`)).joined, "this session goes on");
    assert.equal(await alice.revokeOtherSessions(), 0);
  });
});

describe("examples/chat", { timeout: 60_000 }, () => {
  test("logs in, joins a room, chats over ChatStream and shows reactions and display names", async () => {
    const bob = await newUser(server.address, "bob");
    const roomName = `example-${Date.now()}`;
    const room = await bob.createRoom(roomName);
    const bobStream = bob.chatStream();
    const b = new Recorder(bobStream);
    await bobStream.ready;

    const username = `example_${process.pid}`;
    const example = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../examples/chat.js");
    const child = spawn(
      process.execPath,
      [example, "--addr", server.address, "--user", username, "--password", "example password", "--room", roomName, "--register"],
      { stdio: ["pipe", "pipe", "pipe"] },
    );
    let out = "";
    let err = "";
    child.stdout.setEncoding("utf8").on("data", (c: string) => (out += c));
    child.stderr.setEncoding("utf8").on("data", (c: string) => (err += c));
    const exited = new Promise<number | null>((resolve) => child.on("exit", resolve));

    // Once the example is in the room (its presence reaches bob), bob speaks.
    await b.until("the example online", () => b.of("presence").some((p) => p.online && p.user?.username === username), 20_000);
    await bobStream.send(room.id, "hello example");
    const deadline = Date.now() + 10_000;
    while (!out.includes("hello example") && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    assert.match(out, new RegExp(`<${bob.session!.user.username}> hello example`), `example output:\n${out}\n${err}`);

    child.stdin.write("hello from the example\n");
    await b.until("the example's line", () => b.of("message").some((m) => m.text === "hello from the example"));
    // A reaction to it shows in the example as it happens.
    const line = b.of("message").find((m) => m.text === "hello from the example")!;
    await bob.addReaction(room.id, line.id, "👍");
    const shown = Date.now() + 10_000;
    while (!out.includes("reacted 👍") && Date.now() < shown) await new Promise((r) => setTimeout(r, 50));
    assert.match(out, new RegExp(`\\* ${bob.session!.user.username} reacted 👍`), `example output:\n${out}\n${err}`);
    // Membership changes and room updates show as they happen.
    const carol = await newUser(server.address, "carol");
    await carol.joinRoom(room.id);
    await bob.updateRoom(room.id, { topic: "examples" });
    const joinedShown = Date.now() + 10_000;
    while (!out.includes("topic: examples") && Date.now() < joinedShown) await new Promise((r) => setTimeout(r, 50));
    assert.match(out, new RegExp(`\\* ${carol.session!.user.username} joined\n`), `example output:\n${out}\n${err}`);
    assert.match(out, new RegExp(`\\* ${bob.session!.user.username} updated the room: #${roomName}, topic: examples`), `example output:\n${out}\n${err}`);
    // A display name shows instead of the username, from the profile event on.
    await bob.updateProfile({ displayName: "Bobby Tables" });
    await bob.send(room.id, "by another name");
    const renamed = Date.now() + 10_000;
    while (!out.includes("by another name") && Date.now() < renamed) await new Promise((r) => setTimeout(r, 50));
    assert.match(out, new RegExp(`\\* ${bob.session!.user.username} is now shown as Bobby Tables\n`), `example output:\n${out}\n${err}`);
    assert.match(out, /<Bobby Tables> by another name\n/, `example output:\n${out}\n${err}`);
    child.stdin.end();
    assert.equal(await exited, 0, `example failed:\n${out}\n${err}`);
    // The example's join, bob's message and the example's line each took a seq: it prints its line's.
    assert.match(out, new RegExp(`sent #${line.seq}: hello from the example`));
    bobStream.close();
  });
});
