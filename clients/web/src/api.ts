// The server connection: one grpc-web transport, the two generated service
// clients, and the session's tokens (kept in localStorage, refreshed before
// they expire, and attached to every call by an interceptor). Every unary
// call has a deadline, so that none waits forever on a server that stopped
// answering.
import { Code, ConnectError, createClient, type Interceptor, type Transport } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { AuthService, ChatService, type Room, type User } from "./gen/chat/v1/chat_pb";

/** Where the server is: this page's origin, or `?server=URL` for development. */
export const serverUrl: string =
  new URLSearchParams(window.location.search).get("server") ?? window.location.origin;

/** What a logged-in browser keeps across reloads. */
export interface Auth {
  accessToken: string;
  refreshToken: string;
  /** Milliseconds since the epoch. */
  expiresAt: number;
  user: { id: string; username: string };
  sessionId: string;
}

const AUTH_KEY = "chat.auth";
/** Refresh this long before the access token expires. */
const REFRESH_MARGIN_MS = 60_000;

function loadAuth(): Auth | null {
  try {
    const raw = localStorage.getItem(AUTH_KEY);
    return raw ? (JSON.parse(raw) as Auth) : null;
  } catch {
    return null;
  }
}

let auth: Auth | null = loadAuth();
let refreshTimer: number | undefined;
let refreshing: Promise<void> | null = null;
/** Called when the session is over (revoked, or the refresh token refused). */
let onSessionLost: (reason: string) => void = () => {};

export function currentAuth(): Auth | null {
  return auth;
}

export function setOnSessionLost(f: (reason: string) => void): void {
  onSessionLost = f;
}

export function saveAuth(next: Auth | null): void {
  auth = next;
  if (next) localStorage.setItem(AUTH_KEY, JSON.stringify(next));
  else localStorage.removeItem(AUTH_KEY);
  scheduleRefresh();
}

function refreshDelay(a: Auth): number {
  const left = a.expiresAt - Date.now();
  // Short-lived tokens (tests use seconds) refresh at two thirds of their life.
  const margin = Math.min(REFRESH_MARGIN_MS, left / 3);
  return Math.max(0, left - margin);
}

function scheduleRefresh(): void {
  window.clearTimeout(refreshTimer);
  if (!auth) return;
  refreshTimer = window.setTimeout(() => {
    refreshNow().catch(() => {});
  }, refreshDelay(auth));
}

/**
 * Trades the refresh token for new tokens, once at a time across every tab
 * of this browser (a refresh token works once; presenting a spent one
 * revokes the session, so two tabs must never both use the same one).
 */
export function refreshNow(): Promise<void> {
  if (refreshing) return refreshing;
  const run = async () => {
    const before = auth;
    // Another tab may have refreshed already: adopt its tokens.
    const stored = loadAuth();
    if (stored && before && stored.refreshToken !== before.refreshToken) {
      auth = stored;
      scheduleRefresh();
      if (stored.expiresAt - Date.now() > 5_000) return;
    }
    const current = auth;
    if (!current) throw new ConnectError("not logged in", Code.Unauthenticated);
    try {
      const res = await authClient.refresh({ refreshToken: current.refreshToken });
      saveAuth({
        ...current,
        accessToken: res.accessToken,
        refreshToken: res.refreshToken,
        expiresAt: res.accessTokenExpiresAt ? timestampMs(res.accessTokenExpiresAt) : Date.now() + 60_000,
      });
    } catch (e) {
      const err = ConnectError.from(e);
      if (err.code === Code.Unauthenticated || err.code === Code.NotFound || err.code === Code.PermissionDenied) {
        saveAuth(null);
        onSessionLost(`Your session ended: ${err.rawMessage}`);
      } else {
        // A network hiccup: try again soon.
        window.clearTimeout(refreshTimer);
        refreshTimer = window.setTimeout(() => refreshNow().catch(() => {}), 5_000);
      }
      throw err;
    }
  };
  const locks = (navigator as Navigator & { locks?: LockManager }).locks;
  const p: Promise<void> = (locks ? (locks.request("chat-refresh", run) as unknown as Promise<void>) : run()).finally(() => {
    refreshing = null;
  });
  refreshing = p;
  return p;
}

/** Refreshes first when the access token is about to expire. */
export async function ensureFresh(): Promise<void> {
  if (auth && auth.expiresAt - Date.now() < 10_000) await refreshNow();
}

const PUBLIC_METHODS = new Set(["Register", "Login", "Refresh"]);

