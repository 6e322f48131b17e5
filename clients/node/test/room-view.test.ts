// RoomView applying stream events by the proto's rules, with events built
// by hand (no server): reactions in order of first use, thread counts from
// replies, edits merged, tombstones, quotes, read markers, and every event
// counted once however often a resume brings it.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { MemberChange, MemberRole, MessageSchema, RoomView, ServerEventSchema, previewText, type ServerEvent } from "../src/index.js";

const ROOM = "room-1";
const me = { id: "u-me", username: "me" };
const ann = { id: "u-ann", username: "ann" };
const ben = { id: "u-ben", username: "ben" };

type MessageInit = MessageInitShape<typeof MessageSchema>;
const message = (init: MessageInit): ServerEvent =>
  create(ServerEventSchema, { event: { case: "message", value: { roomId: ROOM, sentAt: timestampFromMs(Number(init.seq) * 1000), ...init } } });
const reaction = (seq: bigint, messageId: string, emoji: string, user: typeof me, added = true): ServerEvent =>
  create(ServerEventSchema, { event: { case: "reaction", value: { seq, roomId: ROOM, messageId, emoji, user, added } } });
const edited = (seq: bigint, init: MessageInit): ServerEvent =>
  create(ServerEventSchema, { event: { case: "edited", value: { seq, message: { roomId: ROOM, ...init } } } });
const deleted = (seq: bigint, messageId: string, by = ann): ServerEvent =>
  create(ServerEventSchema, { event: { case: "deleted", value: { seq, roomId: ROOM, messageId, by } } });
const read = (user: typeof me, lastReadSeq: bigint, roomId = ROOM): ServerEvent =>
  create(ServerEventSchema, { event: { case: "read", value: { roomId, user, lastReadSeq } } });
const member = (seq: bigint, user: typeof me, change: MemberChange, roomId = ROOM): ServerEvent =>
  create(ServerEventSchema, { event: { case: "member", value: { seq, roomId, user, change, role: MemberRole.MEMBER, by: user } } });
const roomUpdated = (seq: bigint, topic: string, roomId = ROOM): ServerEvent =>
  create(ServerEventSchema, { event: { case: "roomUpdated", value: { seq, room: { id: roomId, name: "general", topic }, by: ann } } });
const profile = (user: { id: string; username: string; displayName?: string }): ServerEvent =>
  create(ServerEventSchema, { event: { case: "profile", value: { user } } });
const summary = (view: RoomView, id: string) => view.get(id)!.reactions.map((r) => [r.emoji, r.count, r.reactedByMe]);

