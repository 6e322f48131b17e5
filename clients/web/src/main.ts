// The chat app: a login page, then rooms, messages, presence and typing,
// fed by one `Subscribe` stream that resumes from per-room cursors.
import "./style.css";
import "./a11y.css";
import { Code, ConnectError } from "@connectrpc/connect";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import {
  MemberChange,
  MemberRole,
  RoomKind,
  RoomVisibility,
  type Message,
  type Room,
  type ServerEvent,
  type ServerEvent_MemberEvent,
  type ServerEvent_RoomUpdated,
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
import { createMessageList, type Notice } from "./messages/list";
import { createConversation } from "./messages/conversation";
import { applyReaction, countThreadReply, mergeEdited, tombstone, updateQuote } from "./messages/events";
import { createSidePanel } from "./panel";
import { connectionLost, createConnection, type ConnectionState } from "./connection";
import { Composer } from "./composer";
import { passwordLengthProblem, PASSWORD_MAX_CHARS, PASSWORD_MIN_CHARS } from "./limits";
import { mentionBadge, menuBadge, roomBadge, showAttention } from "./unread";
import { createThreads, threadSummary } from "./thread";
import { showSeen } from "./receipts";
import { initNotifications, notificationToggle, notifyMessage } from "./notify";
import { describeDevice } from "./device";
import { createMembersPanel } from "./members";
import { roomSettingsForm } from "./roomsettings";
import { blockedSection, formStatus, profileSection } from "./account";
import { displayName, isBlocked, noteProfile, peopleVersion, setBlocked, usernameOf } from "./people";

/**
 * How long the newest messages of the open room must have been in sight
 * before the server is told they are read: one MarkRead for a burst.
 */
const MARK_READ_DELAY_MS = 1_000;
/** Thread replies remembered per room, so that one counts once on its root. */
const MAX_REPLY_SEQS = 10_000;
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
/**
 * Send attempts before a message is shown as failed, when the server
 * answers with a passing refusal (a lost connection is not one: such a
 * message waits for the connection, however long).
 */
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
  /**
   * Why the server refused it for good (say the room was left): it is
   * never sent again as it is, only edited (persisted).
   */
  refused?: string;
  /** A SendMessage call for it is under way (not persisted). */
  sending?: boolean;
  /** The message it quotes (persisted). */
  replyToId?: string;
}

interface RoomState {
  room: Room;
  /** Loaded messages by seq: always one contiguous range. */
  messages: Map<bigint, Message>;
  /**
   * Membership and room changes heard on the stream, by seq ("bob
   * joined"): History has none, so they show from when this page heard them.
   */
  notices: Map<bigint, Notice>;
  /** Whether older messages than the loaded ones exist. */
  hasMore: boolean;
  historyLoaded: boolean;
  loadingOlder: boolean;
  /** username -> when their typing indicator ends. */
  typing: Map<string, number>;
  /**
   * The room's people seen here (senders, those mentioned, those online in
   * it), by id: whom `@` offers in its composers.
   */
  people: Map<string, User>;
  /** Seqs of the thread replies counted on their roots (a reply comes twice: echo and send). */
  replies: Set<bigint>;
  /** A direct room's other member's read marker, from their `read` events. */
  theirRead: bigint;
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
    return raw.map(({ clientMsgId, roomId, text, refused, replyToId }) => ({ clientMsgId, roomId, text, refused, replyToId }));
  } catch {
    return [];
  }
}

function savePending(): void {
  const plain = state.pending.map(({ clientMsgId, roomId, text, refused, replyToId }) => ({
    clientMsgId,
    roomId,
    text,
    refused,
    replyToId,
  }));
  if (plain.length) localStorage.setItem(storageKey("pending"), JSON.stringify(plain));
  else localStorage.removeItem(storageKey("pending"));
}

// ---------- app state ----------

const state = {
  rooms: new Map<string, RoomState>(),
  /** Per room: every message up to this seq has been received. */
  cursors: new Map<string, bigint>(),
  activeRoomId: "" as string,
  online: new Map<string, User>(),
  pending: [] as Pending[],
  /** Per room: when we last told others we are typing. */
  lastTypingSent: new Map<string, number>(),
  /** Tells of typing at the end of the throttle window, if it went on. */
  typingTimer: undefined as number | undefined,
  view: "chat" as "chat" | "sessions",
  drawerOpen: false,
  /** The reader, as the stream's `ready` and `profile` events say (display name included). */
  me: undefined as User | undefined,
};

// ---------- errors ----------

const errorBox = h("div", { class: "errors", "data-testid": "errors", role: "alert" });

