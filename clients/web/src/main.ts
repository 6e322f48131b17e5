// The chat app: a login page, then rooms, messages, presence and typing,
// fed by one `Subscribe` stream that resumes from per-room cursors.
import "./style.css";
import "./a11y.css";
import { Code, ConnectError } from "@connectrpc/connect";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import {
  RoomKind,
  type Message,
  type Room,
  type ServerEvent,
  type Session,
  type User,
} from "./gen/chat/v1/chat_pb";
import {
  authClient,
  authFromLogin,
  chatClient,
  currentAuth,
  describe,
  listAllRooms,
  refreshNow,
  saveAuth,
  setOnSessionLost,
} from "./api";
import { h, clear } from "./dom";
import { menuBadge, roomBadge, showAttention, unreadCount } from "./unread";
import { initNotifications, notificationToggle, notifyMessage } from "./notify";
import { describeDevice } from "./device";

/** Messages fetched per History page. */
const PAGE = 50;
/**
 * How often to tell others we are typing while we type: a little over the
 * 2 s in which a server relays one typing event per person and room, so
 * that the one sent after a message is not the one it drops.
 */
const TYPING_THROTTLE_MS = 2_500;
/** How long "x is typing…" stays after their last typing event. */
const TYPING_SHOW_MS = 3_000;
/** Longest wait between reconnection attempts. */
const MAX_BACKOFF_MS = 30_000;
/** Send attempts before a message is shown as failed. */
const SEND_ATTEMPTS = 5;
/**
 * The most rooms one Subscribe may resume (the server's MAX_CURSORS): it
 * refuses the whole stream beyond that, and a person may be in more rooms
 * (a thousand groups, and direct ones besides).
 */
const MAX_RESUME_CURSORS = 1000;

/** A message on its way to the server; kept across reloads until it lands. */
interface Pending {
  clientMsgId: string;
  roomId: string;
  text: string;
  error?: string;
  /** A SendMessage call for it is under way (not persisted). */
  sending?: boolean;
}

interface RoomState {
  room: Room;
  /** Loaded messages by seq: always one contiguous range. */
  messages: Map<bigint, Message>;
  /** Whether older messages than the loaded ones exist. */
  hasMore: boolean;
  historyLoaded: boolean;
  loadingOlder: boolean;
  /** username -> when their typing indicator ends. */
  typing: Map<string, number>;
}

const app = document.getElementById("app")!;

/** Sends go out one at a time, so that messages keep the order they were written in. */
let sendQueue: Promise<void> = Promise.resolve();

// ---------- persistent per-user state ----------

function storageKey(kind: string): string {
  return `chat.${kind}.${currentAuth()?.user.id ?? ""}`;
}

function loadSeqs(kind: string): Map<string, bigint> {
  try {
    const raw = JSON.parse(localStorage.getItem(storageKey(kind)) ?? "{}") as Record<string, string>;
    return new Map(Object.entries(raw).map(([k, v]) => [k, BigInt(v)]));
  } catch {
    return new Map();
  }
}

function saveSeqs(kind: string, m: Map<string, bigint>): void {
  const o: Record<string, string> = {};
  for (const [k, v] of m) o[k] = v.toString();
  localStorage.setItem(storageKey(kind), JSON.stringify(o));
}

function loadPending(): Pending[] {
  try {
    const raw = JSON.parse(localStorage.getItem(storageKey("pending")) ?? "[]") as Pending[];
    return raw.map(({ clientMsgId, roomId, text }) => ({ clientMsgId, roomId, text }));
  } catch {
    return [];
  }
}

function savePending(): void {
  const plain = state.pending.map(({ clientMsgId, roomId, text }) => ({ clientMsgId, roomId, text }));
  if (plain.length) localStorage.setItem(storageKey("pending"), JSON.stringify(plain));
  else localStorage.removeItem(storageKey("pending"));
}

// ---------- app state ----------

const state = {
  rooms: new Map<string, RoomState>(),
  /** Per room: every message up to this seq has been received. */
  cursors: new Map<string, bigint>(),
  /** Per room: the newest seq the person has seen. */
  read: new Map<string, bigint>(),
  activeRoomId: "" as string,
  online: new Map<string, User>(),
  pending: [] as Pending[],
  connection: "connecting" as "connecting" | "live" | "reconnecting",
  streamAbort: null as AbortController | null,
  streamGen: 0,
  /** Per room: when we last told others we are typing. */
  lastTypingSent: new Map<string, number>(),
  /** Tells of typing at the end of the throttle window, if it went on. */
  typingTimer: undefined as number | undefined,
  view: "chat" as "chat" | "sessions",
  drawerOpen: false,
};

// ---------- errors ----------

const errorBox = h("div", { class: "errors", "data-testid": "errors", role: "alert" });

function showError(text: string): void {
  const item = h(
    "div",
    { class: "error", "data-testid": "error" },
    h("span", {}, text),
    h("button", { class: "icon", title: "Dismiss", onclick: () => item.remove() }, "×"),
  );
  errorBox.append(item);
  window.setTimeout(() => item.remove(), 15_000);
}

/** Runs an action, showing any failure in words. */
async function attempt<T>(what: string, f: () => Promise<T>): Promise<T | undefined> {
  try {
    return await f();
  } catch (e) {
    showError(`${what}: ${describe(e)}`);
    return undefined;
  }
}

initNotifications({
  me: () => currentAuth()?.user.id,
  open: (roomId) => {
    selectRoom(roomId);
    closeDrawer();
  },
});

setOnSessionLost((reason) => {
  stopStream();
  renderLogin(reason);
});

// ---------- login page ----------

