// ChatClient: one HTTP/2 connection to chat-server (native gRPC, not
// grpc-web), the session's tokens attached to every call and refreshed
// before they expire, and the RPCs as plain async methods.
import { createClient, type Client, type Interceptor, type Transport } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import {
  AuthService,
  ChatService,
  type HistoryResponse,
  type ListThreadResponse,
  type Member,
  type MemberRole,
  type Message,
  type Room,
  type RoomVisibility,
  type ServerEvent,
  type User,
} from "./gen/chat/v1/chat_pb.js";
import { ChatStream, type ChatStreamOptions, type Cursors, type SendOptions } from "./chat-stream.js";
import { ResumingChatStream, type Connection, type ResumingChatStreamOptions } from "./resuming-stream.js";

/** A logged-in session's tokens. */
export interface Session {
  accessToken: string;
  refreshToken: string;
  /** When the access token expires, in milliseconds since the epoch. */
  expiresAt: number;
  /** When it was issued (here: received), in milliseconds since the epoch. */
  issuedAt: number;
  user: User;
  sessionId: string;
}

export interface ChatClientOptions {
  /** Server address: `host:port` or `http://host:port`. */
  address: string;
  /** Use this transport instead of creating one (for tests, or TLS). */
  transport?: Transport;
  /** Start with an access token obtained elsewhere (no refresh then). */
  accessToken?: string;
}

/** Options of `listRooms`. */
export interface ListRoomsOptions {
  /** Rooms asked for per call: 0 (the default) means the server's 100; at most 1000. */
  pageSize?: number;
  /** Only the rooms the caller is a member of. */
  joinedOnly?: boolean;
}

/** Options of `createRoom`. */
export interface CreateRoomOptions {
  /** 0 to 512 characters. */
  topic?: string;
  /** Unspecified (the default) means public. */
  visibility?: RoomVisibility;
}

/** What `updateRoom` changes: each field given is set, the others kept. */
export interface RoomChanges {
  name?: string;
  topic?: string;
  visibility?: RoomVisibility;
}

/** Options of `listMembers`. */
export interface ListMembersOptions {
  /** Members asked for per call: 0 (the default) means the server's 100; at most 1000. */
  pageSize?: number;
}

/** What `updateProfile` changes: each field given is set, the others kept. */
export interface ProfileChanges {
  /** Shown instead of the username: 0 to 64 characters; "" clears it. */
  displayName?: string;
}

/** Options of `searchUsers`. */
export interface SearchUsersOptions {
  /** Users asked for: 0 (the default) means the server's 20; at most 20. */
  limit?: number;
}

/** Options of `removeMember`. */
export interface RemoveMemberOptions {
  /** Also refuse the user's later joins and invitations (a non-member can be banned too). */
  ban?: boolean;
  /** Up to 512 characters, shown to the room with the `member` event. */
  reason?: string;
}

/** The calls that need no token. */
const PUBLIC = new Set(["Register", "Login", "Refresh"]);

export class ChatClient {
  readonly transport: Transport;
  /** The generated clients, for anything the wrapper does not cover. */
  readonly authService: Client<typeof AuthService>;
  readonly chatService: Client<typeof ChatService>;
  /** The current session, after `login`. */
  session: Session | undefined;
  private accessToken: string | undefined;
  private refreshing: Promise<Session> | undefined;
  /** How to open a connection of one's own; none with a transport given from outside. */
  private readonly connect: (() => Connection) | undefined;

  constructor(options: ChatClientOptions | string) {
    const opts = typeof options === "string" ? { address: options } : options;
    const baseUrl = /^https?:\/\//.test(opts.address) ? opts.address : `http://${opts.address}`;
    this.accessToken = opts.accessToken;
    const auth: Interceptor = (next) => async (req) => {
      if (!(req.service.typeName === AuthService.typeName && PUBLIC.has(req.method.name))) {
        const token = await this.currentToken();
        if (token) req.header.set("authorization", `Bearer ${token}`);
      }
      return next(req);
    };
    // The gRPC transport of connect-node always speaks HTTP/2 (it has no
    // httpVersion option in v2).
    this.transport = opts.transport ?? createGrpcTransport({ baseUrl, interceptors: [auth] });
    this.authService = createClient(AuthService, this.transport);
    this.chatService = createClient(ChatService, this.transport);
    if (!opts.transport) {
      this.connect = () => {
        const sessionManager = new Http2SessionManager(baseUrl);
        const transport = createGrpcTransport({ baseUrl, interceptors: [auth], sessionManager });
        return { chatService: createClient(ChatService, transport), close: () => sessionManager.abort() };
      };
    }
  }