describe("RoomView", () => {
  test("reactions: counted per emoji in order of first use, ours marked, an emoji back from zero goes last", () => {
    const view = new RoomView(ROOM, me.id);
    assert.ok(view.apply(message({ id: "m1", seq: 1n, sender: ann, text: "hello" })));
    view.apply(reaction(2n, "m1", "👍", ann));
    view.apply(reaction(3n, "m1", "❤️", me));
    view.apply(reaction(4n, "m1", "👍", me));
    assert.deepEqual(summary(view, "m1"), [
      ["👍", 2, true],
      ["❤️", 1, true],
    ]);
    view.apply(reaction(5n, "m1", "👍", me, false));
    assert.deepEqual(summary(view, "m1"), [
      ["👍", 1, false],
      ["❤️", 1, true],
    ]);
    view.apply(reaction(6n, "m1", "👍", ann, false));
    view.apply(reaction(7n, "m1", "👍", ben));
    assert.deepEqual(summary(view, "m1"), [
      ["❤️", 1, true],
      ["👍", 1, false],
    ]);
    assert.equal(view.seq, 7n);
  });

  test("an event at or below the view's seq (a resume's seam) changes nothing", () => {
    const view = new RoomView(ROOM, me.id);
    view.apply(message({ id: "m1", seq: 1n, sender: ann, text: "hello" }));
    view.apply(reaction(2n, "m1", "👍", ann));
    assert.equal(view.apply(message({ id: "m1", seq: 1n, sender: ann, text: "hello" })), false);
    assert.equal(view.apply(reaction(2n, "m1", "👍", ann)), false);
    assert.deepEqual(summary(view, "m1"), [["👍", 1, false]]);
    assert.deepEqual(view.timeline().map((m) => m.id), ["m1"]);
  });

  test("a seed from History holds aggregates; the events after its seq add to them, those before do not", () => {
    const view = new RoomView(ROOM, me.id, 5n);
    view.seed([
      create(MessageSchema, {
        id: "m1",
        roomId: ROOM,
        seq: 1n,
        sender: ann,
        text: "root",
        threadReplyCount: 2,
        reactions: [{ emoji: "🎉", count: 2, reactedByMe: true }],
      }),
    ]);
    assert.equal(view.apply(reaction(4n, "m1", "🎉", me)), false, "counted by the seed already");
    view.apply(reaction(6n, "m1", "🎉", ben));
    view.apply(message({ id: "r3", seq: 7n, sender: ben, text: "third reply", threadRootId: "m1" }));
    const root = view.get("m1")!;
    assert.deepEqual(summary(view, "m1"), [["🎉", 3, true]]);
    assert.equal(root.threadReplyCount, 3);
    assert.equal(view.seq, 7n);
  });

  test("thread replies: kept out of the timeline, counted on the root with the newest reply's time, tombstones included", () => {
    const view = new RoomView(ROOM, me.id);
    view.apply(message({ id: "root", seq: 1n, sender: ann, text: "a question" }));
    view.apply(message({ id: "r1", seq: 2n, sender: ben, text: "an answer", threadRootId: "root" }));
    view.apply(message({ id: "m2", seq: 3n, sender: ann, text: "meanwhile" }));
    view.apply(deleted(4n, "r1", ben));
    view.apply(message({ id: "r2", seq: 5n, sender: me, text: "another", threadRootId: "root" }));
    assert.deepEqual(view.timeline().map((m) => m.id), ["root", "m2"]);
    assert.deepEqual(view.thread("root").map((m) => [m.id, m.deleted]), [
      ["r1", true],
      ["r2", false],
    ]);
    const root = view.get("root")!;
    assert.equal(root.threadReplyCount, 2);
    assert.equal(root.threadLastReplyAt?.seconds, 5n);
  });

  test("an edit is merged: new text, editedAt and mentions; reactions and thread counts stay; quotes follow it", () => {
    const view = new RoomView(ROOM, me.id);
    view.apply(message({ id: "m1", seq: 1n, sender: ann, text: "teh plan" }));
    view.apply(reaction(2n, "m1", "👀", ben));
    view.apply(message({ id: "r1", seq: 3n, sender: ben, text: "reply", threadRootId: "m1" }));
    view.apply(
      message({ id: "q1", seq: 4n, sender: me, text: "quoting", replyTo: { messageId: "m1", sender: ann, text: "teh plan" } }),
    );
    const long = `the plan, @me: ${"é".repeat(150)}`;
    // On the stream, an edited message carries no aggregates.
    view.apply(edited(5n, { id: "m1", seq: 1n, sender: ann, text: long, editedAt: timestampFromMs(5000), mentions: [me] }));
    const m1 = view.get("m1")!;
    assert.equal(m1.text, long);
    assert.equal(m1.editedAt?.seconds, 5n);
    assert.deepEqual(m1.mentions.map((u) => u.username), ["me"]);
    assert.equal(m1.seq, 1n, "keeps its own seq");
    assert.deepEqual(summary(view, "m1"), [["👀", 1, false]]);
    assert.equal(m1.threadReplyCount, 1);
    const quote = view.get("q1")!.replyTo!;
    assert.equal(quote.text, previewText(long));
    assert.ok(new TextEncoder().encode(quote.text).length <= 200);
    assert.equal(view.seq, 5n);
  });

  test("a deletion leaves a tombstone: no text, reactions or mentions; its quotes say deleted; reactions after it change nothing", () => {
    const view = new RoomView(ROOM, me.id);
    view.apply(message({ id: "m1", seq: 1n, sender: ann, text: "oops @me", mentions: [me] }));
    view.apply(reaction(2n, "m1", "😂", me));
    view.apply(message({ id: "q1", seq: 3n, sender: ben, text: "lol", replyTo: { messageId: "m1", sender: ann, text: "oops @me" } }));
    view.apply(deleted(4n, "m1"));
    const m1 = view.get("m1")!;
    assert.deepEqual([m1.deleted, m1.text, m1.reactions.length, m1.mentions.length, m1.editedAt], [true, "", 0, 0, undefined]);
    assert.deepEqual([view.get("q1")!.replyTo!.deleted, view.get("q1")!.replyTo!.text], [true, ""]);
    assert.ok(view.apply(reaction(5n, "m1", "😂", ben)), "the event is taken (its seq)");
    assert.equal(view.get("m1")!.reactions.length, 0);
    assert.equal(view.seq, 5n);
  });

  test("read markers: ours moves forward only, receipts of others are kept, no seq is taken", () => {
    const view = new RoomView(ROOM, me.id, 0n, 0n);
    view.apply(message({ id: "m1", seq: 1n, sender: ann, text: "one" }));
    view.apply(message({ id: "m2", seq: 2n, sender: ann, text: "two" }));
    view.apply(message({ id: "m3", seq: 3n, sender: me, text: "mine" }));
    assert.equal(view.unreadCount(), 2);
    assert.ok(view.apply(read(me, 1n)));
    assert.equal(view.lastReadSeq, 1n);
    assert.equal(view.unreadCount(), 1);
    view.apply(read(me, 0n));
    assert.equal(view.lastReadSeq, 1n, "never backwards");
    view.apply(read(ann, 3n));
    assert.equal(view.readers.get(ann.id), 3n);
    assert.equal(view.lastReadSeq, 1n);
    assert.equal(view.apply(read(ann, 9n, "another-room")), false);
    assert.equal(view.seq, 3n);
  });

  test("membership changes and room updates take seqs: the view moves to them, once, and holds no message for them", () => {
    const view = new RoomView(ROOM, me.id);
    assert.ok(view.apply(member(1n, ben, MemberChange.JOINED)));
    assert.equal(view.seq, 1n);
    view.apply(message({ id: "m1", seq: 2n, sender: ann, text: "hi ben" }));
    assert.ok(view.apply(roomUpdated(3n, "plans")));
    assert.equal(view.seq, 3n);
    assert.ok(view.apply(member(4n, ben, MemberChange.LEFT)));
    assert.equal(view.seq, 4n);
    // A resume's seam brings them again: nothing changes.
    assert.equal(view.apply(member(4n, ben, MemberChange.LEFT)), false);
    assert.equal(view.apply(roomUpdated(3n, "plans")), false);
    assert.equal(view.apply(message({ id: "m1", seq: 2n, sender: ann, text: "hi ben" })), false);
    // Those of another room neither.
    assert.equal(view.apply(member(9n, ben, MemberChange.JOINED, "other")), false);
    assert.equal(view.apply(roomUpdated(9n, "elsewhere", "other")), false);
    // An invitation is no room event: no seq.
    assert.equal(view.apply(create(ServerEventSchema, { event: { case: "invited", value: { room: { id: ROOM }, by: ann } } })), false);
    assert.equal(view.seq, 4n);
    assert.deepEqual(view.timeline().map((m) => m.id), ["m1"]);
    view.apply(message({ id: "m2", seq: 5n, sender: ann, text: "bye" }));
    assert.deepEqual([view.seq, view.timeline().length], [5n, 2]);
  });

  test("a profile change renames the user's held senders, mentions and quoted senders; it takes no seq", () => {
    const view = new RoomView(ROOM, me.id);
    view.apply(message({ id: "m1", seq: 1n, sender: ann, text: "hello" }));
    view.apply(message({ id: "m2", seq: 2n, sender: ben, text: "hi @ann", mentions: [ann], replyTo: { messageId: "m1", sender: ann, text: "hello" } }));
    view.apply(message({ id: "m3", seq: 3n, sender: ben, text: "in a thread", threadRootId: "m1" }));
    assert.ok(view.apply(profile({ ...ann, displayName: "Ann Arbor" })));
    assert.equal(view.get("m1")!.sender?.displayName, "Ann Arbor");
    assert.deepEqual(view.get("m2")!.mentions.map((u) => [u.id, u.displayName]), [[ann.id, "Ann Arbor"]]);
    assert.equal(view.get("m2")!.replyTo?.sender?.displayName, "Ann Arbor");
    assert.deepEqual([view.get("m2")!.sender?.displayName, view.get("m3")!.sender?.displayName], ["", ""], "ben is not renamed");
    assert.equal(view.seq, 3n, "no seq is taken");
    // Cleared, the username shows again; a user with nothing held changes nothing.
    assert.ok(view.apply(profile(ann)));
    assert.equal(view.get("m1")!.sender?.displayName, "");
    assert.equal(view.apply(profile({ id: "u-zed", username: "zed", displayName: "Zed" })), false);
  });

  test("events of other rooms change nothing; a resync marks the view stale", () => {
    const view = new RoomView(ROOM, me.id);
    assert.equal(view.apply(message({ id: "x", seq: 1n, roomId: "other", sender: ann, text: "elsewhere" })), false);
    assert.equal(view.timeline().length, 0);
    assert.equal(view.stale, false);
    view.apply(create(ServerEventSchema, { event: { case: "resync", value: { roomId: ROOM, fromSeq: 1500n } } }));
    assert.equal(view.stale, true);
  });

  test("previewText cuts at 200 bytes on a character boundary", () => {
    assert.equal(previewText("short"), "short");
    const cut = previewText("€".repeat(100)); // 3 bytes each
    assert.equal(cut, "€".repeat(66));
    assert.equal(previewText("a".repeat(250)), "a".repeat(200));
  });
});