/**
 * Sends `authorization: Bearer <token>`, refreshing an expiring token first;
 * a unary call refused as UNAUTHENTICATED is retried once after a refresh.
 */
const authInterceptor: Interceptor = (next) => async (req) => {
  if (PUBLIC_METHODS.has(req.method.name)) return next(req);
  await ensureFresh();
  if (auth) req.header.set("authorization", `Bearer ${auth.accessToken}`);
  try {
    return await next(req);
  } catch (e) {
    const err = ConnectError.from(e);
    if (req.stream || err.code !== Code.Unauthenticated || !auth) throw e;
    const used = req.header.get("authorization");
    await refreshNow();
    if (!auth || `Bearer ${auth.accessToken}` === used) throw e;
    req.header.set("authorization", `Bearer ${auth.accessToken}`);
    return next(req);
  }
};

/**
 * How long a unary call may take, unless the caller says otherwise: long
 * enough for a busy server (a login hashes a password), short enough that
 * a frozen one is noticed. The server hears it too, as `grpc-timeout`.
 */
const CALL_DEADLINE_MS = 15_000;
/**
 * Shorter deadlines where a late answer is worth nothing, or where the
 * person is waiting: a typing hint is stale after a few seconds, and a
 * message not acknowledged in ten is shown as waiting and sent again.
 */
const METHOD_DEADLINE_MS: Record<string, number> = {
  SendTyping: 5_000,
  SendMessage: 10_000,
};

const grpcWeb = createGrpcWebTransport({
  baseUrl: serverUrl,
  interceptors: [authInterceptor],
});

/**
 * The grpc-web transport, with a deadline on every unary call. Streams
 * have none (Subscribe is meant to stay open): the connection's watchdog
 * tells a dead stream instead.
 */
const transport: Transport = {
  unary: (method, signal, timeoutMs, header, input, contextValues) =>
    grpcWeb.unary(
      method,
      signal,
      timeoutMs ?? METHOD_DEADLINE_MS[method.name] ?? CALL_DEADLINE_MS,
      header,
      input,
      contextValues,
    ),
  stream: (method, signal, timeoutMs, header, input, contextValues) =>
    grpcWeb.stream(method, signal, timeoutMs, header, input, contextValues),
};

export const authClient = createClient(AuthService, transport);
export const chatClient = createClient(ChatService, transport);

/** Rooms asked for per ListRooms page: the most the server gives at once. */
const ROOMS_PAGE_SIZE = 1000;

/**
 * Every room ListRooms knows, following its pages until the last: one page
 * alone would leave rooms out of the list once there are more than fit on it.
 */
export async function listAllRooms(): Promise<Room[]> {
  const rooms: Room[] = [];
  const seen = new Set<string>();
  let pageToken = "";
  for (;;) {
    const res = await chatClient.listRooms({ pageSize: ROOMS_PAGE_SIZE, pageToken });
    rooms.push(...res.rooms);
    if (!res.nextPageToken) return rooms;
    // A server that hands back a token twice would otherwise loop forever.
    if (seen.has(res.nextPageToken)) throw new ConnectError("room list pages repeat", Code.Internal);
    seen.add(res.nextPageToken);
    pageToken = res.nextPageToken;
  }
}

export function authFromLogin(res: {
  accessToken: string;
  refreshToken: string;
  accessTokenExpiresAt?: { seconds: bigint; nanos: number };
  user?: User;
  sessionId: string;
}): Auth {
  return {
    accessToken: res.accessToken,
    refreshToken: res.refreshToken,
    expiresAt: res.accessTokenExpiresAt
      ? Number(res.accessTokenExpiresAt.seconds) * 1000 + Math.floor(res.accessTokenExpiresAt.nanos / 1e6)
      : Date.now() + 60_000,
    user: { id: res.user?.id ?? "", username: res.user?.username ?? "" },
    sessionId: res.sessionId,
  };
}

/** A server error in words, for the person. */
export function describe(e: unknown): string {
  const err = ConnectError.from(e);
  if (err.code === Code.Unavailable || err.code === Code.Unknown) {
    return err.rawMessage ? `Server unreachable: ${err.rawMessage}` : "Server unreachable";
  }
  if (err.code === Code.DeadlineExceeded) return "The server did not answer in time";
  const text = err.rawMessage || Code[err.code] || "Unknown error";
  return text.charAt(0).toUpperCase() + text.slice(1);
}

scheduleRefresh();