  /** Creates an account. */
  async register(username: string, password: string): Promise<User> {
    const res = await this.authService.register({ username, password });
    return res.user!;
  }

  /** Logs in: a new session whose tokens this client then uses (and refreshes). */
  async login(username: string, password: string): Promise<Session> {
    const res = await this.authService.login({ username, password });
    const now = Date.now();
    this.session = {
      accessToken: res.accessToken,
      refreshToken: res.refreshToken,
      expiresAt: res.accessTokenExpiresAt ? timestampMs(res.accessTokenExpiresAt) : now + 15 * 60_000,
      issuedAt: now,
      user: res.user!,
      sessionId: res.sessionId,
    };
    this.accessToken = res.accessToken;
    return this.session;
  }

  /** Trades the refresh token for new tokens (done for you before the access token expires). */
  refresh(): Promise<Session> {
    this.refreshing ??= (async () => {
      const session = this.session;
      if (!session) throw new Error("not logged in");
      try {
        const res = await this.authService.refresh({ refreshToken: session.refreshToken });
        const now = Date.now();
        this.session = {
          ...session,
          accessToken: res.accessToken,
          refreshToken: res.refreshToken,
          expiresAt: res.accessTokenExpiresAt ? timestampMs(res.accessTokenExpiresAt) : now + 15 * 60_000,
          issuedAt: now,
        };
        this.accessToken = res.accessToken;
        return this.session;
      } finally {
        this.refreshing = undefined;
      }
    })();
    return this.refreshing;
  }

  /** Ends this session on the server; its open streams end. */
  async logout(): Promise<void> {
    await this.authService.logout({});
    this.session = undefined;
    this.accessToken = undefined;
  }

  /**
   * Changes the account's password; the server checks the current one
   * (PermissionDenied "wrong password" when it is wrong). Every other
   * session of the account ends; this one goes on.
   */
  async changePassword(currentPassword: string, newPassword: string): Promise<void> {
    await this.authService.changePassword({ currentPassword, newPassword });
  }

  /** Ends every session of the account but this one ("log out other devices"); resolves with how many ended. */
  async revokeOtherSessions(): Promise<number> {
    return (await this.authService.revokeOtherSessions({})).revoked;
  }

  /**
   * Creates a group room, public unless asked private; we are its owner.
   * Creating is no event of the room's log: a new room's lastSeq is 0.
   */
  async createRoom(name: string, options: CreateRoomOptions = {}): Promise<Room> {
    return (await this.chatService.createRoom({ name, topic: options.topic ?? "", visibility: options.visibility ?? 0 })).room!;
  }

  /**
   * Joins a group room: a public one, or a private one we are invited to
   * (accepting the invitation). The join is a room event (`member`, JOINED)
   * with its own seq: the room's lastSeq in the answer. PermissionDenied
   * when banned, or for a private room without an invitation.
   */
  async joinRoom(roomId: string): Promise<Room> {
    return (await this.chatService.joinRoom({ roomId })).room!;
  }

  /** Leaves a group room, or declines an invitation to one; leaving a room we are not in succeeds. */
  async leaveRoom(roomId: string): Promise<void> {
    await this.chatService.leaveRoom({ roomId });
  }

  /**
   * Changes a group room's name, topic or visibility (admins and the owner;
   * PermissionDenied otherwise, FailedPrecondition for a direct room);
   * resolves with the room as it is now. Members get a `roomUpdated` event.
   */
  async updateRoom(roomId: string, changes: RoomChanges): Promise<Room> {
    return (await this.chatService.updateRoom({ roomId, ...changes })).room!;
  }

  /**
   * Invites a user, by username, to a group room: any member of a public
   * room, admins and the owner of a private one. The invitee gets `invited`
   * and sees the room with `invited` in listRooms; the room gets a `member`
   * event (INVITED). FailedPrecondition for a member or a banned user.
   */
  async inviteToRoom(roomId: string, username: string): Promise<void> {
    await this.chatService.inviteToRoom({ roomId, username });
  }

  /**
   * A room's members (members only), owner first, then admins, then
   * members, each by when they joined. ListMembers answers a page at a
   * time; this follows the pages to the last.
   */
  async listMembers(roomId: string, options: ListMembersOptions = {}): Promise<Member[]> {
    const members: Member[] = [];
    for await (const member of this.members(roomId, options)) members.push(member);
    return members;
  }

  /** The members of `listMembers`, fetching each page only when it is reached. */
  async *members(roomId: string, options: ListMembersOptions = {}): AsyncGenerator<Member> {
    let pageToken = "";
    do {
      const page = await this.chatService.listMembers({ roomId, pageSize: options.pageSize ?? 0, pageToken });
      yield* page.members;
      pageToken = page.nextPageToken;
    } while (pageToken !== "");
  }

