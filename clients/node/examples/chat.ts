// A terminal chat over ChatStream: logs in, joins a room (creating it if
// needed), prints the room's recent messages and every live event, and sends
// each line typed on stdin. Ends when stdin does (Ctrl-D), once every line
// sent is acknowledged.
//
//   node dist/examples/chat.js --addr 127.0.0.1:50051 --user alice --password 'correct horse battery' --room general [--register]
import { createInterface } from "node:readline";
import { parseArgs } from "node:util";
import { Code, ConnectError } from "@connectrpc/connect";
import { ChatClient, cursorsAt, type Message } from "../src/index.js";

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

const rooms = await client.listRooms();
const found = rooms.find((r) => r.name === args.room);
const room = found ? await client.joinRoom(found.id) : await client.createRoom(args.room!);
const show = (m: Message) => console.log(`<${m.sender?.username}> ${m.text}`);
for (const m of (await client.history(room.id, { limit: 10 })).messages) show(m);

// Start at the newest message of every room we are in: only new ones follow.
const stream = client.chatStream({ cursors: cursorsAt(await client.listRooms()) });
const ready = await stream.ready;
console.log(`* ${user.username} in #${room.name}; online: ${ready.onlineUsers.map((u) => u.username).join(", ") || "nobody else"}`);

const printing = (async () => {
  for await (const { event } of stream) {
    switch (event.case) {
      case "message":
        if (event.value.roomId === room.id) show(event.value);
        break;
      case "sent":
        console.log(`sent #${event.value.message?.seq}: ${event.value.message?.text}`);
        break;
      case "presence":
        console.log(`* ${event.value.user?.username} is ${event.value.online ? "online" : "offline"}`);
        break;
      case "typing":
        if (event.value.roomId === room.id) console.log(`* ${event.value.user?.username} is typing`);
        break;
      case "error":
        console.log(`! ${event.value.message}`);
        break;
      default: // pong (heartbeats), resync, ready
    }
  }
})();

const sends: Promise<unknown>[] = [];
for await (const line of createInterface({ input: process.stdin })) {
  if (line.trim() === "") continue;
  stream.typing(room.id);
  sends.push(stream.send(room.id, line).catch((e) => console.log(`! not sent: ${ConnectError.from(e).message}`)));
}
await Promise.all(sends);
stream.close();
await printing.catch((e) => console.error(`stream ended: ${ConnectError.from(e).message}`));
const failed = await stream.done;
process.exitCode = failed ? 1 : 0;