function showError(text: string): void {
  const item = h(
    "div",
    { class: "error", "data-testid": "error" },
    h("span", {}, text),
    h("button", { class: "icon", title: "Dismiss", "aria-label": "Dismiss", onclick: () => item.remove() }, "×"),
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

/** The live stream, and whether it is live. */
const connection = createConnection({
  subscribe: (signal) => chatClient.subscribe({ cursors: resumeCursors() }, { signal }),
  onEvent: (ev) => handleEvent(ev),
  onState: () => {
    renderConnection();
    // A message waiting for the connection says so, and says when it is sending again.
    if (state.pending.length) renderMessages();
  },
  onError: (text) => showError(text),
  refresh: refreshNow,
  loggedIn: () => currentAuth() !== null,
  describe,
});

initNotifications({
  me: () => currentAuth()?.user.id,
  open: (roomId) => {
    selectRoom(roomId);
    closeDrawer();
  },
});

setOnSessionLost((reason) => {
  connection.stop();
  renderLogin(reason);
});

// ---------- login page ----------

function renderLogin(message?: string): void {
  connection.stop();
  showAttention(0);
  document.title = "Chat";
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
    "aria-describedby": "auth-hint",
    oninput: () => password.removeAttribute("aria-invalid"),
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
    h(
      "p",
      { class: "muted", id: "auth-hint" },
      `Log in, or create an account with a new username and a password of ${PASSWORD_MIN_CHARS} to ${PASSWORD_MAX_CHARS} characters.`,
    ),
    username,
    password,
    h("div", { class: "row" }, ...buttons),
    status,
  ) as HTMLFormElement;
  buttons[1].addEventListener("click", async () => {
    if (!form.reportValidity()) return;
    // Checked here, in characters, before the server sees it.
    const problem = passwordLengthProblem(password.value);
    if (problem) {
      status.className = "auth-status bad";
      status.textContent = problem;
      password.setAttribute("aria-invalid", "true");
      password.focus();
      return;
    }
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
  app.append(errorBox, h("main", { class: "auth-page" }, form));
  username.focus();
}

// ---------- chat page skeleton ----------

/** The message menu, reactions, replies, edits and threads' counts (src/messages/conversation.ts). */
const conversation = createConversation({
  me: () => currentAuth()?.user.id,
  current: (m) => findMessage(m.roomId, m.id),
  change: (m, f) => {
    if (changeMessage(m.roomId, m.id, f) && m.roomId === state.activeRoomId) renderMessages();
  },
  rerender: () => renderMessages(),
  reveal: (roomId, messageId) => void revealMessage(roomId, messageId),
  // The thread panel (thread.ts) beside the room.
  openThread: (root, opener) => openThread(root, opener),
  focusComposer: () => composer.focus(),
  error: (text) => showError(text),
});

/** The open room's messages (src/messages/): renderMessages feeds it. */
const messageList = createMessageList<Pending>({
  actions: conversation.actions,
  // Under a thread's root: "3 replies", which opens the thread.
  parts: [...conversation.parts, threadSummary((m, opener) => openThread(m, opener))],
  above: conversation.above,
  body: conversation.body,
  // Names and blocks change what a message shows: it is built anew then.
  variant: (m) => conversation.variant(m) ?? peopleVersion(),
  pending: {
    retry: (p) => void deliver(p),
    edit: (p) => editRefused(p),
    discard: (p) => {
      state.pending = state.pending.filter((x) => x !== p);
      savePending();
      renderMessages();
    },
  },
});
/** Where a thread, search results or a member list open beside the room. */
const sidePanel = createSidePanel();
/** The thread open in the side panel, if any (thread.ts). */
const threads = createThreads({
  panel: sidePanel,
  me: () => currentAuth()?.user,
  draftsKey: () => storageKey("thread-drafts"),
  mentionNames: (roomId) => mentionNames(roomId),
  sent: (m) => receive(m),
  showError,
});

/** The open room's members, in the side panel (members.ts). */
const membersPanel = createMembersPanel(sidePanel, {
  me: () => currentAuth()?.user.id,
  room: (roomId) => state.rooms.get(roomId)?.room,
  online: (u) => (u.id === currentAuth()?.user.id ? connection.state === "live" : state.online.has(u.id)),
  sawOnline: (u, online) => {
    // A member is someone `@` may offer in the room.
    const rs = state.rooms.get(membersPanel.roomId);
    if (rs) notePerson(rs, u);
    if (online === state.online.has(u.id)) return;
    if (online) state.online.set(u.id, u);
    else state.online.delete(u.id);
    renderOnline();
  },
  blockChanged: () => {
    renderMessages();
    renderOnline();
  },
});

/**
 * Opens the side panel on the thread of `message` (a root, or a reply:
 * its root's thread). The message menu's "Reply in thread" calls it.
 */
function openThread(message: Message, opener?: HTMLElement): void {
  threads.open(message, opener);
}

const el = {
  shell: h("div", { class: "shell" }),
  connection: h("span", { class: "connection", "data-testid": "connection" }),
  // Said while the connection is lost (empty, and so out of sight, while it is not).
  offlineBanner: h("div", { class: "offline-banner", "data-testid": "offline-banner", role: "status" }),
  me: h("span", { class: "me", "data-testid": "me" }),
  roomsList: h("nav", { class: "rooms", "data-testid": "rooms" }),
  browseList: h("div", { class: "browse", "data-testid": "browse", hidden: true }),
  roomTitle: h("h2", { "data-testid": "room-title" }),
  roomTopic: h("p", { class: "room-topic muted small", "data-testid": "room-topic", dir: "auto", hidden: true }),
  membersButton: h("button", { class: "small-button", "data-testid": "members-button", hidden: true }, "Members"),
  settingsButton: h("button", { class: "small-button", "data-testid": "room-settings-button", hidden: true }, "Room settings"),
  leave: h("button", { class: "small-button", "data-testid": "leave-room", hidden: true }, "Leave room"),
  loadOlder: h("button", { class: "load-older", "data-testid": "load-older", hidden: true }, "Load older messages"),
  messages: messageList.log,
  typing: h("div", { class: "typing", "data-testid": "typing", "aria-live": "polite" }),
  online: h("ul", { class: "online", "data-testid": "online" }),
  // The page's main landmark: the chat, or the sessions page (one shows at a time).
  main: h("main", { class: "pane" }),
  sessions: h("main", { class: "sessions-page", "data-testid": "sessions-page", hidden: true }),
};

const composer = new Composer({
  draftsKey: () => storageKey("drafts"),
  onSubmit: (roomId, text) => {
    void send(roomId, text, conversation.takeReply(roomId)?.id);
    return true;
  },
  onInput: () => noteTyping(),
  mentionNames: (roomId) => mentionNames(roomId),
  // The newest messages stay in sight above a growing composer.
  onResize: (delta) => {
    el.messages.scrollTop += delta;
  },
});

function startChat(): void {
  const a = currentAuth();
  if (!a) return renderLogin();
  state.rooms.clear();
  state.online.clear();
  state.me = undefined;
  setBlocked([]);
  // Messages not yet sent before a reload go out once the stream is up.
  state.pending = loadPending();
  state.activeRoomId = localStorage.getItem(storageKey("active")) ?? "";
  state.cursors = loadSeqs("cursors");
  // Read markers live on the server now (Room.last_read_seq).
  localStorage.removeItem(storageKey("read"));
  state.view = "chat";
  document.title = `Chat · ${a.user.username}`;
  buildShell(a.user.username);
  void boot();
}

function buildShell(username: string): void {
  clear(app);
  clear(el.shell);
  renderMe(username);

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
          closeDrawer();
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
          closeDrawer();
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
  el.membersButton.onclick = () => membersPanel.open(state.activeRoomId, el.membersButton);
  el.settingsButton.onclick = () => openRoomSettings();
  el.messages.onscroll = () => {
    if (el.messages.scrollTop < 40) void loadOlder();
  };

  clear(el.main);
  el.main.append(
    h(
      "div",
      { class: "pane-head room-head" },
      h("div", { class: "room-heading" }, el.roomTitle, el.roomTopic),
      h("div", { class: "room-tools" }, el.membersButton, el.settingsButton, el.leave),
    ),
    el.offlineBanner,
    messageList.element,
    el.typing,
    conversation.replyBar,
    composer.root,
  );
  messageList.element.before(el.loadOlder);

  const people = h(
    "aside",
    { class: "people", "aria-labelledby": "online-heading" },
    h("h2", { class: "label", id: "online-heading", title: "People online who share a room with you" }, "Online in your rooms"),
    el.online,
  );
  el.shell.append(
    header,
    // Errors show under the header, in the flow: they push the messages
    // up, and cover neither the composer nor its Send button.
    errorBox,
    h(
      "div",
      { class: "body" },
      sidebar,
      h("div", { class: "scrim", onclick: () => closeDrawer() }),
      el.main,
      sidePanel.element,
      el.sessions,
      people,
    ),
  );
  el.main.hidden = false;
  el.sessions.hidden = true;
  app.append(el.shell);
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
  // content comes from History when opened (what is unread, the server says).
  for (const rs of state.rooms.values()) {
    if (!rs.room.joined) continue;
    if (!state.cursors.has(rs.room.id)) state.cursors.set(rs.room.id, rs.room.lastSeq);
  }
  saveSeqs("cursors", state.cursors);
  keepJoinedDrafts();
  if (!state.rooms.get(state.activeRoomId)?.room.joined) {
    state.activeRoomId = [...state.rooms.values()].find((r) => r.room.joined)?.room.id ?? "";
  }
  selectRoom(state.activeRoomId);
  connection.start();
  // Whom the reader blocks: their messages are collapsed. A server without
  // blocking has nobody blocked.
  chatClient
    .listBlockedUsers({})
    .then((res) => {
      setBlocked(res.users);
      renderMessages();
      renderOnline();
    })
    .catch((e) => {
      if (ConnectError.from(e).code !== Code.Unimplemented && !connectionLost(e)) {
        showError(`Could not list the users you block: ${describe(e)}`);
      }
    });
}

async function refreshRooms(): Promise<void> {
  const rooms = await attempt("Could not list rooms", listAllRooms);
  if (!rooms) return;
  for (const room of rooms) addRoom(room, false);
  renderRooms();
}

/** Drafts are kept for the rooms this person is in, and no others. */
function keepJoinedDrafts(): void {
  // No room list (it failed to load): nothing is known to be left.
  if (!state.rooms.size) return;
  composer.keepDraftsOf(new Set([...state.rooms.values()].filter((r) => r.room.joined).map((r) => r.room.id)));
}

function addRoom(room: Room, render = true): RoomState {
  let rs = state.rooms.get(room.id);
  if (rs) {
    const held = rs.room;
    if (room.lastSeq < held.lastSeq) {
      // An answer older than what the stream has brought since: its counts
      // miss messages already counted here; only a marker further on is news.
      room.lastSeq = held.lastSeq;
      room.unreadCount = held.unreadCount;
      room.mentionCount = held.mentionCount;
      if (held.lastReadSeq > room.lastReadSeq) room.lastReadSeq = held.lastReadSeq;
    } else if (held.lastReadSeq > room.lastReadSeq) {
      // Read here since the server counted (a MarkRead on its way).
      room.lastReadSeq = held.lastReadSeq;
      if (held.lastReadSeq >= room.lastSeq) {
        room.unreadCount = 0;
        room.mentionCount = 0;
      }
    }
    rs.room = room;
    if (room.peerLastReadSeq > rs.theirRead) rs.theirRead = room.peerLastReadSeq;
  } else {
    rs = {
      room,
      messages: new Map(),
      notices: new Map(),
      hasMore: false,
      historyLoaded: false,
      loadingOlder: false,
      typing: new Map(),
      people: new Map(),
      replies: new Set(),
      theirRead: room.peerLastReadSeq,
    };
    state.rooms.set(room.id, rs);
  }
  if (room.joined) {
    // A room joined now: live messages flow from here on.
    if (!state.cursors.has(room.id)) {
      state.cursors.set(room.id, room.lastSeq);
      saveSeqs("cursors", state.cursors);
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
 * Whether the person is reading the room now: it is open, the window is
 * seen and has the focus, and its newest messages are in sight.
 */
function beingRead(rs: RoomState): boolean {
  return (
    rs.room.id === state.activeRoomId &&
    state.view === "chat" &&
    document.visibilityState !== "hidden" &&
    document.hasFocus() &&
    rs.historyLoaded &&
    el.messages.scrollHeight - el.messages.scrollTop - el.messages.clientHeight < 60
  );
}

/**
 * How many of a room's messages the person has not read (the server's
 * count, moved on by the stream): none in a room they are reading.
 */
function unread(rs: RoomState): { count: number; mentions: number } {
  if (beingRead(rs)) return { count: 0, mentions: 0 };
  return { count: rs.room.unreadCount, mentions: rs.room.mentionCount };
}

function renderRooms(): void {
  const counts = new Map<string, { count: number; mentions: number }>();
  let total = 0;
  for (const rs of state.rooms.values()) {
    if (!rs.room.joined) continue;
    const n = unread(rs);
    counts.set(rs.room.id, n);
    total += n.count;
  }
  showAttention(total, currentAuth()?.user.username);
  clear(el.roomsList);
  const joined = [...state.rooms.values()].filter((r) => r.room.joined);
  const groups = joined.filter((r) => r.room.kind !== RoomKind.DIRECT);
  const directs = joined.filter((r) => r.room.kind === RoomKind.DIRECT);
  const entry = (rs: RoomState) => {
    const { count, mentions } = counts.get(rs.room.id) ?? { count: 0, mentions: 0 };
    const isUnread = count > 0;
    return h(
      "button",
      {
        class: `room${rs.room.id === state.activeRoomId ? " active" : ""}${isUnread ? " unread" : ""}`,
        "data-testid": "room",
        "data-room-name": rs.room.name,
        "data-unread": isUnread ? "true" : "false",
        "data-private": isPrivate(rs.room) ? "true" : false,
        "aria-current": rs.room.id === state.activeRoomId ? "true" : false,
        onclick: () => {
          selectRoom(rs.room.id);
          closeDrawer();
        },
      },
      h("span", { class: "room-icon", "aria-hidden": "true" }, rs.room.kind === RoomKind.DIRECT ? "@" : "#"),
      h("span", { class: "room-name", dir: "auto" }, rs.room.name),
      privateMark(rs.room),
      mentionBadge(mentions),
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
        privateMark(rs.room),
        rs.room.invited ? h("span", { class: "muted", "data-testid": "invited" }, " (invited)") : null,
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
  composer.setRoom(rs ? roomId : "");
  renderTitle();
  sidePanel.close();
  conversation.openRoom(rs ? roomId : "");
  if (rs) {
    // "New messages" goes above the first message after the read marker.
    messageList.opened(roomId, rs.room.lastReadSeq, newestSeq(rs));
    if (!rs.historyLoaded) void loadHistory(rs);
    void attempt("Could not list the room's online users", async () => {
      const res = await chatClient.listOnlineUsers({ roomId });
      for (const u of res.users) {
        notePerson(rs, u);
        if (u.id !== currentAuth()?.user.id) state.online.set(u.id, u);
      }
      renderOnline();
    });
  }
  renderRooms();
  renderMessages(true);
  renderTyping();
  if (rs && window.matchMedia("(min-width: 721px)").matches) composer.focus();
}

function isPrivate(room: Room): boolean {
  return room.kind === RoomKind.GROUP && room.visibility === RoomVisibility.PRIVATE;
}

/** A lock beside a private room's name; screen readers hear "private". */
function privateMark(room: Room): HTMLElement | null {
  if (!isPrivate(room)) return null;
  return h(
    "span",
    { class: "private-mark", "data-testid": "private-indicator", title: "Private room: joined by invitation" },
    lockIcon(),
    h("span", { class: "visually-hidden" }, " private"),
  );
}

/** A padlock drawn in the text's colour: no emoji font needed. */
function lockIcon(): SVGElement {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", "0 0 16 16");
  svg.setAttribute("class", "lock-icon");
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("focusable", "false");
  const body = document.createElementNS(ns, "rect");
  for (const [k, v] of Object.entries({ x: "3", y: "7", width: "10", height: "8", rx: "1.5", fill: "currentColor" })) body.setAttribute(k, v);
  const shackle = document.createElementNS(ns, "path");
  for (const [k, v] of Object.entries({ d: "M5 7V5a3 3 0 0 1 6 0v2", fill: "none", stroke: "currentColor", "stroke-width": "1.8" })) shackle.setAttribute(k, v);
  svg.append(body, shackle);
  return svg;
}

function isModerator(room: Room): boolean {
  return room.myRole === MemberRole.ADMIN || room.myRole === MemberRole.OWNER;
}

/**
 * The open room's name, its lock if private, its topic, and the tools
 * the reader may use on it (room settings: admins and the owner only).
 */
function renderTitle(): void {
  const rs = state.rooms.get(state.activeRoomId);
  const room = rs?.room;
  el.roomTitle.replaceChildren(
    room ? `${room.kind === RoomKind.DIRECT ? "@" : "#"} ${room.name}` : "No room",
    ...(room ? [privateMark(room) ?? ""] : []),
  );
  el.roomTopic.textContent = room?.topic ?? "";
  el.roomTopic.hidden = !room?.topic;
  const group = !!room?.joined && room.kind === RoomKind.GROUP;
  el.leave.hidden = !group;
  el.membersButton.hidden = !room?.joined;
  el.settingsButton.hidden = !group || !isModerator(room!);
  // Settings open for someone who is no longer an admin: they go.
  if (el.settingsButton.hidden && sidePanel.isOpen && sidePanel.element.querySelector('[data-testid="room-settings"]')) {
    sidePanel.close();
  }
}

/** The open room's settings, in the side panel. */
function openRoomSettings(): void {
  const roomId = state.activeRoomId;
  sidePanel.open(
    "Room settings",
    roomSettingsForm({
      room: () => state.rooms.get(roomId)?.room,
      saved: (room) => {
        const rs = state.rooms.get(room.id);
        if (!rs) return;
        rs.room.name = room.name;
        rs.room.topic = room.topic;
        rs.room.visibility = room.visibility;
        if (room.id === state.activeRoomId) renderTitle();
        renderRooms();
        membersPanel.refresh();
      },
    }),
    el.settingsButton,
  );
}

/** The reader in the header: their display name, their username in its tooltip. */
function renderMe(username = currentAuth()?.user.username ?? ""): void {
  const me = state.me ?? ({ username, displayName: "" } as User);
  el.me.textContent = me.displayName || username;
  el.me.title = `Logged in as @${username}`;
}

// ---------- read markers ----------

let markReadTimer: number | undefined;
/** Per room: how far the person was seen reading, not yet told to the server. */
const readsToTell = new Map<RoomState, bigint>();

/**
 * The open room's newest messages are in sight: they are read. The counts
 * go at once; the server hears of it a second later, in one MarkRead for
 * a burst of messages (its `read` event then clears the counts on the
 * person's other devices).
 */
function markRead(): void {
  const rs = state.rooms.get(state.activeRoomId);
  if (!rs || !rs.room.joined || !beingRead(rs)) return;
  const seq = newestSeq(rs);
  if (seq <= rs.room.lastReadSeq) return;
  const counted = rs.room.unreadCount || rs.room.mentionCount;
  rs.room.lastReadSeq = seq;
  rs.room.unreadCount = 0;
  rs.room.mentionCount = 0;
  if (counted) renderRooms();
  readsToTell.set(rs, seq);
  markReadTimer ??= window.setTimeout(tellReads, MARK_READ_DELAY_MS);
}

function tellReads(): void {
  markReadTimer = undefined;
  for (const [rs, seq] of readsToTell) {
    chatClient
      .markRead({ roomId: rs.room.id, seq })
      .then((res) => readTo(rs, res.lastReadSeq))
      .catch((e) => {
        // A marker not stored is told again with the next message read; a
        // lost connection already shows.
        if (!connectionLost(e) && ConnectError.from(e).code !== Code.Unimplemented) {
          showError(`Could not mark the room read: ${describe(e)}`);
        }
      });
  }
  readsToTell.clear();
}

/**
 * The person's marker in a room moved to `marker` (a MarkRead answer, or a
 * `read` event from another of their devices): what is up to it is read.
 */
function readTo(rs: RoomState, marker: bigint): void {
  if (marker <= rs.room.lastReadSeq) return;
  rs.room.lastReadSeq = marker;
  if (marker >= newestSeq(rs)) {
    rs.room.unreadCount = 0;
    rs.room.mentionCount = 0;
  } else {
    // Read up to a point short of the newest: what is loaded after it is
    // all this browser can count (thread replies are not loaded here).
    const me = currentAuth()?.user.id;
    let count = 0;
    let mentions = 0;
    for (const m of rs.messages.values()) {
      if (m.seq <= marker || m.deleted || m.sender?.id === me) continue;
      count++;
      if (m.mentions.some((u) => u.id === me)) mentions++;
    }
    rs.room.unreadCount = Math.min(rs.room.unreadCount, count);
    rs.room.mentionCount = Math.min(rs.room.mentionCount, mentions);
  }
  renderRooms();
}

/** A `read` event: ours moves the marker everywhere; another's is a receipt. */
function readEvent(roomId: string, user: User | undefined, marker: bigint): void {
  const rs = state.rooms.get(roomId);
  if (!rs || !user) return;
  if (user.id === currentAuth()?.user.id) {
    readTo(rs, marker);
    return;
  }
  notePerson(rs, user);
  if (rs.room.kind === RoomKind.DIRECT && marker > rs.theirRead) {
    rs.theirRead = marker;
    if (rs.room.id === state.activeRoomId) renderSeen(rs);
  }
}

/** "Seen" under my last message of a direct room, once the other member has read it. */
function renderSeen(rs: RoomState | undefined): void {
  const me = currentAuth()?.user.id;
  let mine: Message | undefined;
  if (rs && rs.room.kind === RoomKind.DIRECT) {
    for (const m of rs.messages.values()) if (m.sender?.id === me && (!mine || m.seq > mine.seq)) mine = m;
  }
  const seen = rs && mine && !mine.deleted && rs.theirRead >= mine.seq ? mine.seq : undefined;
  showSeen(el.messages, seen, rs?.room.name ?? "");
}

// ---------- people, for @mentions ----------

function notePerson(rs: RoomState, u: User | undefined): void {
  noteProfile(u);
  if (u && u.id && u.username && !rs.people.has(u.id)) rs.people.set(u.id, u);
}

function noteMessagePeople(rs: RoomState, m: Message): void {
  notePerson(rs, m.sender);
  for (const u of m.mentions) notePerson(rs, u);
  notePerson(rs, m.replyTo?.sender);
}

/**
 * Whom `@` offers in a room: its people seen here (senders of its loaded
 * messages, those they mention, those online in it), and in a direct room
 * the other member, the reader left out; and the members the member panel
 * listed, once it was opened.
 */
function mentionNames(roomId: string): string[] {
  const rs = state.rooms.get(roomId);
  if (!rs) return [];
  const me = currentAuth()?.user;
  const names = new Set<string>();
  for (const u of rs.people.values()) if (u.id !== me?.id && u.username !== "[deleted]") names.add(u.username);
  if (rs.room.kind === RoomKind.DIRECT && rs.room.name !== me?.username) names.add(rs.room.name);
  return [...names];
}

async function leaveRoom(): Promise<void> {
  const rs = state.rooms.get(state.activeRoomId);
  if (!rs) return;
  const ok = await attempt(`Could not leave ${rs.room.name}`, () => chatClient.leaveRoom({ roomId: rs.room.id }));
  if (ok === undefined) return;
  notMember(rs);
}

/**
 * The person is not in the room any more (they left it here or elsewhere,
 * were removed or banned): its messages and cursor go, and it leaves the
 * room list (a private one altogether, a public one for "Browse rooms").
 */
function notMember(rs: RoomState): void {
  rs.room.joined = false;
  rs.room.myRole = MemberRole.UNSPECIFIED;
  rs.messages.clear();
  rs.notices.clear();
  rs.historyLoaded = false;
  if (rs.room.visibility === RoomVisibility.PRIVATE) state.rooms.delete(rs.room.id);
  state.cursors.delete(rs.room.id);
  saveSeqs("cursors", state.cursors);
  keepJoinedDrafts();
  if (rs.room.id === state.activeRoomId || !state.rooms.get(state.activeRoomId)?.room.joined) {
    selectRoom([...state.rooms.values()].find((r) => r.room.joined)?.room.id ?? "");
  } else {
    renderRooms();
  }
}

/** Who someone is, as the timeline says it. */
function nameOf(u: User | undefined): string {
  return u?.displayName || u?.username || "someone";
}

/** What a membership change says in the timeline; none for the unsaid ones. */
function memberNotice(ev: ServerEvent_MemberEvent): Notice | undefined {
  const who = nameOf(ev.user);
  const by = ev.by && ev.by.id !== ev.user?.id ? ` by ${nameOf(ev.by)}` : "";
  const why = ev.reason ? `: ${ev.reason}` : "";
  const say = (kind: string, text: string): Notice => ({ seq: ev.seq, kind, text, at: new Date() });
  switch (ev.change) {
    case MemberChange.JOINED:
      return say("joined", `${who} joined`);
    case MemberChange.LEFT:
      return say("left", `${who} left`);
    case MemberChange.REMOVED:
      return say("removed", `${who} was removed${by}${why}`);
    case MemberChange.BANNED:
      return say("banned", `${who} was banned${by}${why}`);
    case MemberChange.INVITED:
      return say("invited", `${who} was invited${by}`);
    case MemberChange.UNBANNED:
      return say("unbanned", `${who} was unbanned${by}`);
    case MemberChange.ROLE_CHANGED: {
      const role =
        ev.role === MemberRole.OWNER ? "the owner" : ev.role === MemberRole.ADMIN ? "an admin" : "a member";
      return say("role", `${who} is now ${role}`);
    }
    default:
      return undefined;
  }
}

/**
 * A `member` event: an event of the room's log with a seq of its own. It
 * moves the cursor (not counted unread) and shows as a line among the
 * messages; one about the person themself changes their room list.
 */
function memberEvent(ev: ServerEvent_MemberEvent): void {
  const rs = state.rooms.get(ev.roomId);
  const mine = ev.user?.id !== undefined && ev.user.id === currentAuth()?.user.id;
  const gone = [MemberChange.LEFT, MemberChange.REMOVED, MemberChange.BANNED].includes(ev.change);
  if (mine && gone) {
    if (rs?.room.joined) {
      if (ev.change !== MemberChange.LEFT) showError(`You were ${ev.change === MemberChange.BANNED ? "banned" : "removed"} from ${rs.room.name}${ev.reason ? `: ${ev.reason}` : ""}.`);
      notMember(rs);
    }
    return;
  }
  if (!rs || !rs.room.joined) {
    // Joined on another device (or a room not heard of): the room list
    // brings it, and its cursor starts at its last seq.
    if (mine && ev.change === MemberChange.JOINED) void refreshRooms();
    return;
  }
  if (mine && ev.change === MemberChange.ROLE_CHANGED) {
    rs.room.myRole = ev.role;
    if (rs.room.id === state.activeRoomId) renderTitle();
  } else if (ev.change === MemberChange.ROLE_CHANGED && ev.role === MemberRole.OWNER && rs.room.myRole === MemberRole.OWNER) {
    // The room was handed over: the old owner is an admin now.
    rs.room.myRole = MemberRole.ADMIN;
    if (rs.room.id === state.activeRoomId) renderTitle();
  }
  if (ev.change === MemberChange.JOINED) notePerson(rs, ev.user);
  membersPanel.memberEvent(ev);
  if (mine) membersPanel.refresh();
  // One's own join is no news here (and may come before JoinRoom answers).
  const notice = mine && ev.change === MemberChange.JOINED ? undefined : memberNotice(ev);
  if (notice) rs.notices.set(notice.seq, notice);
  roomEvent(rs, ev.seq);
}

/** A room's name, topic or visibility changed: its shared fields, and a line. */
function roomUpdated(ev: ServerEvent_RoomUpdated): void {
  const now = ev.room;
  const rs = now && state.rooms.get(now.id);
  if (!now || !rs) return;
  const who = nameOf(ev.by);
  if (now.name !== rs.room.name) {
    rs.notices.set(ev.seq, { seq: ev.seq, kind: "renamed", text: `${who} renamed the room to ${now.name}`, at: new Date() });
  } else if (now.topic !== rs.room.topic) {
    const text = now.topic ? `${who} set the topic: ${now.topic}` : `${who} cleared the topic`;
    rs.notices.set(ev.seq, { seq: ev.seq, kind: "topic", text, at: new Date() });
  }
  rs.room.name = now.name;
  rs.room.topic = now.topic;
  rs.room.visibility = now.visibility;
  rs.room.memberCount = now.memberCount;
  if (rs.room.id === state.activeRoomId) renderTitle();
  membersPanel.refresh();
  if (rs.room.joined) roomEvent(rs, ev.seq);
  else renderRooms();
}

/** An event of a room's log that is no message: its seq is heard, and shown. */
function roomEvent(rs: RoomState, seq: bigint): void {
  advanceCursor(rs.room.id, seq);
  if (seq > rs.room.lastSeq) rs.room.lastSeq = seq;
  if (rs.room.id === state.activeRoomId) renderMessages();
  renderRooms();
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
  for (const m of messages) {
    rs.messages.set(m.seq, m);
    noteMessagePeople(rs, m);
  }
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
    // A room we have not heard of yet (say a direct message to us): the
    // room list says what is unread, and the cursor starts below it.
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
  noteMessagePeople(rs, m);
  if (m.threadRootId) {
    threadReply(rs, m);
    return;
  }
  if (rs.messages.has(m.seq)) {
    // Known already (the stream's echo came before the send's reply): the
    // list changes only if a "sending…" copy just went.
    if (settled && rs.room.id === state.activeRoomId) renderMessages();
    return;
  }
  const newest = newestSeq(rs);
  const heard = state.cursors.get(m.roomId) ?? 0n;
  rs.messages.set(m.seq, m);
  countUnread(rs, m);
  // Keep the loaded range whole: if events came before this one that the
  // stream did not bring, page in the messages among them. (Seqs count the
  // room's events, edits and deletions too, so a message's seq may skip.)
  if (rs.messages.size > 1 && m.seq > newest + 1n && m.seq > heard + 1n) void fillGap(rs, m.seq);
  advanceCursor(m.roomId, m.seq);
  clearTyping(rs, m.sender?.username);
  if (rs.room.id === state.activeRoomId && document.visibilityState === "hidden") {
    messageList.cameUnseen(rs.room.id, rs.room.lastReadSeq);
  }
  if (rs.room.id === state.activeRoomId) renderMessages();
  renderRooms();
  notifyMessage(m, rs.room);
}

/**
 * A new event's message (seq beyond the room's last known one): from
 * someone else, it is unread unless the room is being read (MarkRead
 * follows). One seen before (the room list counted it) counts once.
 */
function countUnread(rs: RoomState, m: Message): void {
  if (m.seq <= rs.room.lastSeq) return;
  rs.room.lastSeq = m.seq;
  const me = currentAuth()?.user.id;
  if (m.sender?.id === me || m.seq <= rs.room.lastReadSeq) return;
  if (beingRead(rs)) return;
  if (rs.room.unreadCount < 9999) rs.room.unreadCount++;
  if (m.mentions.some((u) => u.id === me) && rs.room.mentionCount < 9999) rs.room.mentionCount++;
}

/**
 * A thread reply: shown in the thread panel if its thread is open, counted
 * on its root in the room (once: it comes as the stream's echo and as the
 * send's answer), never in the room's list itself.
 */
function threadReply(rs: RoomState, m: Message): void {
  threads.receive(m);
  advanceCursor(m.roomId, m.seq);
  if (rs.replies.has(m.seq)) return;
  if (rs.replies.size >= MAX_REPLY_SEQS) rs.replies.clear();
  rs.replies.add(m.seq);
  countUnread(rs, m);
  // History counted it already if it is not newer than the root's last reply.
  if (changeMessage(m.roomId, m.threadRootId, (root) => countThreadReply(root, m)) && rs.room.id === state.activeRoomId) {
    renderMessages();
  }
  renderRooms();
  notifyMessage(m, rs.room);
}

/**
 * Pages in the messages between the newest one loaded below `upTo` and
 * `upTo`, back to that one: seqs skip (edits, deletions), so the gap ends
 * at the loaded message, not at a seq.
 */
async function fillGap(rs: RoomState, upTo: bigint): Promise<void> {
  let floor = 0n;
  for (const s of rs.messages.keys()) if (s < upTo && s > floor) floor = s;
  let before = upTo;
  while (before > floor + 1n) {
    const res = await attempt("Could not load missed messages", () =>
      chatClient.history({ roomId: rs.room.id, beforeSeq: before, limit: 200 }),
    );
    if (!res || !res.messages.length) return;
    for (const m of res.messages) if (m.seq > floor) rs.messages.set(m.seq, m);
    before = res.messages[0].seq;
    if (rs.room.id === state.activeRoomId) renderMessages();
    if (!res.hasMore) return;
  }
}

/**
 * An edit or a deletion: an event of the room's log with a seq of its own.
 * The message, if loaded, changes in place (a deletion leaves a tombstone);
 * the seq counts as heard, and not as an unread message.
 */
function changed(roomId: string, seq: bigint, message?: Message, deletedId?: string): void {
  const rs = state.rooms.get(roomId);
  if (!rs) return;
  // Stream messages carry no reactions or thread counts: an edit keeps
  // those held (and the quotes of it change with it).
  if (message) {
    changeMessage(roomId, message.id, (held) => mergeEdited(held, message));
    threads.update(message);
  }
  if (deletedId) {
    const me = currentAuth()?.user.id;
    for (const [s, m] of rs.messages) {
      if (m.id !== deletedId) continue;
      // An unread message deleted is not unread any more.
      if (!m.deleted && s > rs.room.lastReadSeq && m.sender?.id !== me && rs.room.unreadCount > 0) rs.room.unreadCount--;
    }
    changeMessage(roomId, deletedId, tombstone);
    threads.erase(roomId, deletedId);
  }
  advanceCursor(roomId, seq);
  if (seq > rs.room.lastSeq) rs.room.lastSeq = seq;
  if (rs.room.id === state.activeRoomId) renderMessages();
  renderRooms();
}

/** The held message `id` of a room, if loaded. */
function findMessage(roomId: string, id: string): Message | undefined {
  for (const m of state.rooms.get(roomId)?.messages.values() ?? []) if (m.id === id) return m;
  return undefined;
}

/**
 * Changes the held message `id` of a room by `f`, and the quotes of it in
 * the replies held; false when it is not loaded.
 */
function changeMessage(roomId: string, id: string, f: (m: Message) => Message): boolean {
  const rs = state.rooms.get(roomId);
  const old = rs && findMessage(roomId, id);
  if (!rs || !old) return false;
  const now = f(old);
  if (now === old) return true;
  rs.messages.set(now.seq, now);
  for (const [s, m] of rs.messages) if (m.replyTo?.messageId === id) rs.messages.set(s, updateQuote(m, now));
  return true;
}

/** Most History pages paged through to find a quoted message. */
const MAX_REVEAL_PAGES = 40;

/**
 * Scrolls to a message of the open room and highlights it, loading older
 * pages until it is there (a quoted message may be far back).
 */
async function revealMessage(roomId: string, id: string): Promise<void> {
  const rs = state.rooms.get(roomId);
  if (!rs || roomId !== state.activeRoomId) return;
  for (let pages = 0; pages <= MAX_REVEAL_PAGES; ) {
    const m = findMessage(roomId, id);
    if (m && !m.threadRootId) {
      renderMessages();
      messageList.reveal(m.seq);
      return;
    }
    if (m || !rs.hasMore || state.activeRoomId !== roomId) break;
    if (rs.loadingOlder) {
      await sleep(50);
      continue;
    }
    pages++;
    await loadOlder();
  }
  if (state.activeRoomId === roomId) showError("The quoted message is not in this room's list.");
}

function renderMessages(toBottom = false): void {
  const rs = state.rooms.get(state.activeRoomId);
  el.loadOlder.hidden = !rs?.hasMore;
  const view = rs && {
    roomId: rs.room.id,
    messages: [...rs.messages.values()].sort((a, b) => (a.seq < b.seq ? -1 : a.seq > b.seq ? 1 : 0)),
    notices: [...rs.notices.values()].sort((a, b) => (a.seq < b.seq ? -1 : a.seq > b.seq ? 1 : 0)),
    loaded: rs.historyLoaded,
    pending: state.pending.filter((p) => p.roomId === rs.room.id),
    me: currentAuth()?.user,
    live: connection.state === "live",
  };
  messageList.render(view, toBottom);
  renderSeen(rs);
  // The newest messages in sight: read, a second from now.
  markRead();
}

async function send(roomId: string, text: string, replyToId?: string): Promise<void> {
  const p: Pending = { clientMsgId: crypto.randomUUID(), roomId, text, replyToId };
  // The message ends the typing hint on the other side: typing again is news.
  cancelTyping();
  state.lastTypingSent.delete(roomId);
  state.pending.push(p);
  savePending();
  renderMessages(true);
  sendQueue = sendQueue.then(() => deliver(p));
  await sendQueue;
}


/**
 * Whether the server refused a message for good (too long, bad
 * characters, a room left or gone): sending it again as it is cannot
 * work. A lost session or a cancelled call is not that.
 */
function refusedForGood(err: ConnectError): boolean {
  return !retryable(err) && err.code !== Code.Unauthenticated && err.code !== Code.Canceled;
}

/**
 * A message the server refused for good goes back to its room's
 * composer, to be fixed and sent again; when that composer holds other
 * text, it stays in the list as "Not sent", with Edit.
 */
function refused(p: Pending, err: ConnectError): void {
  const reason = describe(err);
  if (composer.putBack(p.roomId, p.text)) {
    state.pending = state.pending.filter((x) => x !== p);
    const room = state.rooms.get(p.roomId)?.room;
    const where =
      p.roomId === state.activeRoomId || !room
        ? "the composer"
        : `the composer of ${room.kind === RoomKind.DIRECT ? "@" : "#"} ${room.name}`;
    showError(`Message not sent: ${reason}. It is back in ${where}, to fix and send again.`);
  } else {
    p.refused = reason;
    showError(`Message not sent: ${reason}`);
  }
  savePending();
  renderMessages();
}

/** "Edit" on a refused message: into the composer, out of the list. */
function editRefused(p: Pending): void {
  state.pending = state.pending.filter((x) => x !== p);
  savePending();
  composer.edit(p.text);
  renderMessages();
}

function retryable(err: ConnectError): boolean {
  return [Code.Unavailable, Code.Unknown, Code.DeadlineExceeded, Code.Aborted, Code.Internal, Code.ResourceExhausted].includes(
    err.code,
  );
}

/** The longest pause between two sends of a message whose send got no answer. */
const MAX_SEND_BACKOFF_MS = 15_000;

/**
 * Sends with the same client_msg_id until it lands: the server stores it
 * once. While the connection is lost the message waits, in its place in
 * the queue, and goes out when the stream is live again.
 */
async function deliver(p: Pending): Promise<void> {
  if (p.sending || !state.pending.includes(p)) return;
  p.sending = true;
  p.error = undefined;
  renderMessages();
  try {
    for (let i = 1; ; i++) {
      while (connection.state !== "live" && currentAuth() && state.pending.includes(p)) await connection.whenLive();
      if (!currentAuth() || !state.pending.includes(p)) return;
      try {
        const res = await chatClient.sendMessage({
          roomId: p.roomId,
          text: p.text,
          clientMsgId: p.clientMsgId,
          replyToId: p.replyToId ?? "",
        });
        state.pending = state.pending.filter((x) => x !== p);
        savePending();
        if (res.message) receive(res.message);
        // Whether or not the message was news, its "sending…" copy is gone.
        renderMessages();
        return;
      } catch (e) {
        const err = ConnectError.from(e);
        if (connectionLost(err) && currentAuth()) {
          // No answer is no refusal: the message waits for the connection
          // (and says so), then goes again.
          renderMessages();
          await sleep(Math.min(500 * 2 ** i, MAX_SEND_BACKOFF_MS));
          continue;
        }
        if (refusedForGood(err)) return refused(p, err);
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
  if (!roomId || !composer.text.trim() || state.typingTimer !== undefined) return;
  const wait = (state.lastTypingSent.get(roomId) ?? 0) + TYPING_THROTTLE_MS - Date.now();
  if (wait <= 0) {
    sendTyping(roomId);
    return;
  }
  state.typingTimer = window.setTimeout(() => {
    state.typingTimer = undefined;
    if (state.activeRoomId === roomId && composer.text.trim()) sendTyping(roomId);
  }, wait);
}

function sendTyping(roomId: string): void {
  // Offline, a typing hint would arrive too late to mean anything.
  if (connection.state !== "live") return;
  state.lastTypingSent.set(roomId, Date.now());
  chatClient.sendTyping({ roomId }).catch((e) => {
    // A lost typing hint matters little. A lost connection already shows
    // as "offline — reconnecting"; anything else the person hears of.
    if (!connectionLost(e)) showError(`Typing indicator not sent: ${describe(e)}`);
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
  const byUsername = new Map([...(rs?.people.values() ?? [])].map((u) => [u.username, u]));
  const names = rs
    ? [...rs.typing].filter(([, until]) => until > now).map(([n]) => displayName(byUsername.get(n) ?? ({ username: n } as User)))
    : [];
  el.typing.textContent =
    names.length === 0
      ? ""
      : names.length === 1
        ? `${names[0]} is typing…`
        : `${names.slice(0, -1).join(", ")} and ${names[names.length - 1]} are typing…`;
}

function renderOnline(): void {
  clear(el.online);
  const users = [...state.online.values()]
    .filter((u) => !isBlocked(u))
    .sort((a, b) => displayName(a).localeCompare(displayName(b)));
  if (!users.length) el.online.append(h("li", { class: "muted" }, "Nobody else is online."));
  for (const u of users) {
    el.online.append(
      h(
        "li",
        { "data-testid": "online-user", "data-username": u.username },
        h("span", { class: "dot" }),
        h("span", { title: usernameOf(u), dir: "auto" }, displayName(u)),
        h(
          "button",
          {
            class: "link small",
            title: `Message ${displayName(u)}`,
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

/** What the header's pill says in each state: a word, and what follows it on wide screens. */
const CONNECTION_LABELS: Record<ConnectionState, [string, string]> = {
  connecting: ["connecting…", ""],
  live: ["online", ""],
  offline: ["offline", " — reconnecting"],
};

/**
 * The connection's state, said honestly: the header's pill (on phones only
 * its dot and first word show; screen readers hear it all), and while the
 * connection is lost, a banner above the messages.
 */
function renderConnection(): void {
  const c = connection.state;
  const [word, more] = CONNECTION_LABELS[c];
  el.connection.replaceChildren(
    h("span", { class: "connection-dot", "aria-hidden": "true" }),
    h("span", { class: "connection-word" }, word),
    ...(more ? [h("span", { class: "connection-more" }, more)] : []),
  );
  el.connection.className = `connection ${c}`;
  el.connection.setAttribute("data-state", c);
  el.connection.title = word + more;
  const banner = c === "offline" ? "You are offline. Reconnecting… Messages you send will go out once the connection is back." : "";
  if (el.offlineBanner.textContent !== banner) el.offlineBanner.textContent = banner;
}

// ---------- the live stream ----------

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => window.setTimeout(resolve, ms));
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

function handleEvent(ev: ServerEvent): void {
  const me = currentAuth()?.user.id;
  switch (ev.event.case) {
    case "ready": {
      const { user } = ev.event.value;
      if (user) {
        state.me = user;
        noteProfile(user, true);
        renderMe();
      }
      state.online.clear();
      for (const u of ev.event.value.onlineUsers) if (u.id !== me) state.online.set(u.id, u);
      renderOnline();
      // Sends that failed while offline, or were left by a reload, go out again.
      for (const p of state.pending) {
        if (!p.sending && !p.refused) sendQueue = sendQueue.then(() => deliver(p));
      }
      break;
    }
    case "message":
      receive(ev.event.value);
      break;
    case "sent":
      if (ev.event.value.message) receive(ev.event.value.message);
      break;
    case "edited": {
      const { seq, message } = ev.event.value;
      if (message) changed(message.roomId, seq, message);
      break;
    }
    case "deleted": {
      const { seq, roomId, messageId } = ev.event.value;
      changed(roomId, seq, undefined, messageId);
      break;
    }
    case "reaction": {
      // reacted_by_me is ours to tell: the reaction is ours if we made it.
      const { seq, roomId, messageId, emoji, user, added } = ev.event.value;
      changeMessage(roomId, messageId, (m) => applyReaction(m, emoji, added, user?.id === me));
      changed(roomId, seq);
      break;
    }
    case "read": {
      const { roomId, user, lastReadSeq } = ev.event.value;
      readEvent(roomId, user, lastReadSeq);
      break;
    }
    case "presence": {
      const { user, online } = ev.event.value;
      if (user && user.id !== me) {
        if (online) state.online.set(user.id, user);
        else state.online.delete(user.id);
        renderOnline();
        membersPanel.refresh();
      }
      break;
    }
    case "profile": {
      // Someone's display name changed: everywhere it shows, at once.
      const { user } = ev.event.value;
      if (!user) break;
      noteProfile(user, true);
      if (user.id === me) {
        state.me = user;
        renderMe();
      }
      if (state.online.has(user.id)) state.online.set(user.id, user);
      renderMessages();
      renderOnline();
      renderTyping();
      membersPanel.refresh();
      break;
    }
    case "typing": {
      const { roomId, user } = ev.event.value;
      const rs = state.rooms.get(roomId);
      // Those the reader blocks are not heard (the server sends none; an older one may).
      if (rs && user && user.id !== me && !isBlocked(user)) {
        notePerson(rs, user);
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
    case "member":
      memberEvent(ev.event.value);
      break;
    case "roomUpdated":
      roomUpdated(ev.event.value);
      break;
    case "invited": {
      // An invitation (no room event: the room is not ours yet): the room
      // shows under "Browse rooms", to join.
      const { room } = ev.event.value;
      if (room && !state.rooms.get(room.id)?.room.joined) {
        room.invited = true;
        addRoom(room);
      }
      break;
    }
    case "error": {
      const { roomId, code, message } = ev.event.value;
      showError(`Server: ${message}`);
      // A room this person may no longer read (removed while away) or that
      // is gone: not resumed again.
      const rs = roomId ? state.rooms.get(roomId) : undefined;
      if (rs && (code === Code.PermissionDenied || code === Code.NotFound)) notMember(rs);
      break;
    }
    case "resync": {
      // More was missed than a resume sends: the stream goes on from
      // from_seq; what lies before it comes from History, one page now and
      // the rest through "load older".
      const { roomId, fromSeq } = ev.event.value;
      const rs = state.rooms.get(roomId);
      if (rs) {
        rs.messages.clear();
        rs.notices.clear();
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
  composer.fit();
}

/**
 * The sessions page: where this account is logged in, and the ways to end
 * other logins (one at a time, all at once, or by changing the password).
 */
async function showSessions(): Promise<void> {
  state.view = "sessions";
  // A thread or the members belong to the room, not to this page.
  sidePanel.close();
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
    profileSection(state.me, (u) => {
      noteProfile(u, true);
      state.me = u;
      renderMe();
    }),
    blockedSection(() => {
      renderMessages();
      renderOnline();
    }),
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
        current.removeAttribute("aria-invalid");
        next.removeAttribute("aria-invalid");
        // Checked here, in characters, before the server sees it.
        const problem = passwordLengthProblem(next.value, "The new password");
        if (problem) {
          status.say(`${problem} Your password was not changed.`, true);
          next.setAttribute("aria-invalid", "true");
          next.focus();
          return;
        }
        submit.disabled = true;
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
    h("p", { id: "new-password-hint", class: "muted small" }, `${PASSWORD_MIN_CHARS} to ${PASSWORD_MAX_CHARS} characters. Your other devices will be logged out.`),
    h("div", { class: "row" }, submit),
    status.node,
  );
}

async function logout(): Promise<void> {
  connection.stop();
  try {
    await authClient.logout({});
  } catch (e) {
    const err = ConnectError.from(e);
    // Already gone is as good as logged out; anything else is worth saying.
    if (err.code !== Code.Unauthenticated) showError(`Logout on the server failed: ${describe(err)}`);
  }
  // A shared computer keeps nothing of what was being written.
  composer.clearDrafts();
  saveAuth(null);
  renderLogin("You are logged out.");
}

// Typing indicators expire on their own.
window.setInterval(() => {
  const rs = state.rooms.get(state.activeRoomId);
  if (rs && rs.typing.size) renderTyping();
}, 1_000);

// Back on the tab or the window, or scrolled down to the newest: the open
// room is read (and its count goes).
const lookedAgain = () => {
  if (!state.rooms.has(state.activeRoomId)) return;
  markRead();
  renderRooms();
};
document.addEventListener("visibilitychange", lookedAgain);
window.addEventListener("focus", lookedAgain);
window.addEventListener("blur", lookedAgain);
let wasReading = false;
el.messages.addEventListener(
  "scroll",
  () => {
    const rs = state.rooms.get(state.activeRoomId);
    const reading = !!rs && beingRead(rs);
    // Reached the bottom, or left it: the count goes, or shows.
    if (reading !== wasReading) lookedAgain();
    wasReading = reading;
  },
  { passive: true },
);

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
  // Not while offline: the connection's state says that already.
  if (currentAuth() && app.querySelector(".shell") && connection.state === "live") void refreshRooms();
}, 30_000);