  /**
   * Makes a member an admin or a plain member (the owner only); OWNER hands
   * the room to that member, and we become an admin.
   */
  async setMemberRole(roomId: string, userId: string, role: MemberRole): Promise<void> {
    await this.chatService.setMemberRole({ roomId, userId, role });
  }

  /**
   * Removes a member (admins remove members, the owner admins too; nobody
   * the owner), and with `ban` refuses their later joins and invitations.
   * Their streams get the `member` event and nothing more of the room.
   */
  async removeMember(roomId: string, userId: string, options: RemoveMemberOptions = {}): Promise<void> {
    await this.chatService.removeMember({ roomId, userId, ban: options.ban ?? false, reason: options.reason ?? "" });
  }

  /** Lifts a ban (admins and the owner); lifting one that is not there succeeds. */
  async unbanMember(roomId: string, userId: string): Promise<void> {
    await this.chatService.unbanMember({ roomId, userId });
  }

  /**
   * Sets our display name (shown instead of the username where set; ""
   * clears it); with nothing given, changes nothing. Resolves with us as we
   * are now, which `session.user` then holds. InvalidArgument beyond 64
   * characters, or for control, invisible or bidi-control characters.
   * Everyone who shares a room with us, and our own streams, get `profile`.
   */
  async updateProfile(changes: ProfileChanges): Promise<User> {
    const user = (await this.chatService.updateProfile(changes)).user!;
    if (this.session) this.session.user = user;
    return user;
  }

  /**
   * The users whose username or display name starts with `prefix` (1 to 32
   * characters, InvalidArgument otherwise; case does not matter), by
   * username, at most 20. Users who blocked us are left out.
   */
  async searchUsers(prefix: string, options: SearchUsersOptions = {}): Promise<User[]> {
    return (await this.chatService.searchUsers({ prefix, limit: options.limit ?? 0 })).users;
  }

  /**
   * Blocks a user, by username: they can no longer open a direct room with
   * us, send in one we share, or invite us to a room (PermissionDenied "you
   * cannot message this user"), our streams get no typing or presence from
   * them, and our name drops out of their searches. Messages in shared
   * group rooms still arrive. Blocking twice succeeds; NotFound for an
   * unknown user, InvalidArgument for ourselves.
   */
  async blockUser(username: string): Promise<void> {
    await this.chatService.blockUser({ username });
  }

  /** Lifts a block; unblocking someone not blocked succeeds (NotFound for an unknown user). */
  async unblockUser(username: string): Promise<void> {
    await this.chatService.unblockUser({ username });
  }

  /** The users we block, by username. */
  async listBlockedUsers(): Promise<User[]> {
    return (await this.chatService.listBlockedUsers({})).users;
  }

  /**
   * Every group room and our direct rooms (or, with `joinedOnly`, only the
   * rooms we are in), in order of creation. ListRooms answers a page at a
   * time; this follows the pages to the last.
   */
  async listRooms(options: ListRoomsOptions = {}): Promise<Room[]> {
    const rooms: Room[] = [];
    for await (const room of this.rooms(options)) rooms.push(room);
    return rooms;
  }

  /** The rooms of `listRooms`, fetching each page only when it is reached. */
  async *rooms(options: ListRoomsOptions = {}): AsyncGenerator<Room> {
    let pageToken = "";
    do {
      const page = await this.chatService.listRooms({
        pageSize: options.pageSize ?? 0,
        pageToken,
        joinedOnly: options.joinedOnly ?? false,
      });
      yield* page.rooms;
      pageToken = page.nextPageToken;
    } while (pageToken !== "");
  }

  /** The direct room with another user, created on first use. */
  async openDirectRoom(username: string): Promise<Room> {
    return (await this.chatService.openDirectRoom({ username })).room!;
  }

  /**
   * Sends with a unary call; a retry with the same clientMsgId stores nothing
   * twice (and returns the original, reply and thread included). `replyToId`
   * quotes a message of the room; `threadRootId` makes this a reply in the
   * thread of a top-level message (NotFound for a message of another room;
   * InvalidArgument when the root is itself a thread reply).
   */
  async send(roomId: string, text: string, clientMsgId = "", options: SendOptions = {}): Promise<Message> {
    return (
      await this.chatService.sendMessage({
        roomId,
        text,
        clientMsgId,
        replyToId: options.replyToId ?? "",
        threadRootId: options.threadRootId ?? "",
      })
    ).message!;
  }

  /**
   * Replaces the text of one of our messages; resolves with the message as
   * it is now. PermissionDenied for someone else's message, FailedPrecondition
   * for a deleted one; the same text again changes nothing and makes no event.
   */
  async editMessage(roomId: string, messageId: string, text: string): Promise<Message> {
    return (await this.chatService.editMessage({ roomId, messageId, text })).message!;
  }