function renderLogin(message?: string): void {
  stopStream();
  showAttention(0);
  clear(app);
  const username = h("input", {
    name: "username",
    autocomplete: "username",
    required: true,
    placeholder: "Username",
    "data-testid": "login-username", "aria-label": "Username",
  }) as HTMLInputElement;
  const password = h("input", {
    name: "password",
    type: "password",
    autocomplete: "current-password",
    required: true,
    placeholder: "Password",
    "data-testid": "login-password", "aria-label": "Password",
  }) as HTMLInputElement;
  const status = h("p", { class: "auth-status", "data-testid": "auth-status", role: "status" }, message ?? "");
  const buttons = [
    h("button", { type: "submit", "data-testid": "login-submit", class: "primary" }, "Log in"),
    h("button", { type: "button", "data-testid": "register-submit" }, "Create account"),
  ] as HTMLButtonElement[];
  const setBusy = (busy: boolean) => buttons.forEach((b) => (b.disabled = busy));

  const login = async () => {
    const res = await authClient.login({ username: username.value.trim(), password: password.value });
    saveAuth(authFromLogin(res));
    startChat();
  };
  const form = h(
    "form",
    {
      class: "auth-card",
      "data-testid": "auth-form",
      onsubmit: async (ev: Event) => {
        ev.preventDefault();
        setBusy(true);
        status.className = "auth-status";
        status.textContent = "Logging in…";
        try {
          await login();
        } catch (e) {
          status.className = "auth-status bad";
          status.textContent = describe(e);
        } finally {
          setBusy(false);
        }
      },
    },
    h("h1", {}, "Chat"),
    h("p", { class: "muted" }, "Log in, or create an account with a new username."),
    username,
    password,
    h("div", { class: "row" }, ...buttons),
    status,
  ) as HTMLFormElement;
  buttons[1].addEventListener("click", async () => {
    if (!form.reportValidity()) return;
    setBusy(true);
    status.className = "auth-status";
    status.textContent = "Creating account…";
    try {
      await authClient.register({ username: username.value.trim(), password: password.value });
      status.textContent = "Account created. Logging in…";
      await login();
    } catch (e) {
      status.className = "auth-status bad";
      status.textContent = describe(e);
    } finally {
      setBusy(false);
    }
  });
  app.append(h("main", { class: "auth-page" }, form), errorBox);
  username.focus();
}

// ---------- chat page skeleton ----------

const el = {
  shell: h("div", { class: "shell" }),
  connection: h("span", { class: "connection", "data-testid": "connection" }),
  me: h("span", { class: "me", "data-testid": "me" }),
  roomsList: h("nav", { class: "rooms", "data-testid": "rooms" }),
  browseList: h("div", { class: "browse", "data-testid": "browse", hidden: true }),
  roomTitle: h("h2", { "data-testid": "room-title" }),
  leave: h("button", { class: "small-button", "data-testid": "leave-room", hidden: true }, "Leave room"),
  loadOlder: h("button", { class: "load-older", "data-testid": "load-older", hidden: true }, "Load older messages"),
  // A list inside a log (see `log`); focusable, so that the keyboard scrolls it.
  messages: h("ol", { class: "messages", "data-testid": "messages", tabindex: 0, "aria-label": "Message list" }),
  // A log: screen readers read new messages as they come, not the list.
  log: h("div", { class: "message-log", role: "log", "aria-live": "polite", "aria-label": "Messages" }),
  typing: h("div", { class: "typing", "data-testid": "typing", "aria-live": "polite" }),
  composer: h("textarea", {
    rows: 1,
    placeholder: "Write a message…",
    title: "Enter sends, Shift+Enter starts a new line",
    "data-testid": "composer", "aria-label": "Message",
    dir: "auto",
    disabled: true,
  }) as HTMLTextAreaElement,
  online: h("ul", { class: "online", "data-testid": "online" }),
  // The page's main landmark: the chat, or the sessions page (one shows at a time).
  main: h("main", { class: "pane" }),
  sessions: h("main", { class: "sessions-page", "data-testid": "sessions-page", hidden: true }),
};

function startChat(): void {
  const a = currentAuth();
  if (!a) return renderLogin();
  state.rooms.clear();
  state.online.clear();
  // Messages not yet sent before a reload go out once the stream is up.
  state.pending = loadPending();
  state.activeRoomId = localStorage.getItem(storageKey("active")) ?? "";
  state.cursors = loadSeqs("cursors");
  state.read = loadSeqs("read");
  state.view = "chat";
  document.title = `Chat · ${a.user.username}`;
  buildShell(a.user.username);
  void boot();
}

