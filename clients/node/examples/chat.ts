// A terminal chat over ChatStream: logs in, joins a room (creating it if
// needed), prints the room's recent messages and every live event (edits,
// deletions, reactions, replies, thread replies, read receipts, membership
// changes, room updates, invitations and profile changes included), and
// sends each line typed on stdin. People are shown by their display name
// where they have one, else by their username. Ends when stdin does
// (Ctrl-D), once every line sent is acknowledged. Everything from the
// server is printed through escapeControls, so control and bidi characters
// in it cannot act on the terminal.
//
//   node dist/examples/chat.js --addr 127.0.0.1:50051 --user alice --password 'correct horse battery' --room general [--register]
import { createInterface } from "node:readline";
import { parseArgs } from "node:util";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  ChatClient,
  cursorsAt,
  escapeControls as esc,
  MemberChange,
  MemberRole,
  type Message,
  type Room,
  type ServerEvent_MemberEvent,
} from "../src/index.js";

const { values: args } = parseArgs({
  options: {
    addr: { type: "string", default: process.env.CHAT_ADDR ?? "127.0.0.1:50051" },
    user: { type: "string" },
    password: { type: "string", default: process.env.CHAT_PASSWORD },
    room: { type: "string", default: "general" },
    register: { type: "boolean", default: false },
  },
});
if (!args.user || !args.password) {
  console.error("usage: chat --user NAME --password PASS [--addr HOST:PORT] [--room NAME] [--register]");
  process.exit(2);
}

const client = new ChatClient(args.addr!);
if (args.register) {
  try {
    await client.register(args.user, args.password);
  } catch (e) {
    if (ConnectError.from(e).code !== Code.AlreadyExists) throw e;
  }
}
const { user } = await client.login(args.user, args.password);

let found: Room | undefined;
for await (const r of client.rooms()) {
  if (r.name === args.room) {
    found = r;
    break;
  }
}
const room = found ? await client.joinRoom(found.id) : await client.createRoom(args.room!);
/** A user as shown: the display name where set (the proto says so), else the username. */
const who = (u: { username: string; displayName: string } | undefined) => esc(u?.displayName || u?.username || "?");
const show = (m: Message) => {
  const thread = m.threadRootId ? "  ↳ " : "";
  const quote = m.replyTo ? ` (re <${who(m.replyTo.sender)}> ${m.replyTo.deleted ? "[deleted]" : esc(m.replyTo.text)})` : "";
  const text = m.deleted ? "[deleted]" : esc(m.text);
  const reactions = m.reactions.map((r) => ` ${esc(r.emoji)}${r.count}`).join("");
  const replies = m.threadReplyCount ? ` [${m.threadReplyCount} in thread]` : "";
  console.log(`${thread}<${who(m.sender)}> ${text}${m.editedAt ? " (edited)" : ""}${quote}${reactions}${replies}`);
};
for (const m of (await client.history(room.id, { limit: 10 })).messages) show(m);

// Start at the newest message of every room we are in: only new ones follow.
const stream = client.chatStream({ cursors: cursorsAt(await client.listRooms({ joinedOnly: true })) });
const ready = await stream.ready;
console.log(`* ${who(user)} in #${esc(room.name)}; online: ${ready.onlineUsers.map(who).join(", ") || "nobody else"}`);

/** What a `member` event says happened, e.g. "bob was removed by alice (spam)". */
const membership = (m: ServerEvent_MemberEvent): string => {
  const by = m.by && m.by.id !== m.user?.id ? ` by ${who(m.by)}` : "";
  const reason = m.reason ? ` (${esc(m.reason)})` : "";
  switch (m.change) {
    case MemberChange.JOINED:
      return `${who(m.user)} joined`;
    case MemberChange.LEFT:
      return `${who(m.user)} left`;
    case MemberChange.INVITED:
      return `${who(m.user)} was invited${by}`;
    case MemberChange.REMOVED:
      return `${who(m.user)} was removed${by}${reason}`;
    case MemberChange.BANNED:
      return `${who(m.user)} was banned${by}${reason}`;
    case MemberChange.UNBANNED:
      return `${who(m.user)} was unbanned${by}`;
    case MemberChange.ROLE_CHANGED:
      return `${who(m.user)} is now ${(MemberRole[m.role] ?? "?").toLowerCase()}${by}`;
    default:
      return `${who(m.user)}: a membership change`;
  }
};

const printing = (async () => {
  for await (const { event } of stream) {
    switch (event.case) {
      case "message":
        if (event.value.roomId === room.id) show(event.value);
        break;
      case "sent":
        console.log(`sent #${event.value.message?.seq}: ${esc(event.value.message?.text ?? "")}`);
        break;
      case "edited":
        if (event.value.message?.roomId === room.id) console.log(`* edited: <${who(event.value.message.sender)}> ${esc(event.value.message.text)}`);
        break;
      case "deleted":
        if (event.value.roomId === room.id) console.log(`* ${who(event.value.by)} deleted a message`);
        break;
      case "reaction":
        if (event.value.roomId === room.id) {
          console.log(`* ${who(event.value.user)} ${event.value.added ? "reacted" : "took back"} ${esc(event.value.emoji)}`);
        }
        break;
      case "read":
        if (event.value.roomId === room.id && event.value.user?.id !== user.id) {
          console.log(`* ${who(event.value.user)} has read up to #${event.value.lastReadSeq}`);
        }
        break;
      case "member":
        if (event.value.roomId === room.id) console.log(`* ${membership(event.value)}`);
        break;
      case "roomUpdated":
        if (event.value.room?.id === room.id) {
          const r = event.value.room;
          console.log(`* ${who(event.value.by)} updated the room: #${esc(r.name)}${r.topic ? `, topic: ${esc(r.topic)}` : ""}`);
        }
        break;
      case "invited":
        console.log(`* ${who(event.value.by)} invited you to #${esc(event.value.room?.name ?? "?")}`);
        break;
      case "profile": {
        const u = event.value.user;
        console.log(u?.displayName ? `* ${esc(u.username)} is now shown as ${esc(u.displayName)}` : `* ${esc(u?.username ?? "?")} is shown by username again`);
        break;
      }
      case "presence":
        console.log(`* ${who(event.value.user)} is ${event.value.online ? "online" : "offline"}`);
        break;
      case "typing":
        if (event.value.roomId === room.id) console.log(`* ${who(event.value.user)} is typing`);
        break;
      case "error":
        console.log(`! ${esc(event.value.message)}`);
        break;
      default: // pong (heartbeats), resync, ready
    }
  }
})();

const sends: Promise<unknown>[] = [];
for await (const line of createInterface({ input: process.stdin })) {
  if (line.trim() === "") continue;
  stream.typing(room.id);
  sends.push(stream.send(room.id, line).catch((e) => console.log(`! not sent: ${esc(ConnectError.from(e).message)}`)));
}
await Promise.all(sends);
stream.close();
await printing.catch((e) => console.error(`stream ended: ${esc(ConnectError.from(e).message)}`));
const failed = await stream.done;
process.exitCode = failed ? 1 : 0;
