// A ChatStream session: the bidirectional stream that native clients chat on.
// Events come down through an async iterator; send/typing/ping go up. The
// wrapper keeps per-room cursors (the newest seq seen in each room), so a
// dropped stream can be reopened with `client.chatStream({ cursors })` and
// gets every missed message once, in order, then the live ones
// (`ResumingChatStream`, in resuming-stream.ts, does that by itself).
//
// A connection can die without closing (a laptop sleeps, a NAT forgets it,
// the server hangs): the stream just goes quiet. The server sends a
// heartbeat every `ready.heartbeatInterval`, so each ChatStream keeps a
// watchdog: no event at all for twice that interval (and a margin), and the
// stream is ended as dead, with `stalled` set.
import { randomUUID } from "node:crypto";
import { Code, ConnectError, type Client } from "@connectrpc/connect";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { durationMs } from "@bufbuild/protobuf/wkt";
import {
  ChatService,
  type ClientEventSchema,
  type Message,
  type ServerEvent,
  type ServerEvent_Ready,
} from "./gen/chat/v1/chat_pb.js";
import { AsyncQueue } from "./queue.js";

/** Per room: the seq of the newest room event (message, edit, deletion, reaction, membership change, room update) the client has. */
export type Cursors = Map<string, bigint>;

/** What a send may carry besides its text. */
export interface SendOptions {
  /** A message of the same room that the new one quotes. */
  replyToId?: string;
  /** A top-level message of the same room: the new one is a reply in its thread. */
  threadRootId?: string;
}

/** The heartbeat interval assumed until `ready` tells it, and of a server that does not (older ones beat every 30 s). */
export const UNTOLD_HEARTBEAT_MS = 30_000;
/** Added to two heartbeat intervals before a silent stream counts as dead: room for a beat that comes late. */
export const WATCHDOG_MARGIN_MS = 1_000;

/** How long a stream beating every `heartbeatMs` may say nothing before it counts as dead. */
export function watchdogMs(heartbeatMs: number | undefined): number {
  return 2 * (heartbeatMs ?? UNTOLD_HEARTBEAT_MS) + WATCHDOG_MARGIN_MS;
}

export interface ChatStreamOptions {
  /**
   * Rooms to catch up on: messages after each cursor come first, then live
   * ones, with no gap and no duplicate. Also the starting point of
   * `stream.cursors`. Leave empty on a first connection.
   */
  cursors?: Cursors;
  /** Aborting it closes the stream. */
  signal?: AbortSignal;
  /** Extra request headers (the client adds `authorization`). */
  headers?: Record<string, string>;
  /**
   * The heartbeat interval to expect until `ready` tells it (e.g. what an
   * earlier stream's `ready` said): the watchdog waits twice this, and a
   * margin, for `ready` itself. Default: 30 s.
   */
  heartbeatIntervalMs?: number;
}

type ClientEventInit = MessageInitShape<typeof ClientEventSchema>;

export class ChatStream implements AsyncIterable<ServerEvent> {
  /** The stream's first event: who we are and who is online. */
  readonly ready: Promise<ServerEvent_Ready>;
  /**
   * Settles when the stream is over: with undefined after `close()` or a
   * normal end, with the ConnectError that ended it otherwise.
   */
  readonly done: Promise<ConnectError | undefined>;
  /** Per room, the newest event seq received (`message`, `sent`, `edited`, `deleted`, `reaction`, `member`, `roomUpdated`). */
  readonly cursors: Cursors;
  /** How often the server sends this stream a heartbeat, once `ready` has said; before, what the options said. */
  heartbeatIntervalMs: number | undefined;
  /** Whether the watchdog ended the stream: nothing came for twice the heartbeat interval. */
  stalled = false;

  private readonly up = new AsyncQueue<ClientEventInit>();
  private readonly down = new AsyncQueue<ServerEvent>();
  private readonly abort = new AbortController();
  private readonly sends = new Map<string, { resolve: (m: Message) => void; reject: (e: Error) => void }>();
  private readonly pings = new Map<bigint, () => void>();
  private nextNonce = 1n;
  private closing = false;
  private watchdog: NodeJS.Timeout | undefined;
  private resolveReady!: (r: ServerEvent_Ready) => void;
  private rejectReady!: (e: Error) => void;

  constructor(chat: Client<typeof ChatService>, options: ChatStreamOptions = {}) {
    this.cursors = new Map(options.cursors ?? []);
    this.heartbeatIntervalMs = options.heartbeatIntervalMs;
    this.ready = new Promise((resolve, reject) => {
      this.resolveReady = resolve;
      this.rejectReady = reject;
    });
    this.ready.catch(() => {}); // a caller that never awaits `ready` gets no unhandled rejection
    options.signal?.addEventListener("abort", () => this.close(), { once: true });

    // The server holds live messages until the first client event (at most
    // 500 ms): resume right away, with no cursors when there are none.
    this.up.push({
      event: {
        case: "resume",
        value: { cursors: [...this.cursors].map(([roomId, afterSeq]) => ({ roomId, afterSeq })) },
      },
    });
    const responses = chat.chatStream(drain(this.up), { signal: this.abort.signal, headers: options.headers });
    this.heard();
    this.done = this.pump(responses);
  }