function buildShell(username: string): void {
  clear(app);
  clear(el.shell);
  el.me.textContent = username;

  const createInput = h("input", {
    placeholder: "New room name",
    "data-testid": "create-room-name", "aria-label": "New room name",
    maxlength: 64,
    required: true,
  }) as HTMLInputElement;
  const createForm = h(
    "form",
    {
      class: "inline-form",
      onsubmit: async (ev: Event) => {
        ev.preventDefault();
        const name = createInput.value.trim();
        if (!name) return;
        const res = await attempt("Could not create the room", () => chatClient.createRoom({ name }));
        if (res?.room) {
          createInput.value = "";
          addRoom(res.room);
          selectRoom(res.room.id);
        }
      },
    },
    createInput,
    h("button", { type: "submit", "data-testid": "create-room-submit", title: "Create room" }, "Create"),
  );

  const dmInput = h("input", {
    placeholder: "Username",
    "data-testid": "dm-username", "aria-label": "Username to message",
    required: true,
  }) as HTMLInputElement;
  const dmForm = h(
    "form",
    {
      class: "inline-form",
      onsubmit: async (ev: Event) => {
        ev.preventDefault();
        const username = dmInput.value.trim();
        if (!username) return;
        const res = await attempt(`Could not open a conversation with ${username}`, () =>
          chatClient.openDirectRoom({ username }),
        );
        if (res?.room) {
          dmInput.value = "";
          addRoom(res.room);
          selectRoom(res.room.id);
        }
      },
    },
    dmInput,
    h("button", { type: "submit", "data-testid": "dm-submit", title: "Message this user" }, "Message"),
  );

  const browseButton = h(
    "button",
    {
      class: "link",
      "data-testid": "browse-rooms",
      onclick: async () => {
        el.browseList.hidden = !el.browseList.hidden;
        if (!el.browseList.hidden) await refreshRooms();
      },
    },
    "Browse rooms",
  );

  const sidebar = h(
    "aside",
    { class: "sidebar", id: "sidebar", "data-testid": "sidebar", "aria-label": "Rooms and conversations" },
    el.roomsList,
    h("div", { class: "side-section" }, browseButton, el.browseList),
    h("div", { class: "side-section" }, h("h2", { class: "label" }, "New room"), createForm),
    h("div", { class: "side-section" }, h("h2", { class: "label" }, "Direct message"), dmForm),
    h("div", { class: "side-section" }, notificationToggle()),
  );

  const header = h(
    "header",
    { class: "topbar" },
    h(
      "button",
      {
        class: "icon menu",
        title: "Rooms",
        "data-testid": "menu",
        "aria-label": "Rooms",
        "aria-expanded": "false",
        "aria-controls": "sidebar",
        onclick: () => {
          setDrawer(!state.drawerOpen);
          // The focus goes into the drawer: the open room, else its first control.
          if (state.drawerOpen) {
            const target = el.roomsList.querySelector<HTMLElement>('[aria-current="true"]') ??
              sidebar.querySelector<HTMLElement>("button, input");
            target?.focus();
          }
        },
      },
      h("span", { "aria-hidden": "true" }, "☰"),
      menuBadge,
    ),
    h("h1", { class: "brand" }, "Chat"),
    el.connection,
    h("span", { class: "spacer" }),
    el.me,
    h("button", { "data-testid": "sessions-button", onclick: () => showSessions() }, "Sessions"),
    h("button", { "data-testid": "logout", onclick: () => logout() }, "Log out"),
  );

  el.loadOlder.onclick = () => void loadOlder();
  el.leave.onclick = () => void leaveRoom();
  el.messages.onscroll = () => {
    if (el.messages.scrollTop < 40) void loadOlder();
  };
  el.composer.onkeydown = (ev: KeyboardEvent) => {
    if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) {
      ev.preventDefault();
      const text = el.composer.value;
      if (text.trim() && state.activeRoomId) {
        el.composer.value = "";
        void send(state.activeRoomId, text);
      }
    }
  };
  el.composer.oninput = () => noteTyping();

  clear(el.main);
  el.main.append(
    h("div", { class: "pane-head" }, el.roomTitle, el.leave),
    el.log,
    el.typing,
    h(
      "div",
      { class: "composer" },
      el.composer,
      h(
        "button",
        {
          class: "primary",
          "data-testid": "send",
          onclick: () => {
            el.composer.dispatchEvent(new KeyboardEvent("keydown", { key: "Enter" }));
            el.composer.focus();
          },
        },
        "Send",
      ),
    ),
  );
  el.log.replaceChildren(el.loadOlder, el.messages);

  const people = h(
    "aside",
    { class: "people", "aria-labelledby": "online-heading" },
    h("h2", { class: "label", id: "online-heading", title: "People online who share a room with you" }, "Online in your rooms"),
    el.online,
  );
  el.shell.append(
    header,
    h(
      "div",
      { class: "body" },
      sidebar,
      h("div", { class: "scrim", onclick: () => closeDrawer() }),
      el.main,
      el.sessions,
      people,
    ),
  );
  el.main.hidden = false;
  el.sessions.hidden = true;
  app.append(el.shell, errorBox);
  renderConnection();
  renderRooms();
  renderMessages();
  renderOnline();
}

/** Opens or closes the phone's room drawer, and tells the ☰ button so. */
function setDrawer(open: boolean): void {
  state.drawerOpen = open;
  el.shell.classList.toggle("drawer-open", open);
  const menu = document.querySelector<HTMLElement>('[data-testid="menu"]');
  menu?.setAttribute("aria-expanded", String(open));
  // A closed drawer is hidden: the focus must not stay in it.
  if (!open && document.activeElement?.closest(".sidebar") && window.matchMedia("(max-width: 720px)").matches) {
    menu?.focus();
  }
}

function closeDrawer(): void {
  setDrawer(false);
}

// Escape closes the drawer, and gives the focus back to the button that
// opened it.
document.addEventListener("keydown", (e) => {
  if (e.key !== "Escape" || !state.drawerOpen) return;
  closeDrawer();
  (document.querySelector('[data-testid="menu"]') as HTMLElement | null)?.focus();
});

async function boot(): Promise<void> {
  await refreshRooms();
  // Rooms never seen on this device start at their newest message: their
  // content comes from History when opened, and nothing counts as unread.
  for (const rs of state.rooms.values()) {
    if (!rs.room.joined) continue;
    if (!state.cursors.has(rs.room.id)) state.cursors.set(rs.room.id, rs.room.lastSeq);
    if (!state.read.has(rs.room.id)) state.read.set(rs.room.id, rs.room.lastSeq);
  }
  saveSeqs("cursors", state.cursors);
  saveSeqs("read", state.read);
  if (!state.rooms.get(state.activeRoomId)?.room.joined) {
    state.activeRoomId = [...state.rooms.values()].find((r) => r.room.joined)?.room.id ?? "";
  }
  selectRoom(state.activeRoomId);
  void runStream();
}

async function refreshRooms(): Promise<void> {
  const rooms = await attempt("Could not list rooms", listAllRooms);
  if (!rooms) return;
  for (const room of rooms) addRoom(room, false);
  renderRooms();
}

function addRoom(room: Room, render = true): RoomState {
  let rs = state.rooms.get(room.id);
  if (rs) {
    rs.room = room;
  } else {
    rs = {
      room,
      messages: new Map(),
      hasMore: false,
      historyLoaded: false,
      loadingOlder: false,
      typing: new Map(),
    };
    state.rooms.set(room.id, rs);
  }
  if (room.joined) {
    // A room joined now: live messages flow from here on.
    if (!state.cursors.has(room.id)) {
      state.cursors.set(room.id, room.lastSeq);
      saveSeqs("cursors", state.cursors);
    }
    if (!state.read.has(room.id)) {
      state.read.set(room.id, room.lastSeq);
      saveSeqs("read", state.read);
    }
  }
  if (render) renderRooms();
  return rs;
}

// ---------- rooms ----------

function newestSeq(rs: RoomState): bigint {
  let max = rs.room.lastSeq;
  for (const s of rs.messages.keys()) if (s > max) max = s;
  return max;
}

/**
 * How many of a room's messages the person has not read: none in the open
 * room while they are looking at it; their own messages do not count.
 */
