// The live connection: one Subscribe stream kept open, and an honest word on
// whether it is. A stream can look open and be dead (a frozen server, a
// laptop on a dead Wi-Fi: no error, just silence), so a watchdog listens
// for the server's heartbeat, which Ready says how often to expect, and
// ends a stream that has been silent for about two intervals. The browser's
// own offline/online events end a stream at once and bring it back at once.
// Every ended stream is opened again with backoff; the caller resumes it
// from its cursors, so no message is lost on the way.
import { Code, ConnectError } from "@connectrpc/connect";
import { durationMs } from "@bufbuild/protobuf/wkt";
import type { ServerEvent } from "./gen/chat/v1/chat_pb";

/**
 * `connecting`: no stream yet since the page loaded; `live`: the stream is
 * open and the server was heard lately; `offline`: it was lost, and a new
 * one is on its way.
 */
export type ConnectionState = "connecting" | "live" | "offline";

/**
 * The heartbeat interval assumed until Ready tells it (a server too old to
 * say): the longest any server of this project has used (30 s), so that a
 * quiet stream of such a server is never taken for a dead one.
 */
const DEFAULT_HEARTBEAT_MS = 30_000;
/** A stream is dead after this many heartbeat intervals without a word… */
const SILENT_INTERVALS = 2;
/** …plus this much, for a heartbeat that is late on a busy network. */
const SILENCE_MARGIN_MS = 500;
/** The first wait before opening a stream again; it doubles up to the next. */
const MIN_BACKOFF_MS = 500;
/** Longest wait between reconnection attempts. */
const MAX_BACKOFF_MS = 30_000;

export interface ConnectionOptions {
  /** Opens a Subscribe stream (resuming from the caller's cursors). */
  subscribe(signal: AbortSignal): AsyncIterable<ServerEvent>;
  /** Each event of the stream, Ready included. */
  onEvent(ev: ServerEvent): void;
  /** The state changed. */
  onState(state: ConnectionState): void;
  /** Something the person should hear of (not a lost connection: the state says that). */
  onError(text: string): void;
  /**
   * The stream was refused as UNAUTHENTICATED: get new tokens. It rejects
   * when they cannot be had; `loggedIn` then says whether to go on.
   */
  refresh(): Promise<void>;
  loggedIn(): boolean;
  /** Words for an error. */
  describe(e: unknown): string;
}

/** Why a stream attempt was ended from this side. */
type Cut = "stopped" | "silent" | "offline" | "online";

export interface Connection {
  /** Opens the stream (again, if one is open), and keeps it open until `stop`. */
  start(): void;
  /** Closes the stream for good (logout, the login page). */
  stop(): void;
  readonly state: ConnectionState;
  /** Resolves once the stream is live (at once if it is), or when it is stopped. */
  whenLive(): Promise<void>;
}