  /** Sends a message (a reply, a thread reply); resolves with it once the server has stored it (`sent`). */
  send(roomId: string, text: string, clientMsgId: string = randomUUID(), options: SendOptions = {}): Promise<Message> {
    if (this.down.isEnded) return Promise.reject(new ConnectError("stream is closed", Code.Canceled));
    if (this.sends.has(clientMsgId)) return Promise.reject(new ConnectError(`send ${clientMsgId} already pending`, Code.AlreadyExists));
    const acked = new Promise<Message>((resolve, reject) => this.sends.set(clientMsgId, { resolve, reject }));
    const { replyToId = "", threadRootId = "" } = options;
    this.up.push({ event: { case: "send", value: { roomId, text, clientMsgId, replyToId, threadRootId } } });
    return acked;
  }

  /** Tells the room's other members that we are typing. */
  typing(roomId: string): void {
    this.up.push({ event: { case: "typing", value: { roomId } } });
  }

  /** Pings the server; resolves with the round trip in milliseconds on its pong. */
  ping(): Promise<number> {
    const nonce = this.nextNonce++;
    const started = performance.now();
    const pong = new Promise<number>((resolve) => this.pings.set(nonce, () => resolve(performance.now() - started)));
    this.up.push({ event: { case: "ping", value: { nonce } } });
    return pong;
  }

  /** Closes the stream. Pending sends are rejected (retry them with the same client_msg_id). */
  close(): void {
    if (this.closing) return;
    this.closing = true;
    this.up.end();
    this.abort.abort();
  }

  /** Every server event, in order. One reader at a time; breaking out of the loop keeps the stream open. */
  [Symbol.asyncIterator](): AsyncIterator<ServerEvent> {
    return this.down[Symbol.asyncIterator]();
  }

  /** (Re)starts the watchdog: called whenever the stream says anything. */
  private heard(): void {
    clearTimeout(this.watchdog);
    const patience = watchdogMs(this.heartbeatIntervalMs);
    this.watchdog = setTimeout(() => {
      this.stalled = true;
      this.abort.abort();
    }, patience);
  }

  private async pump(responses: AsyncIterable<ServerEvent>): Promise<ConnectError | undefined> {
    let failure: ConnectError | undefined;
    try {
      for await (const event of responses) {
        this.dispatch(event);
        this.heard();
        this.down.push(event);
      }
    } catch (e) {
      if (this.stalled) {
        const quiet = watchdogMs(this.heartbeatIntervalMs) / 1000;
        failure = new ConnectError(`no event for ${quiet} s: the connection is taken for dead; reconnect and resume`, Code.Unavailable);
      } else if (!this.closing) failure = ConnectError.from(e);
    }
    clearTimeout(this.watchdog);
    this.closing = true;
    this.up.end();
    const ended = failure ?? new ConnectError("stream closed", Code.Canceled);
    this.rejectReady(ended);
    for (const [, pending] of this.sends) pending.reject(ended);
    this.sends.clear();
    if (failure) this.down.fail(failure);
    else this.down.end();
    return failure;
  }

  private advance(message: Message | undefined): void {
    if (message) this.advanceTo(message.roomId, message.seq);
  }

  private advanceTo(roomId: string, seq: bigint): void {
    const seen = this.cursors.get(roomId) ?? 0n;
    if (seq > seen) this.cursors.set(roomId, seq);
  }

  private dispatch(event: ServerEvent): void {
    const e = event.event;
    switch (e.case) {
      case "ready": {
        const told = e.value.heartbeatInterval ? durationMs(e.value.heartbeatInterval) : 0;
        this.heartbeatIntervalMs = told > 0 ? told : UNTOLD_HEARTBEAT_MS;
        this.resolveReady(e.value);
        break;
      }
      case "message":
        this.advance(e.value);
        break;
      // Edits, deletions, reactions, membership changes and room updates
      // take seqs of the room's log too (`read`, `invited` and `profile` do
      // not: a marker, an invitation and a display name are no room events).
      case "edited":
        if (e.value.message) this.advanceTo(e.value.message.roomId, e.value.seq);
        break;
      case "deleted":
      case "reaction":
      case "member":
        this.advanceTo(e.value.roomId, e.value.seq);
        break;
      case "roomUpdated":
        if (e.value.room) this.advanceTo(e.value.room.id, e.value.seq);
        break;
      case "sent": {
        this.advance(e.value.message);
        const pending = this.sends.get(e.value.clientMsgId);
        this.sends.delete(e.value.clientMsgId);
        if (pending && e.value.message) pending.resolve(e.value.message);
        break;
      }
      case "error": {
        const pending = this.sends.get(e.value.clientMsgId);
        if (e.value.clientMsgId && pending) {
          this.sends.delete(e.value.clientMsgId);
          pending.reject(new ConnectError(e.value.message, e.value.code as Code));
        }
        break;
      }
      case "pong": {
        const resolve = this.pings.get(e.value.nonce);
        this.pings.delete(e.value.nonce);
        resolve?.();
        break;
      }
      default:
        break;
    }
  }
}

/** The queue as a generator: connect wants a request iterable it can `throw()` into. */
async function* drain<T>(queue: AsyncQueue<T>): AsyncGenerator<T> {
  for (;;) {
    const next = await queue.next();
    if (next.done) return;
    yield next.value;
  }
}