function unread(rs: RoomState): number {
  if (rs.room.id === state.activeRoomId && document.visibilityState !== "hidden") return 0;
  return unreadCount(newestSeq(rs), state.read.get(rs.room.id) ?? 0n, rs.messages, currentAuth()?.user.id);
}

function renderRooms(): void {
  const counts = new Map<string, number>();
  let total = 0;
  for (const rs of state.rooms.values()) {
    if (!rs.room.joined) continue;
    const n = unread(rs);
    counts.set(rs.room.id, n);
    total += n;
  }
  showAttention(total, currentAuth()?.user.username);
  clear(el.roomsList);
  const joined = [...state.rooms.values()].filter((r) => r.room.joined);
  const groups = joined.filter((r) => r.room.kind !== RoomKind.DIRECT);
  const directs = joined.filter((r) => r.room.kind === RoomKind.DIRECT);
  const entry = (rs: RoomState) => {
    const count = counts.get(rs.room.id) ?? 0;
    const isUnread = count > 0;
    return h(
      "button",
      {
        class: `room${rs.room.id === state.activeRoomId ? " active" : ""}${isUnread ? " unread" : ""}`,
        "data-testid": "room",
        "data-room-name": rs.room.name,
        "data-unread": isUnread ? "true" : "false",
        "aria-current": rs.room.id === state.activeRoomId ? "true" : false,
        onclick: () => {
          selectRoom(rs.room.id);
          closeDrawer();
        },
      },
      h("span", { class: "room-icon", "aria-hidden": "true" }, rs.room.kind === RoomKind.DIRECT ? "@" : "#"),
      h("span", { class: "room-name", dir: "auto" }, rs.room.name),
      roomBadge(count),
    );
  };
  el.roomsList.append(
    h("h2", { class: "label" }, "Rooms"),
    groups.length ? h("div", {}, ...groups.map(entry)) : h("p", { class: "muted" }, "No rooms yet: create or browse."),
    h("h2", { class: "label" }, "Direct messages"),
    directs.length ? h("div", {}, ...directs.map(entry)) : h("p", { class: "muted" }, "None yet."),
  );

  clear(el.browseList);
  const others = [...state.rooms.values()].filter((r) => !r.room.joined && r.room.kind !== RoomKind.DIRECT);
  if (!others.length) el.browseList.append(h("p", { class: "muted" }, "No other rooms."));
  for (const rs of others) {
    el.browseList.append(
      h(
        "div",
        { class: "browse-item", "data-testid": "browse-room", "data-room-name": rs.room.name },
        h("span", { class: "room-name" }, `# ${rs.room.name}`),
        h(
          "button",
          {
            "data-testid": "join-room",
            onclick: async () => {
              const res = await attempt(`Could not join ${rs.room.name}`, () =>
                chatClient.joinRoom({ roomId: rs.room.id }),
              );
              if (res?.room) {
                addRoom(res.room);
                selectRoom(res.room.id);
                closeDrawer();
              }
            },
          },
          "Join",
        ),
      ),
    );
  }
}

function selectRoom(roomId: string): void {
  cancelTyping();
  state.activeRoomId = roomId;
  localStorage.setItem(storageKey("active"), roomId);
  showChat();
  const rs = state.rooms.get(roomId);
  el.composer.disabled = !rs;
  el.leave.hidden = !rs || rs.room.kind === RoomKind.DIRECT;
  el.roomTitle.textContent = rs ? `${rs.room.kind === RoomKind.DIRECT ? "@" : "#"} ${rs.room.name}` : "No room";
  if (rs) {
    markRead(rs);
    if (!rs.historyLoaded) void loadHistory(rs);
    void attempt("Could not list the room's online users", async () => {
      const res = await chatClient.listOnlineUsers({ roomId });
      for (const u of res.users) if (u.id !== currentAuth()?.user.id) state.online.set(u.id, u);
      renderOnline();
    });
  }
  renderRooms();
  renderMessages(true);
  renderTyping();
  if (rs && window.matchMedia("(min-width: 721px)").matches) el.composer.focus();
}

function markRead(rs: RoomState): void {
  const n = newestSeq(rs);
  if ((state.read.get(rs.room.id) ?? 0n) < n) {
    state.read.set(rs.room.id, n);
    saveSeqs("read", state.read);
  }
}

async function leaveRoom(): Promise<void> {
  const rs = state.rooms.get(state.activeRoomId);
  if (!rs) return;
  const ok = await attempt(`Could not leave ${rs.room.name}`, () => chatClient.leaveRoom({ roomId: rs.room.id }));
  if (ok === undefined) return;
  rs.room.joined = false;
  rs.messages.clear();
  rs.historyLoaded = false;
  state.cursors.delete(rs.room.id);
  state.read.delete(rs.room.id);
  saveSeqs("cursors", state.cursors);
  saveSeqs("read", state.read);
  selectRoom([...state.rooms.values()].find((r) => r.room.joined)?.room.id ?? "");
}

// ---------- messages ----------

function oldestLoaded(rs: RoomState): bigint {
  let min = 0n;
  for (const s of rs.messages.keys()) if (min === 0n || s < min) min = s;
  return min;
}

/** First page of a room: the page before the oldest message already here. */
async function loadHistory(rs: RoomState): Promise<void> {
  rs.historyLoaded = true;
  const res = await attempt(`Could not load ${rs.room.name}`, () =>
    chatClient.history({ roomId: rs.room.id, beforeSeq: oldestLoaded(rs), limit: PAGE }),
  );
  if (!res) {
    rs.historyLoaded = false;
    return;
  }
  mergeHistory(rs, res.messages, res.hasMore);
  renderMessages(true);
}

async function loadOlder(): Promise<void> {
  const rs = state.rooms.get(state.activeRoomId);
  if (!rs || !rs.hasMore || rs.loadingOlder) return;
  rs.loadingOlder = true;
  const before = oldestLoaded(rs);
  try {
    const res = await attempt("Could not load older messages", () =>
      chatClient.history({ roomId: rs.room.id, beforeSeq: before, limit: PAGE }),
    );
    if (!res) return;
    const oldHeight = el.messages.scrollHeight;
    mergeHistory(rs, res.messages, res.hasMore);
    if (rs.room.id === state.activeRoomId) {
      renderMessages();
      el.messages.scrollTop += el.messages.scrollHeight - oldHeight;
    }
  } finally {
    rs.loadingOlder = false;
  }
}

