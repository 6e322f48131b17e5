// ResumingChatStream: a ChatStream that survives disconnections. It keeps
// per-room cursors over every stream it opens, and whenever one ends (the
// server restarted, the network dropped, the stream was too slow) or goes
// silent (its watchdog: no event, heartbeats included, for twice the
// heartbeat interval `ready` told), it opens another resuming from those
// cursors, so its events hold every message once, in order per room.
// After a silence it reconnects over a new connection when it can, since
// the old one is likely dead too.
import { Code, ConnectError, type Client } from "@connectrpc/connect";
import type { ChatService, Message, ServerEvent } from "./gen/chat/v1/chat_pb.js";
import { ChatStream, type Cursors, type SendOptions } from "./chat-stream.js";
import { AsyncQueue } from "./queue.js";

/** The first wait before reconnecting after an error; it doubles up to MAX_BACKOFF_MS. */
const FIRST_BACKOFF_MS = 50;
const MAX_BACKOFF_MS = 2_000;

/** Errors no reconnecting can fix (an expired access token is refreshed instead). */
const FATAL = new Set([
  Code.Unauthenticated,
  Code.PermissionDenied,
  Code.NotFound,
  Code.InvalidArgument,
  Code.FailedPrecondition,
  Code.Unimplemented,
]);

/** A ChatService client, and how to let its connection go when it is done with. */
export interface Connection {
  chatService: Client<typeof ChatService>;
  close(): void;
}

/** What a ResumingChatStream needs of the client that opens it. */
export interface StreamOpener {
  /** The client's own connection. */
  shared(): Connection;
  /** A connection of its own, if the client can make one. */
  fresh(): Connection | undefined;
  /** Refreshes the access token (after "access token expired"). */
  refresh(): Promise<unknown>;
}

export interface ResumingChatStreamOptions {
  /** Rooms to catch up on first; then tracked across reconnections. */
  cursors?: Cursors;
  /** Aborting it closes the stream. */
  signal?: AbortSignal;
}

/**
 * - "connecting": a stream is being opened and has not brought its `ready`.
 * - "live": the current stream has said `ready`.
 * - "waiting": backing off before the next attempt, after an error.
 * - "closed": `close()` was called, or an error no reconnecting fixes.
 */
export type StreamState = "connecting" | "live" | "waiting" | "closed";

export class ResumingChatStream implements AsyncIterable<ServerEvent> {
  /** Per room, the newest seq yielded: where the next stream resumes. */
  readonly cursors: Cursors;
  /** How often the server beats, as the last `ready` said. */
  heartbeatIntervalMs: number | undefined;
  state: StreamState = "connecting";
  /** Streams opened so far. */
  connections = 0;
  /** Streams (or attempts) given up by the watchdog for saying nothing. */
  stalls = 0;
  /** Settles once the stream is over: undefined after `close()`, the error that ended it otherwise. */
  readonly done: Promise<ConnectError | undefined>;

  private readonly down = new AsyncQueue<ServerEvent>();
  private current: ChatStream | undefined;
  private connection: Connection;
  private closed = false;
  private wake: (() => void) | undefined;

  constructor(
    private readonly opener: StreamOpener,
    options: ResumingChatStreamOptions = {},
  ) {
    this.cursors = new Map(options.cursors ?? []);
    this.connection = opener.shared();
    options.signal?.addEventListener("abort", () => this.close(), { once: true });
    this.done = this.run();
  }

  /**
   * Sends on the current stream; resolves once stored. Rejects when there is
   * no live stream or it ends first: retry with the same clientMsgId, which
   * stores nothing twice.
   */
  send(roomId: string, text: string, clientMsgId?: string, options: SendOptions = {}): Promise<Message> {
    if (!this.current || this.state !== "live") {
      return Promise.reject(new ConnectError("not connected; retry with the same client_msg_id", Code.Unavailable));
    }
    return this.current.send(roomId, text, clientMsgId, options);
  }

  /** Tells the room's other members that we are typing (dropped while reconnecting). */
  typing(roomId: string): void {
    if (this.state === "live") this.current?.typing(roomId);
  }

  /** Ends the stream for good. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.state = "closed";
    this.current?.close();
    this.wake?.();
  }

  /** Every server event of every stream, `ready` of each included. One reader at a time. */
  [Symbol.asyncIterator](): AsyncIterator<ServerEvent> {
    return this.down[Symbol.asyncIterator]();
  }

  private async run(): Promise<ConnectError | undefined> {
    let backoff = FIRST_BACKOFF_MS;
    let fatal: ConnectError | undefined;
    while (!this.closed) {
      this.state = "connecting";
      const stream = new ChatStream(this.connection.chatService, {
        cursors: this.cursors,
        heartbeatIntervalMs: this.heartbeatIntervalMs,
      });
      this.current = stream;
      this.connections++;
      try {
        for await (const event of stream) {
          if (this.take(stream, event)) backoff = FIRST_BACKOFF_MS;
        }
      } catch {
        // `done` says why.
      }
      const failure = await stream.done;
      this.current = undefined;
      if (this.closed) break;
      if (stream.stalled) {
        this.stalls++;
        this.reconnectFresh();
        continue;
      }
      if (failure?.code === Code.Unauthenticated && failure.rawMessage.includes("access token expired")) {
        try {
          await this.opener.refresh();
          continue;
        } catch (e) {
          fatal = ConnectError.from(e);
          break;
        }
      }
      if (failure && FATAL.has(failure.code)) {
        fatal = failure;
        break;
      }
      this.state = "waiting";
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, backoff);
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.wake = undefined;
      backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
    }
    this.state = "closed";
    this.closed = true;
    this.connection.close();
    if (fatal) this.down.fail(fatal);
    else this.down.end();
    return fatal;
  }

  /** Passes an event on, once: returns whether it was `ready`. */
  private take(stream: ChatStream, event: ServerEvent): boolean {
    const e = event.event;
    if (e.case === "ready") {
      this.heartbeatIntervalMs = stream.heartbeatIntervalMs;
      this.state = "live";
    }
    const message = e.case === "message" ? e.value : e.case === "sent" ? e.value.message : undefined;
    if (message) {
      const seen = this.cursors.get(message.roomId);
      // The server resumes after each cursor; this only guards the seam. A
      // `sent` goes on whatever its seq: a retried send acknowledges the
      // message first stored.
      if (seen !== undefined && message.seq <= seen) {
        if (e.case === "message") return false;
      } else {
        this.cursors.set(message.roomId, message.seq);
      }
    }
    // Edits, deletions, reactions, membership changes and room updates take
    // seqs of the room's log too; a `read`, `invited` or `profile` has none
    // (a marker, an invitation and a display name are no room events) and
    // always goes on.
    const change =
      e.case === "edited" && e.value.message
        ? { roomId: e.value.message.roomId, seq: e.value.seq }
        : e.case === "deleted" || e.case === "reaction" || e.case === "member"
          ? { roomId: e.value.roomId, seq: e.value.seq }
          : e.case === "roomUpdated" && e.value.room
            ? { roomId: e.value.room.id, seq: e.value.seq }
            : undefined;
    if (change) {
      const seen = this.cursors.get(change.roomId);
      if (seen !== undefined && change.seq <= seen) return false;
      this.cursors.set(change.roomId, change.seq);
    }
    this.down.push(event);
    return e.case === "ready";
  }

  /** After a silence, the connection is likely dead too: a new one, if the client can make it. */
  private reconnectFresh(): void {
    const fresh = this.opener.fresh();
    if (!fresh) return;
    this.connection.close();
    this.connection = fresh;
  }
}
