// Test helpers: a real chat-server on a free port with a fresh database, and
// a recorder that reads a stream's events in the background.
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { ChatClient, type ServerEvent } from "../src/index.js";

// dist/test/ -> the client folder
const clientDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
export const serverBin = path.resolve(clientDir, process.env.CHAT_SERVER_BIN ?? "../../target/debug/chat-server");

export interface Server {
  address: string;
  log: () => string;
  /** Sends the server process a signal: SIGSTOP freezes it (its sockets stay open and silent), SIGCONT thaws it. */
  signal: (signal: NodeJS.Signals) => void;
  stop: () => Promise<void>;
}

/** Starts chat-server on 127.0.0.1:0 with a fresh database (and `flags`); resolves once it logs its address. */
export async function startServer(flags: string[] = []): Promise<Server> {
  assert.ok(existsSync(serverBin), `server binary not found at ${serverBin}: run cargo build, or set CHAT_SERVER_BIN`);
  const dir = mkdtempSync(path.join(tmpdir(), "chat-node-"));
  const child: ChildProcess = spawn(
    serverBin,
    // No metrics listener: its fixed port would clash between servers run side by side.
    ["--listen", "127.0.0.1:0", "--metrics-listen", "off", "--database-url", `sqlite://${path.join(dir, "chat.db")}`, ...flags],
    { env: { ...process.env, RUST_LOG: "info" }, stdio: ["ignore", "ignore", "pipe"] },
  );
  let log = "";
  const exited = new Promise<void>((resolve) => child.on("exit", () => resolve()));
  const address = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not report its address:\n${log}`)), 30_000);
    child.stderr!.setEncoding("utf8");
    // Keep draining stderr for the whole run, so the server never blocks on it.
    child.stderr!.on("data", (chunk: string) => {
      log += chunk;
      const m = log.match(/serving gRPC[^\n]*address=(\d+\.\d+\.\d+\.\d+:\d+)/);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    child.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`server exited with ${code}:\n${log}`));
    });
  });
  return {
    address,
    log: () => log,
    signal: (signal) => {
      assert.ok(child.kill(signal), `kill -${signal}`);
    },
    stop: async () => {
      child.kill("SIGCONT");
      child.kill("SIGTERM");
      const killer = setTimeout(() => child.kill("SIGKILL"), 10_000);
      await exited;
      clearTimeout(killer);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

type EventCase = NonNullable<ServerEvent["event"]["case"]>;
type EventValue<K extends EventCase> = Extract<ServerEvent["event"], { case: K }>["value"];

let counter = 0;
/** A fresh registered and logged-in user with a unique name. */
export async function newUser(address: string, prefix: string): Promise<ChatClient> {
  const client = new ChatClient(address);
  const username = `${prefix}_${process.pid}_${++counter}`;
  const user = await client.register(username, "correct horse battery");
  assert.equal(user.username, username);
  await client.login(username, "correct horse battery");
  return client;
}

/** Reads every event of a stream in the background, so a test can wait for one. */
export class Recorder {
  readonly events: ServerEvent[] = [];
  /** Called with each event as it is recorded (e.g. to apply it to a RoomView). */
  onEvent: ((event: ServerEvent) => void) | undefined;
  error: unknown;
  ended = false;
  private wake: (() => void)[] = [];

  constructor(stream: AsyncIterable<ServerEvent>) {
    void (async () => {
      try {
        for await (const event of stream) {
          this.onEvent?.(event);
          this.events.push(event);
          this.notify();
        }
      } catch (e) {
        this.error = e;
      }
      this.ended = true;
      this.notify();
    })();
  }

  private notify(): void {
    for (const w of this.wake.splice(0)) w();
  }

  /** Events of one kind, e.g. "message". */
  of<K extends EventCase>(kind: K): EventValue<K>[] {
    const out: EventValue<K>[] = [];
    for (const e of this.events) if (e.event.case === kind) out.push(e.event.value as EventValue<K>);
    return out;
  }

  /** Waits until `check` holds, failing after `ms` with what was received. */
  async until(what: string, check: () => boolean, ms = 10_000): Promise<void> {
    const deadline = Date.now() + ms;
    while (!check()) {
      const left = deadline - Date.now();
      if (left <= 0 || this.ended) {
        assert.fail(
          `${this.ended ? "stream ended" : "timed out"} waiting for ${what}; error: ${String(this.error)}; got: ${this.events
            .map((e) => e.event.case)
            .join(", ")}`,
        );
      }
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.wake.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }
}