function mergeHistory(rs: RoomState, messages: Message[], hasMore: boolean): void {
  for (const m of messages) rs.messages.set(m.seq, m);
  // Older pages only extend `hasMore` downwards.
  const first = messages[0];
  if (!first || first.seq <= oldestLoaded(rs)) rs.hasMore = hasMore;
  advanceCursor(rs.room.id, messages.length ? messages[messages.length - 1].seq : 0n);
}

function advanceCursor(roomId: string, seq: bigint): void {
  if (seq > (state.cursors.get(roomId) ?? 0n)) {
    state.cursors.set(roomId, seq);
    saveSeqs("cursors", state.cursors);
  }
}

/**
 * Takes our own message's "sending…" copy away once the message itself is
 * known, whichever comes first: the stream's echo or the send's reply.
 */
function settlePending(m: Message): boolean {
  if (!m.clientMsgId || m.sender?.id !== currentAuth()?.user.id) return false;
  const before = state.pending.length;
  state.pending = state.pending.filter((p) => p.clientMsgId !== m.clientMsgId);
  if (state.pending.length === before) return false;
  savePending();
  return true;
}

/** A message from the stream, a send, or a page: shown once, by seq. */
function receive(m: Message): void {
  const settled = settlePending(m);
  let rs = state.rooms.get(m.roomId);
  if (!rs) {
    // A room we have not heard of yet (say a direct message to us): what
    // came before this message is unread, and the cursor starts below it.
    if (!state.read.has(m.roomId)) state.read.set(m.roomId, 0n);
    if (!state.cursors.has(m.roomId)) state.cursors.set(m.roomId, m.seq - 1n);
    void refreshRooms().then(() => {
      const known = state.rooms.get(m.roomId);
      if (known) {
        if (!known.messages.has(m.seq)) receive(m);
      } else {
        showError("A message came from a room this browser does not know.");
      }
    });
    return;
  }
  if (rs.messages.has(m.seq)) {
    // Known already (the stream's echo came before the send's reply): the
    // list changes only if a "sending…" copy just went.
    if (settled && rs.room.id === state.activeRoomId) renderMessages();
    return;
  }
  const newest = newestSeq(rs);
  rs.messages.set(m.seq, m);
  if (m.seq > rs.room.lastSeq) rs.room.lastSeq = m.seq;
  // Keep the loaded range contiguous: if there is a gap below, page it in.
  if (rs.messages.size > 1 && m.seq > newest + 1n && !rs.messages.has(m.seq - 1n)) void fillGap(rs, m.seq);
  advanceCursor(m.roomId, m.seq);
  clearTyping(rs, m.sender?.username);
  if (rs.room.id === state.activeRoomId && document.visibilityState !== "hidden") markRead(rs);
  if (rs.room.id === state.activeRoomId) renderMessages();
  renderRooms();
  notifyMessage(m, rs.room);
}

async function fillGap(rs: RoomState, upTo: bigint): Promise<void> {
  let before = upTo;
  while (before > 1n && !rs.messages.has(before - 1n)) {
    const res = await attempt("Could not load missed messages", () =>
      chatClient.history({ roomId: rs.room.id, beforeSeq: before, limit: 200 }),
    );
    if (!res || !res.messages.length) return;
    for (const m of res.messages) rs.messages.set(m.seq, m);
    before = res.messages[0].seq;
    if (rs.room.id === state.activeRoomId) renderMessages();
  }
}

function formatTime(d: Date): string {
  const now = new Date();
  const sameDay = d.toDateString() === now.toDateString();
  const time = d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  return sameDay ? time : `${d.toLocaleDateString([], { month: "short", day: "numeric" })} ${time}`;
}

function renderMessages(toBottom = false): void {
  const rs = state.rooms.get(state.activeRoomId);
  const atBottom = el.messages.scrollHeight - el.messages.scrollTop - el.messages.clientHeight < 60;
  clear(el.messages);
  el.loadOlder.hidden = !rs?.hasMore;
  if (!rs) {
    el.messages.append(h("li", { class: "empty" }, "Pick a room, or create one, to start chatting."));
    return;
  }
  const me = currentAuth()?.user.id;
  const sorted = [...rs.messages.values()].sort((a, b) => (a.seq < b.seq ? -1 : a.seq > b.seq ? 1 : 0));
  if (!sorted.length && rs.historyLoaded) {
    el.messages.append(h("li", { class: "empty" }, "No messages yet. Say hello!"));
  }
  let prevSender = "";
  for (const m of sorted) {
    const mine = m.sender?.id === me;
    const sender = m.sender?.username ?? "?";
    const when = m.sentAt ? timestampDate(m.sentAt) : new Date();
    const cont = prevSender === sender;
    prevSender = sender;
    el.messages.append(
      h(
        "li",
        {
          class: `msg${mine ? " mine" : ""}${cont ? " cont" : ""}`,
          "data-testid": "message",
          "data-seq": m.seq.toString(),
          "data-sender": sender,
        },
        h(
          "div",
          { class: "meta" },
          h("span", { class: "sender", "data-testid": "message-sender" }, sender),
          h("time", { datetime: when.toISOString(), title: when.toLocaleString() }, formatTime(when)),
        ),
        // dir="auto": each message takes the direction of its own first
        // strong character, so Arabic and Hebrew read right to left.
        h("div", { class: "text", "data-testid": "message-text", dir: "auto" }, m.text),
      ),
    );
  }
  for (const p of state.pending.filter((p) => p.roomId === rs.room.id)) {
    el.messages.append(
      h(
        "li",
        { class: `msg mine pending${p.error ? " failed" : ""}`, "data-testid": "pending-message" },
        h(
          "div",
          { class: "meta" },
          h("span", { class: "sender" }, currentAuth()?.user.username ?? ""),
          h("span", {}, p.error ? `Not sent: ${p.error}` : "sending…"),
        ),
        h("div", { class: "text", dir: "auto" }, p.text),
        p.error
          ? h(
              "div",
              { class: "row" },
              h("button", { "data-testid": "retry-send", onclick: () => void deliver(p) }, "Retry"),
              h(
                "button",
                {
                  onclick: () => {
                    state.pending = state.pending.filter((x) => x !== p);
                    savePending();
                    renderMessages();
                  },
                },
                "Discard",
              ),
            )
          : null,
      ),
    );
  }
  if (toBottom || atBottom) el.messages.scrollTop = el.messages.scrollHeight;
}