  /**
   * Erases one of our messages: it stays as a tombstone (`deleted`, no text,
   * no reactions). PermissionDenied for someone else's; deleting again succeeds.
   */
  async deleteMessage(roomId: string, messageId: string): Promise<void> {
    await this.chatService.deleteMessage({ roomId, messageId });
  }

  /**
   * Adds our reaction: one emoji ("👍", "❤️"; InvalidArgument otherwise).
   * Adding it twice changes nothing; FailedPrecondition on a deleted message;
   * ResourceExhausted beyond 20 different emoji of ours on one message.
   */
  async addReaction(roomId: string, messageId: string, emoji: string): Promise<void> {
    await this.chatService.addReaction({ roomId, messageId, emoji });
  }

  /** Removes our reaction; removing one that is not there succeeds. */
  async removeReaction(roomId: string, messageId: string, emoji: string): Promise<void> {
    await this.chatService.removeReaction({ roomId, messageId, emoji });
  }

  /**
   * Moves our read marker in a room forward to `seq` (every event up to it
   * is read); resolves with where it is now, which is never smaller than
   * before and never past the room's last seq. Our other streams, and the
   * other members of small rooms, get a `read` event.
   */
  async markRead(roomId: string, seq: bigint): Promise<bigint> {
    return (await this.chatService.markRead({ roomId, seq })).lastReadSeq;
  }

  /**
   * A page of a thread's replies (ascending seq), older than `beforeSeq`
   * (0: the newest), and its root as it is now.
   */
  async listThread(
    roomId: string,
    threadRootId: string,
    opts: { beforeSeq?: bigint; limit?: number } = {},
  ): Promise<ListThreadResponse> {
    return this.chatService.listThread({ roomId, threadRootId, beforeSeq: opts.beforeSeq ?? 0n, limit: opts.limit ?? 0 });
  }

  /** The unary twin of `ChatStream.typing`. */
  async typing(roomId: string): Promise<void> {
    await this.chatService.sendTyping({ roomId });
  }

  /**
   * A page of a room's top-level messages (ascending seq), older than
   * `beforeSeq` (0: the newest), each as it is now, with its reactions and
   * thread counts (thread replies are in `listThread`).
   */
  async history(roomId: string, opts: { beforeSeq?: bigint; limit?: number } = {}): Promise<HistoryResponse> {
    return this.chatService.history({ roomId, beforeSeq: opts.beforeSeq ?? 0n, limit: opts.limit ?? 0 });
  }

  /** Online members of a room, or every online user sharing a room with us. */
  async onlineUsers(roomId = ""): Promise<User[]> {
    return (await this.chatService.listOnlineUsers({ roomId })).users;
  }

  /** Opens a ChatStream: events down, send/typing/ping up. */
  chatStream(options: ChatStreamOptions = {}): ChatStream {
    return new ChatStream(this.chatService, options);
  }

  /**
   * A ChatStream that reconnects by itself and resumes from its cursors
   * after any drop, and after a silence of twice the heartbeat interval
   * (over a new connection then): its events hold every message once, in
   * order per room. Ends only on `close()` or an error no reconnecting
   * fixes (a revoked session).
   */
  resumingStream(options: ResumingChatStreamOptions = {}): ResumingChatStream {
    return new ResumingChatStream(
      {
        shared: () => ({ chatService: this.chatService, close: () => {} }),
        fresh: () => this.connect?.(),
        refresh: () => this.refresh(),
      },
      options,
    );
  }

  /** A receive-only stream (Subscribe), for completeness; prefer `chatStream`. */
  subscribe(cursors: Cursors = new Map(), signal?: AbortSignal): AsyncIterable<ServerEvent> {
    return this.chatService.subscribe(
      { cursors: [...cursors].map(([roomId, afterSeq]) => ({ roomId, afterSeq })) },
      { signal },
    );
  }

  /** The access token to send, refreshed first when it is close to expiring. */
  private async currentToken(): Promise<string | undefined> {
    const s = this.session;
    if (s) {
      // Refresh in the last third of the token's life, at most a minute early.
      const margin = Math.min(60_000, (s.expiresAt - s.issuedAt) / 3);
      if (Date.now() > s.expiresAt - margin) await this.refresh();
    }
    return this.accessToken;
  }
}

/**
 * Cursors at each joined room's newest message, e.g. from
 * `listRooms({ joinedOnly: true })`: a stream then gets only new messages.
 */
export function cursorsAt(rooms: Room[]): Cursors {
  return new Map(rooms.filter((r) => r.joined).map((r) => [r.id, r.lastSeq]));
}