export function createConnection(opts: ConnectionOptions): Connection {
  let state: ConnectionState = "connecting";
  let heartbeatMs = DEFAULT_HEARTBEAT_MS;
  /** Each `start` and `stop` begins a new generation; an older loop ends. */
  let gen = 0;
  /** Ends the current stream attempt, or the wait before the next, saying why. */
  let cut: ((why: Cut) => void) | null = null;
  let waiters: (() => void)[] = [];

  const setState = (next: ConnectionState) => {
    if (state === next) return;
    state = next;
    opts.onState(next);
    if (next === "live") wakeWaiters();
  };
  const wakeWaiters = () => {
    const w = waiters;
    waiters = [];
    for (const f of w) f();
  };
  const silenceLimit = () => SILENT_INTERVALS * heartbeatMs + SILENCE_MARGIN_MS;

  /** One stream, until it ends or is cut. Resolves to why it was cut, or null. */
  async function attempt(myGen: number, onReady: () => void): Promise<Cut | { error: unknown } | null> {
    const abort = new AbortController();
    let why: Cut | null = null;
    const mine = (w: Cut) => {
      why ??= w;
      abort.abort();
    };
    cut = mine;
    let lastHeard = Date.now();
    let timer: number | undefined;
    // The timer only prompts a look at the clock: a timer in a background
    // tab, or on a laptop that slept, fires late, and a late timer must not
    // take a stream that was heard from lately for a dead one.
    const watch = () => {
      window.clearTimeout(timer);
      const quiet = Date.now() - lastHeard;
      if (quiet >= silenceLimit()) mine("silent");
      else timer = window.setTimeout(watch, silenceLimit() - quiet);
    };
    timer = window.setTimeout(watch, silenceLimit());
    const onVisible = () => {
      if (document.visibilityState === "visible") watch();
    };
    document.addEventListener("visibilitychange", onVisible);
    try {
      for await (const ev of opts.subscribe(abort.signal)) {
        if (myGen !== gen) return "stopped";
        lastHeard = Date.now();
        if (ev.event.case === "ready") {
          const told = ev.event.value.heartbeatInterval;
          const ms = told ? durationMs(told) : 0;
          // A server that says how often it beats is taken at its word.
          heartbeatMs = ms > 0 ? ms : DEFAULT_HEARTBEAT_MS;
          watch();
          onReady();
          setState("live");
        }
        opts.onEvent(ev);
      }
      return why;
    } catch (e) {
      return why ?? { error: e };
    } finally {
      window.clearTimeout(timer);
      document.removeEventListener("visibilitychange", onVisible);
      if (cut === mine) cut = null;
    }
  }

  /** Waits `ms`, or until the browser is back online, or the connection is stopped or kicked. */
  function pause(ms: number): Promise<Cut | null> {
    return new Promise((resolve) => {
      const t = window.setTimeout(() => done(null), ms);
      const done = (why: Cut | null) => {
        window.clearTimeout(t);
        if (cut === done) cut = null;
        resolve(why);
      };
      cut = done;
    });
  }

  async function run(myGen: number): Promise<void> {
    let backoff = MIN_BACKOFF_MS;
    /** Refreshed for this stream, and no Ready since: refused again means wait first. */
    let refreshed = false;
    while (myGen === gen && opts.loggedIn()) {
      if (!navigator.onLine) {
        // No network at all: nothing to try until the browser says it is back
        // (or a long while, in case it is wrong).
        setState("offline");
        const why = await pause(MAX_BACKOFF_MS);
        if (why === "stopped" || myGen !== gen) return;
        if (why === "online") backoff = MIN_BACKOFF_MS;
        continue;
      }
      const result = await attempt(myGen, () => {
        backoff = MIN_BACKOFF_MS;
        refreshed = false;
      });
      if (myGen !== gen || result === "stopped") return;
      if (result === "online") {
        // The network is back: try again now, not after the backoff.
        backoff = MIN_BACKOFF_MS;
        continue;
      }
      if (result && typeof result === "object") {
        const err = ConnectError.from(result.error);
        if (err.code === Code.Unauthenticated && !refreshed) {
          // The token the stream was opened with expired: with new tokens it
          // opens again at once, and nobody was offline. (If the session is
          // gone, the refresh fails and the caller shows the login page.)
          try {
            await opts.refresh();
            refreshed = true;
            continue;
          } catch {
            if (myGen !== gen || !opts.loggedIn()) return;
          }
        } else if (err.code === Code.Unauthenticated) {
          // Refused again with new tokens: try again after the backoff, refreshing once more.
          refreshed = false;
        } else if (err.code === Code.ResourceExhausted) {
          opts.onError(`Live updates fell behind (${err.rawMessage}); catching up.`);
        } else if (!connectionLost(err)) {
          opts.onError(`Live updates stopped: ${opts.describe(err)}. Retrying…`);
        }
      }
      setState("offline");
      if (result === "offline") continue;
      // A little jitter, so that the clients of a restarted server do not
      // all come back in the same instant.
      const why = await pause(backoff * (0.8 + Math.random() * 0.4));
      if (why === "stopped" || myGen !== gen) return;
      backoff = why === "online" ? MIN_BACKOFF_MS : Math.min(backoff * 2, MAX_BACKOFF_MS);
    }
  }

  const connection: Connection = {
    start() {
      cut?.("stopped");
      const myGen = ++gen;
      setState("connecting");
      void run(myGen);
    },
    stop() {
      gen++;
      cut?.("stopped");
      setState("connecting");
      wakeWaiters();
    },
    get state() {
      return state;
    },
    whenLive() {
      if (state === "live") return Promise.resolve();
      return new Promise((resolve) => waiters.push(resolve));
    },
  };

  window.addEventListener("offline", () => {
    if (cut) {
      setState("offline");
      cut("offline");
    }
  });
  window.addEventListener("online", () => {
    if (state !== "live") cut?.("online");
  });
  return connection;
}

/**
 * Whether an error means the server could not be reached or did not answer
 * (as opposed to an answer that refused the call): what is sent meanwhile
 * waits for the connection instead of failing.
 */
export function connectionLost(e: unknown): boolean {
  const err = ConnectError.from(e);
  return [Code.Unavailable, Code.Unknown, Code.DeadlineExceeded, Code.Canceled].includes(err.code);
}