async function send(roomId: string, text: string): Promise<void> {
  const p: Pending = { clientMsgId: crypto.randomUUID(), roomId, text };
  // The message ends the typing hint on the other side: typing again is news.
  cancelTyping();
  state.lastTypingSent.delete(roomId);
  state.pending.push(p);
  savePending();
  renderMessages(true);
  sendQueue = sendQueue.then(() => deliver(p));
  await sendQueue;
}


function retryable(err: ConnectError): boolean {
  return [Code.Unavailable, Code.Unknown, Code.DeadlineExceeded, Code.Aborted, Code.Internal, Code.ResourceExhausted].includes(
    err.code,
  );
}

/** Sends with the same client_msg_id until it lands: the server stores it once. */
async function deliver(p: Pending): Promise<void> {
  if (p.sending || !state.pending.includes(p)) return;
  p.sending = true;
  p.error = undefined;
  renderMessages();
  try {
    for (let i = 1; ; i++) {
      try {
        const res = await chatClient.sendMessage({ roomId: p.roomId, text: p.text, clientMsgId: p.clientMsgId });
        state.pending = state.pending.filter((x) => x !== p);
        savePending();
        if (res.message) receive(res.message);
        // Whether or not the message was news, its "sending…" copy is gone.
        renderMessages();
        return;
      } catch (e) {
        const err = ConnectError.from(e);
        if (!retryable(err) || i >= SEND_ATTEMPTS || !currentAuth()) {
          p.error = describe(err);
          showError(`Message not sent: ${p.error}`);
          renderMessages();
          return;
        }
        await sleep(500 * 2 ** i);
      }
    }
  } finally {
    p.sending = false;
  }
}

// ---------- typing and presence ----------

/**
 * Tells the open room's other members we are typing: at once, then at most
 * once per TYPING_THROTTLE_MS while the typing goes on. Typing within a
 * window is told when the window ends, so the hint lasts as long as the
 * typing, and the other side hears of it even if the server dropped the
 * first event.
 */
function noteTyping(): void {
  const roomId = state.activeRoomId;
  if (!roomId || !el.composer.value.trim() || state.typingTimer !== undefined) return;
  const wait = (state.lastTypingSent.get(roomId) ?? 0) + TYPING_THROTTLE_MS - Date.now();
  if (wait <= 0) {
    sendTyping(roomId);
    return;
  }
  state.typingTimer = window.setTimeout(() => {
    state.typingTimer = undefined;
    if (state.activeRoomId === roomId && el.composer.value.trim()) sendTyping(roomId);
  }, wait);
}

function sendTyping(roomId: string): void {
  state.lastTypingSent.set(roomId, Date.now());
  chatClient.sendTyping({ roomId }).catch((e) => {
    // A lost typing hint matters little. A lost connection already shows
    // as "reconnecting…"; anything else the person hears of.
    const err = ConnectError.from(e);
    if (err.code !== Code.Unavailable && err.code !== Code.Unknown) {
      showError(`Typing indicator not sent: ${describe(err)}`);
    }
  });
}

/** No typing hint is due any more (a message went out, or another room opened). */
function cancelTyping(): void {
  window.clearTimeout(state.typingTimer);
  state.typingTimer = undefined;
}

function clearTyping(rs: RoomState, username?: string): void {
  if (username && rs.typing.delete(username) && rs.room.id === state.activeRoomId) renderTyping();
}

function renderTyping(): void {
  const rs = state.rooms.get(state.activeRoomId);
  const now = Date.now();
  const names = rs ? [...rs.typing].filter(([, until]) => until > now).map(([n]) => n) : [];
  el.typing.textContent =
    names.length === 0
      ? ""
      : names.length === 1
        ? `${names[0]} is typing…`
        : `${names.slice(0, -1).join(", ")} and ${names[names.length - 1]} are typing…`;
}

function renderOnline(): void {
  clear(el.online);
  const users = [...state.online.values()].sort((a, b) => a.username.localeCompare(b.username));
  if (!users.length) el.online.append(h("li", { class: "muted" }, "Nobody else is online."));
  for (const u of users) {
    el.online.append(
      h(
        "li",
        { "data-testid": "online-user", "data-username": u.username },
        h("span", { class: "dot" }),
        h("span", {}, u.username),
        h(
          "button",
          {
            class: "link small",
            title: `Message ${u.username}`,
            onclick: async () => {
              const res = await attempt(`Could not open a conversation with ${u.username}`, () =>
                chatClient.openDirectRoom({ username: u.username }),
              );
              if (res?.room) {
                addRoom(res.room);
                selectRoom(res.room.id);
              }
            },
          },
          "message",
        ),
      ),
    );
  }
}

function renderConnection(): void {
  const labels = { connecting: "connecting…", live: "online", reconnecting: "reconnecting…" };
  el.connection.textContent = labels[state.connection];
  el.connection.className = `connection ${state.connection}`;
  el.connection.setAttribute("data-state", state.connection);
}

// ---------- the live stream ----------

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = window.setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => {
      window.clearTimeout(t);
      resolve();
    });
  });
}

function stopStream(): void {
  state.streamGen++;
  state.streamAbort?.abort();
  state.streamAbort = null;
}

/**
 * Keeps one Subscribe stream open, resuming from the cursors each time, so
 * that a dropped connection or an expired token loses no message.
 */
async function runStream(): Promise<void> {
  stopStream();
  const gen = state.streamGen;
  let backoff = 500;
  while (gen === state.streamGen && currentAuth()) {
    const abort = new AbortController();
    state.streamAbort = abort;
    const cursors = resumeCursors();
    try {
      for await (const ev of chatClient.subscribe({ cursors }, { signal: abort.signal })) {
        if (gen !== state.streamGen) return;
        if (ev.event.case === "ready") backoff = 500;
        handleEvent(ev);
      }
      if (gen !== state.streamGen) return;
      // The server ended the stream cleanly: reconnect.
      setConnection("reconnecting");
    } catch (e) {
      if (gen !== state.streamGen || abort.signal.aborted) return;
      const err = ConnectError.from(e);
      setConnection("reconnecting");
      if (err.code === Code.Unauthenticated) {
        // The token expired (or the session is gone: then refresh fails and
        // the login page says why).
        try {
          await refreshNow();
          continue;
        } catch {
          return;
        }
      }
      if (err.code === Code.ResourceExhausted) {
        showError(`Live updates fell behind (${err.rawMessage}); catching up.`);
        continue;
      }
      if (err.code !== Code.Unavailable && err.code !== Code.Unknown && err.code !== Code.Canceled) {
        showError(`Live updates stopped: ${describe(err)}. Retrying…`);
      }
      await sleep(backoff, abort.signal);
      backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
    }
  }
}

/**
 * Where to resume each joined room, at most MAX_RESUME_CURSORS of them:
 * the open room first, then the rooms whose messages are on screen. Live
 * messages come for every room regardless; a room left out misses only
 * the replay of what was sent while the stream was down, which History
 * brings when it is opened and the next room list marks unread.
 */
function resumeCursors(): { roomId: string; afterSeq: bigint }[] {
  const rank = (roomId: string) =>
    roomId === state.activeRoomId ? 0 : state.rooms.get(roomId)?.messages.size ? 1 : 2;
  return [...state.cursors]
    .filter(([roomId]) => state.rooms.get(roomId)?.room.joined)
    .sort(([a], [b]) => rank(a) - rank(b))
    .slice(0, MAX_RESUME_CURSORS)
    .map(([roomId, afterSeq]) => ({ roomId, afterSeq }));
}

function setConnection(c: typeof state.connection): void {
  if (state.connection !== c) {
    state.connection = c;
    renderConnection();
  }
}

function handleEvent(ev: ServerEvent): void {
  const me = currentAuth()?.user.id;
  switch (ev.event.case) {
    case "ready": {
      setConnection("live");
      state.online.clear();
      for (const u of ev.event.value.onlineUsers) if (u.id !== me) state.online.set(u.id, u);
      renderOnline();
      // Sends that failed while offline, or were left by a reload, go out again.
      for (const p of state.pending) {
        if (!p.sending) sendQueue = sendQueue.then(() => deliver(p));
      }
      break;
    }
    case "message":
      receive(ev.event.value);
      break;
    case "sent":
      if (ev.event.value.message) receive(ev.event.value.message);
      break;
    case "presence": {
      const { user, online } = ev.event.value;
      if (user && user.id !== me) {
        if (online) state.online.set(user.id, user);
        else state.online.delete(user.id);
        renderOnline();
      }
      break;
    }
    case "typing": {
      const { roomId, user } = ev.event.value;
      const rs = state.rooms.get(roomId);
      if (rs && user && user.id !== me) {
        rs.typing.set(user.username, Date.now() + TYPING_SHOW_MS);
        if (roomId === state.activeRoomId) renderTyping();
        window.setTimeout(() => {
          if (roomId === state.activeRoomId) renderTyping();
        }, TYPING_SHOW_MS + 50);
      }
      break;
    }
    case "pong":
      // nonce 0: the server's heartbeat; nothing to do.
      break;
    case "error":
      showError(`Server: ${ev.event.value.message}`);
      break;
    case "resync": {
      // More was missed than a resume sends: the stream goes on from
      // from_seq; what lies before it comes from History, one page now and
      // the rest through "load older".
      const { roomId, fromSeq } = ev.event.value;
      const rs = state.rooms.get(roomId);
      if (rs) {
        rs.messages.clear();
        rs.hasMore = true;
        rs.historyLoaded = false;
        void attempt("Could not load missed messages", async () => {
          const res = await chatClient.history({ roomId, beforeSeq: fromSeq, limit: PAGE });
          for (const m of res.messages) rs.messages.set(m.seq, m);
          rs.hasMore = res.hasMore;
          rs.historyLoaded = true;
          if (roomId === state.activeRoomId) renderMessages(true);
          renderRooms();
        });
      }
      break;
    }
    default:
      break;
  }
}

// ---------- sessions ----------

function showChat(): void {
  state.view = "chat";
  el.main.hidden = false;
  el.sessions.hidden = true;
}

/**
 * The sessions page: where this account is logged in, and the ways to end
 * other logins (one at a time, all at once, or by changing the password).
 */
async function showSessions(): Promise<void> {
  state.view = "sessions";
  el.main.hidden = true;
  el.sessions.hidden = false;
  closeDrawer();
  clear(el.sessions);
  const list = h("ul", { class: "session-list", "data-testid": "sessions", "aria-label": "Sessions" });
  const heading = h("h2", { tabindex: -1 }, "Sessions");
  el.sessions.append(
    h(
      "div",
      { class: "pane-head" },
      heading,
      h(
        "button",
        {
          "data-testid": "sessions-close",
          onclick: () => {
            showChat();
            // Back where the page was opened from.
            document.querySelector<HTMLElement>('[data-testid="sessions-button"]')?.focus();
          },
        },
        "Back to chat",
      ),
    ),
    h("p", { class: "muted" }, "Every device or browser where you are logged in."),
    list,
    otherDevicesSection(list),
    changePasswordForm(list),
  );
  // A new page: the focus (and a screen reader) starts at its heading.
  heading.focus();
  await renderSessionList(list);
}

/** Fetches the sessions again and shows them in `list`. */
async function renderSessionList(list: HTMLElement): Promise<void> {
  const res = await attempt("Could not list sessions", () => authClient.listSessions({}));
  if (!res) return;
  const fmt = (t?: { seconds: bigint; nanos: number }) =>
    t ? timestampDate(t as Parameters<typeof timestampDate>[0]).toLocaleString() : "—";
  clear(list);
  for (const s of res.sessions as Session[]) {
    list.append(
      h(
        "li",
        { "data-testid": "session", "data-current": s.current ? "true" : "false" },
        h(
          "div",
          {},
          h("strong", { title: s.userAgent || false }, describeDevice(s.userAgent)),
          s.current ? h("span", { class: "device-tag", "data-testid": "current-session" }, "this device") : null,
          h("div", { class: "muted small" }, `Logged in ${fmt(s.createdAt)} · last seen ${fmt(s.lastSeenAt)}`),
        ),
        h(
          "button",
          {
            "data-testid": "revoke-session",
            onclick: async () => {
              const ok = await attempt("Could not revoke the session", () =>
                authClient.revokeSession({ sessionId: s.id }),
              );
              if (ok === undefined) return;
              if (s.current) {
                saveAuth(null);
                renderLogin("This session was revoked. Log in again.");
              } else {
                void renderSessionList(list);
              }
            },
          },
          s.current ? "Log out here" : "Revoke",
        ),
      ),
    );
  }
}

/** A status line under a form: what happened, in words, read out by screen readers. */
function formStatus(testId: string): { node: HTMLElement; say: (text: string, bad?: boolean) => void } {
  const node = h("p", { class: "form-status", role: "status", "data-testid": testId });
  return {
    node,
    say: (text, bad = false) => {
      node.className = bad ? "form-status bad" : "form-status";
      node.textContent = text;
    },
  };
}

/** "Log out other devices": ends every session but this one. */
function otherDevicesSection(list: HTMLElement): HTMLElement {
  const status = formStatus("revoke-others-status");
  const button = h(
    "button",
    {
      type: "button",
      "data-testid": "revoke-others",
      onclick: async () => {
        button.disabled = true;
        status.say("Logging out your other devices…");
        try {
          const { revoked } = await authClient.revokeOtherSessions({});
          status.say(
            revoked === 0
              ? "No other device was logged in."
              : `Logged out ${revoked} other device${revoked === 1 ? "" : "s"}.`,
          );
          await renderSessionList(list);
        } catch (e) {
          status.say(`Could not log out your other devices: ${describe(e)}`, true);
        } finally {
          button.disabled = false;
        }
      },
    },
    "Log out other devices",
  ) as HTMLButtonElement;
  return h(
    "section",
    { class: "account-section", "aria-labelledby": "other-devices-heading" },
    h("h3", { id: "other-devices-heading" }, "Other devices"),
    h("p", { class: "muted" }, "Ends every session but this one, say after using a shared computer."),
    button,
    status.node,
  );
}

/**
 * "Change password": needs the current password, so that someone holding
 * only this browser's tokens cannot take the account; every other session
 * ends with it.
 */
function changePasswordForm(list: HTMLElement): HTMLElement {
  const current = h("input", {
    id: "current-password",
    name: "current-password",
    type: "password",
    autocomplete: "current-password",
    required: true,
    "data-testid": "current-password",
  }) as HTMLInputElement;
  const next = h("input", {
    id: "new-password",
    name: "new-password",
    type: "password",
    autocomplete: "new-password",
    required: true,
    minlength: 8,
    "aria-describedby": "new-password-hint",
    "data-testid": "new-password",
  }) as HTMLInputElement;
  const submit = h(
    "button",
    { type: "submit", class: "primary", "data-testid": "change-password-submit" },
    "Change password",
  ) as HTMLButtonElement;
  const status = formStatus("password-status");
  return h(
    "form",
    {
      class: "account-section account-form",
      "data-testid": "change-password-form",
      "aria-labelledby": "change-password-heading",
      onsubmit: async (ev: Event) => {
        ev.preventDefault();
        submit.disabled = true;
        current.removeAttribute("aria-invalid");
        next.removeAttribute("aria-invalid");
        status.say("Changing your password…");
        try {
          await authClient.changePassword({ currentPassword: current.value, newPassword: next.value });
          current.value = "";
          next.value = "";
          status.say("Password changed. Your other devices were logged out.");
          await renderSessionList(list);
        } catch (e) {
          const err = ConnectError.from(e);
          if (err.code === Code.PermissionDenied) {
            status.say("The current password is wrong. Your password was not changed.", true);
            current.setAttribute("aria-invalid", "true");
            current.select();
            current.focus();
          } else if (err.code === Code.InvalidArgument) {
            status.say(`The new password was refused: ${describe(err)}`, true);
            next.setAttribute("aria-invalid", "true");
            next.focus();
          } else {
            status.say(`Could not change your password: ${describe(err)}`, true);
          }
        } finally {
          submit.disabled = false;
        }
      },
    },
    h("h3", { id: "change-password-heading" }, "Change password"),
    // For password managers: whose password this is.
    h("input", {
      type: "text",
      name: "username",
      autocomplete: "username",
      value: currentAuth()?.user.username ?? "",
      readonly: true,
      hidden: true,
    }),
    h("label", { for: "current-password" }, "Current password"),
    current,
    h("label", { for: "new-password" }, "New password"),
    next,
    h("p", { id: "new-password-hint", class: "muted small" }, "At least 8 characters. Your other devices will be logged out."),
    h("div", { class: "row" }, submit),
    status.node,
  );
}

async function logout(): Promise<void> {
  stopStream();
  try {
    await authClient.logout({});
  } catch (e) {
    const err = ConnectError.from(e);
    // Already gone is as good as logged out; anything else is worth saying.
    if (err.code !== Code.Unauthenticated) showError(`Logout on the server failed: ${describe(err)}`);
  }
  saveAuth(null);
  renderLogin("You are logged out.");
}

// Typing indicators expire on their own.
window.setInterval(() => {
  const rs = state.rooms.get(state.activeRoomId);
  if (rs && rs.typing.size) renderTyping();
}, 1_000);

// Back on the tab: the open room is read.
document.addEventListener("visibilitychange", () => {
  const rs = state.rooms.get(state.activeRoomId);
  if (rs && document.visibilityState === "visible") {
    markRead(rs);
    renderRooms();
  }
});

// Logging out in another tab logs this one out too.
window.addEventListener("storage", (ev) => {
  if (ev.key === "chat.auth" && ev.newValue === null && app.querySelector(".shell")) {
    saveAuth(null);
    renderLogin("You logged out in another tab.");
  }
});

if (currentAuth()) startChat();
else renderLogin();

// Room lists change when others create rooms: look again now and then.
window.setInterval(() => {
  if (currentAuth() && app.querySelector(".shell")) void refreshRooms();
}, 30_000);
