"""A small synchronous client for the chat.v1 gRPC API.

`ChatClient` holds one channel and the session's tokens: it adds
`authorization: Bearer <access_token>` to every ChatService call, refreshes
the access token shortly before it expires, and, should the server still
answer UNAUTHENTICATED "access token expired", refreshes and retries once.
`chat_client.aio.AsyncChatClient` is the same client for asyncio; what the
two share, every decision but the I/O, is in `_common.py`.

`ChatClient.events()` is an iterator over live server events (a `Subscribe`
stream) that survives disconnections: it keeps a cursor per room (the newest
seq it has yielded), reconnects with backoff and resumes from those cursors,
so every message is yielded once, in seq order per room.

A connection can also die without closing (a laptop sleeps, a NAT forgets
it, the server hangs): the stream just goes quiet. The server sends a
heartbeat every `ready.heartbeat_interval`, so the iterator keeps a
watchdog: no event at all, heartbeats included, for twice that interval
(and a margin) and the stream counts as dead, is cancelled and resumed.
"""

from __future__ import annotations

import threading
import time
from typing import Iterable, Iterator, Mapping

import grpc

from ._common import (  # the constants stay importable from here, where they were
    FIRST_BACKOFF,
    GAP_PAGE,
    MAX_BACKOFF,
    UNTOLD_HEARTBEAT,
    WATCHDOG_MARGIN,
    Backoff,
    ChatError,
    ClientCore,
    Cursors,
    ResumeCore,
    SendRetry,
    Take,
    Then,
    channel_options,
    create_room_request,
    delete_request,
    edit_request,
    is_expired_token,
    mark_read_request,
    members_request,
    reaction_request,
    remove_member_request,
    rooms_request,
    send_request,
    take_older_page,
    thread_request,
    update_profile_request,
    update_room_request,
)
from ._gen.chat.v1 import chat_pb2 as pb
from ._gen.chat.v1 import chat_pb2_grpc as pb_grpc

__all__ = ["ChatClient", "ChatError", "Cursors", "EventStream", "pb"]


class ChatClient(ClientCore):
    """A client of one chat server.

    >>> client = ChatClient("127.0.0.1:50051")
    >>> client.login("alice", "correct horse battery")
    >>> room = client.create_room("general")
    >>> client.send(room.id, "hello")
    """

    def __init__(
        self,
        address: str,
        *,
        timeout: float = 10.0,
        refresh_before_expiry: bool = True,
        user_agent: str = "chat-client-python/0.1",
        channel: grpc.Channel | None = None,
    ):
        super().__init__(
            address, timeout=timeout, refresh_before_expiry=refresh_before_expiry, user_agent=user_agent
        )
        # A channel given from outside (TLS, say) is the only one: event
        # streams then reconnect over it, never over a channel of their own.
        self._own_channels = channel is None
        self._channel = channel or grpc.insecure_channel(address, options=channel_options(user_agent))
        self._auth = pb_grpc.AuthServiceStub(self._channel)
        self._chat = pb_grpc.ChatServiceStub(self._channel)
        self._token_lock = threading.Lock()

    # -- lifecycle -------------------------------------------------------

    def close(self) -> None:
        for stream in list(self._streams):
            stream.close()
        self._channel.close()

    def __enter__(self) -> "ChatClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _new_channel(self) -> grpc.Channel | None:
        """A channel with a connection of its own (not shared with any other
        channel to the same address), if this client makes its channels."""
        if not self._own_channels:
            return None
        return grpc.insecure_channel(
            self.address, options=channel_options(self._user_agent, own_connection=True)
        )

    # -- accounts and tokens ----------------------------------------------

    def register(self, username: str, password: str) -> pb.User:
        """Creates an account (it does not log in)."""
        request = pb.RegisterRequest(username=username, password=password)
        return self._unauthenticated(self._auth.Register, request).user

    def login(self, username: str, password: str) -> pb.User:
        """Opens a session; its tokens are kept and refreshed by this client."""
        request = pb.LoginRequest(username=username, password=password)
        response = self._unauthenticated(self._auth.Login, request)
        with self._token_lock:
            self._logged_in(response)
        return response.user

    def logout(self) -> None:
        self._call(self._auth.Logout, pb.LogoutRequest())
        with self._token_lock:
            self._logged_out()

    def change_password(self, current_password: str, new_password: str) -> None:
        """Changes the account's password; the server checks the current one.

        Every other session of the account ends (its tokens are refused and
        its streams end); this client's session goes on. Raises `ChatError`
        with PERMISSION_DENIED "wrong password" when `current_password` is
        wrong, INVALID_ARGUMENT when `new_password` is not acceptable.
        """
        request = pb.ChangePasswordRequest(
            current_password=current_password, new_password=new_password
        )
        self._call(self._auth.ChangePassword, request)

    def revoke_other_sessions(self) -> int:
        """Ends every session of the account but this one ("log out other
        devices"); returns how many were ended."""
        return self._call(self._auth.RevokeOtherSessions, pb.RevokeOtherSessionsRequest()).revoked

    def _token(self) -> str:
        """A current access token, refreshed first when it is about to expire."""
        token = self._current_token()
        if self._token_due():
            self._refresh(token)
            token = self._access_token
        return token

    def _refresh(self, stale_token: str) -> None:
        """Trades the refresh token for new tokens, once per stale access token
        (threads that find the same token stale refresh it only once)."""
        with self._token_lock:
            request = self._refresh_request(stale_token)
            if request is None:
                return
            try:
                response = self._auth.Refresh(request, timeout=self.timeout)
            except grpc.RpcError as error:
                raise ChatError.from_rpc_error(error) from None
            self._refreshed(response)

    def _unauthenticated(self, rpc, request):
        try:
            return rpc(request, timeout=self.timeout)
        except grpc.RpcError as error:
            raise ChatError.from_rpc_error(error) from None

    def _call(self, rpc, request):
        """A call with the bearer token; on "access token expired", refresh and retry once."""
        token = self._token()
        try:
            return rpc(request, metadata=self._metadata(token), timeout=self.timeout)
        except grpc.RpcError as error:
            if not is_expired_token(error.code(), error.details()):
                raise ChatError.from_rpc_error(error) from None
        self._refresh(token)
        try:
            return rpc(request, metadata=self._metadata(self._token()), timeout=self.timeout)
        except grpc.RpcError as error:
            raise ChatError.from_rpc_error(error) from None

    # -- rooms -----------------------------------------------------------

    def create_room(
        self, name: str, *, topic: str = "", visibility: int = pb.ROOM_VISIBILITY_UNSPECIFIED
    ) -> pb.Room:
        """Creates a group room (public unless `visibility` is
        `pb.ROOM_VISIBILITY_PRIVATE`) with the caller as its owner.
        ALREADY_EXISTS when a group room has the name (regardless of case)."""
        request = create_room_request(name, topic, visibility)
        room = self._call(self._chat.CreateRoom, request).room
        self._room_joined(room)
        return room

    def join_room(self, room_id: str) -> pb.Room:
        room = self._call(self._chat.JoinRoom, pb.JoinRoomRequest(room_id=room_id)).room
        self._room_joined(room)
        return room

    def leave_room(self, room_id: str) -> None:
        self._call(self._chat.LeaveRoom, pb.LeaveRoomRequest(room_id=room_id))
        self._room_left(room_id)

    def list_rooms(self, *, page_size: int = 0, joined_only: bool = False) -> list[pb.Room]:
        """Every group room and the caller's direct rooms, in order of creation.

        ListRooms answers a page at a time; this follows the pages to the
        last. `page_size` is the rooms asked for per call (0: the server's
        default, 100; at most 1000); `joined_only` keeps to the rooms the
        caller is a member of.
        """
        return list(self.iter_rooms(page_size=page_size, joined_only=joined_only))

    def iter_rooms(self, *, page_size: int = 0, joined_only: bool = False) -> Iterator[pb.Room]:
        """The rooms of `list_rooms`, fetching each page only when it is reached."""
        return self._iter_rooms(self._chat, page_size=page_size, joined_only=joined_only)

    def _iter_rooms(self, chat, *, page_size: int = 0, joined_only: bool = False) -> Iterator[pb.Room]:
        """`iter_rooms` over the ChatService stub `chat` (of this client's channel or another)."""
        page_token = ""
        while True:
            page = self._call(chat.ListRooms, rooms_request(page_size, page_token, joined_only))
            yield from page.rooms
            if not page.next_page_token:
                return
            page_token = page.next_page_token

    def find_room(self, name: str) -> pb.Room | None:
        """The group room with this name, if there is one."""
        for room in self.iter_rooms():
            if room.kind == pb.ROOM_KIND_GROUP and room.name == name:
                return room
        return None

    def open_direct_room(self, username: str) -> pb.Room:
        request = pb.OpenDirectRoomRequest(username=username)
        room = self._call(self._chat.OpenDirectRoom, request).room
        self._room_joined(room)
        return room

    # -- room settings and members ----------------------------------------

    def update_room(
        self,
        room_id: str,
        *,
        name: str | None = None,
        topic: str | None = None,
        visibility: int | None = None,
    ) -> pb.Room:
        """Changes what is given of a group room's name, topic ("" clears it)
        and visibility, keeping the rest; returns the room as it is now.
        Members' streams get `room_updated`.

        Admins and the owner only: PERMISSION_DENIED for a member or a
        stranger; ALREADY_EXISTS for another room's name; INVALID_ARGUMENT
        for a name or topic the server's rules refuse; NOT_FOUND for an
        unknown room.
        """
        request = update_room_request(room_id, name, topic, visibility)
        return self._call(self._chat.UpdateRoom, request).room

    def invite_to_room(self, room_id: str, username: str) -> None:
        """Invites a user: any member may to a public room, admins and the
        owner to a private one (PERMISSION_DENIED otherwise). The invitee's
        streams get `invited`; their `join_room` accepts, `leave_room`
        declines. FAILED_PRECONDITION for a member or a banned user,
        NOT_FOUND for an unknown user; PERMISSION_DENIED "you cannot message
        this user" when the invitee blocks the caller."""
        request = pb.InviteToRoomRequest(room_id=room_id, username=username)
        self._call(self._chat.InviteToRoom, request)

    def list_members_page(
        self, room_id: str, *, page_size: int = 0, page_token: str = ""
    ) -> pb.ListMembersResponse:
        """One page of a room's members (owner, admins, members, each by
        when they joined) and the `next_page_token` ("" on the last page).
        `page_size` 0 is the server's 100, at most 1000. Members only
        (PERMISSION_DENIED); INVALID_ARGUMENT for a token the server did not
        issue."""
        request = members_request(room_id, page_size, page_token)
        return self._call(self._chat.ListMembers, request)

    def list_members(self, room_id: str, *, page_size: int = 0) -> list[pb.Member]:
        """Every member of a room, following ListMembers' pages to the last."""
        return list(self.iter_members(room_id, page_size=page_size))

    def iter_members(self, room_id: str, *, page_size: int = 0) -> Iterator[pb.Member]:
        """The members of `list_members`, fetching each page only when it is reached."""
        page_token = ""
        while True:
            page = self.list_members_page(room_id, page_size=page_size, page_token=page_token)
            yield from page.members
            if not page.next_page_token:
                return
            page_token = page.next_page_token

    def set_member_role(self, room_id: str, user_id: str, role: int) -> None:
        """Makes a member `pb.MEMBER_ROLE_ADMIN` or `pb.MEMBER_ROLE_MEMBER`,
        or hands the room over with `pb.MEMBER_ROLE_OWNER` (the old owner
        becomes an admin). The owner only (PERMISSION_DENIED);
        FAILED_PRECONDITION for the owner's own role; INVALID_ARGUMENT for
        an unspecified role."""
        request = pb.SetMemberRoleRequest(room_id=room_id, user_id=user_id, role=role)
        self._call(self._chat.SetMemberRole, request)

    def remove_member(
        self, room_id: str, user_id: str, *, ban: bool = False, reason: str = ""
    ) -> None:
        """Removes a member, and with `ban` refuses their later joins and
        invitations (a non-member can be banned too). `reason` (up to 512
        characters) goes to the room with the `member` event. Admins remove
        members, the owner admins too, nobody the owner (PERMISSION_DENIED)."""
        request = remove_member_request(room_id, user_id, ban, reason)
        self._call(self._chat.RemoveMember, request)

    def unban_member(self, room_id: str, user_id: str) -> None:
        """Lifts a ban (admins and the owner); lifting one that is not there succeeds."""
        self._call(self._chat.UnbanMember, pb.UnbanMemberRequest(room_id=room_id, user_id=user_id))

    # -- people: profiles, search, blocking -----------------------------------

    def update_profile(self, *, display_name: str | None = None) -> pb.User:
        """Sets one's display name ("" clears it; None changes nothing) and
        returns oneself as one is now (also kept as `self.user`). Everyone
        who shares a room, and one's own streams, get `profile`.
        INVALID_ARGUMENT for a name the server's rules refuse (over 64
        characters, control or invisible characters)."""
        user = self._call(self._chat.UpdateProfile, update_profile_request(display_name)).user
        self.user = user
        return user

    def search_users(self, prefix: str, *, limit: int = 0) -> list[pb.User]:
        """Users whose username or display name starts with `prefix`
        (regardless of case), by username; `limit` 0 is the most, 20.
        Users who block the caller are left out. INVALID_ARGUMENT for a
        prefix that is empty or over 32 characters."""
        request = pb.SearchUsersRequest(prefix=prefix, limit=limit)
        return list(self._call(self._chat.SearchUsers, request).users)

    def block_user(self, username: str) -> None:
        """Blocks a user: they can no longer open a direct room with one,
        send in it, or invite one (PERMISSION_DENIED "you cannot message this
        user"), and one's streams get no typing or presence of theirs.
        Blocking twice succeeds. NOT_FOUND for an unknown user,
        INVALID_ARGUMENT for oneself."""
        self._call(self._chat.BlockUser, pb.BlockUserRequest(username=username))

    def unblock_user(self, username: str) -> None:
        """Lifts a block; unblocking someone not blocked succeeds."""
        self._call(self._chat.UnblockUser, pb.UnblockUserRequest(username=username))

    def list_blocked_users(self) -> list[pb.User]:
        """The users one blocks, by username."""
        return list(self._call(self._chat.ListBlockedUsers, pb.ListBlockedUsersRequest()).users)

    # -- messages --------------------------------------------------------

    def send(
        self,
        room_id: str,
        text: str,
        client_msg_id: str | None = None,
        *,
        reply_to_id: str = "",
        thread_root_id: str = "",
        retry_for: float = 15.0,
    ) -> pb.Message:
        """Stores a message and returns it (with its seq).

        `reply_to_id` quotes a message of the room (NOT_FOUND otherwise):
        the answer's `reply_to` previews it. `thread_root_id` makes this a
        reply in the thread of a top-level message of the room (NOT_FOUND
        otherwise; INVALID_ARGUMENT for a thread reply as root): it is
        listed by `list_thread`, not `history`.

        The send carries an idempotency key (a fresh uuid4 unless given), so
        it is retried with the same key when the server is unavailable or
        the answer is lost, for up to `retry_for` seconds: it is stored once
        (a retry returns the original, quote and thread included).
        """
        request = send_request(
            room_id, text, client_msg_id, reply_to_id=reply_to_id, thread_root_id=thread_root_id
        )
        return (self._retrying(self._chat.SendMessage, request, retry_for)).message

    def edit_message(
        self, room_id: str, message_id: str, text: str, *, retry_for: float = 15.0
    ) -> pb.Message:
        """Replaces the text of one of one's own messages; returns it as it is now.

        PERMISSION_DENIED for another's message, FAILED_PRECONDITION for a
        deleted one, NOT_FOUND for an unknown one; the text rules of `send`.
        Retried like a send (an edit is the same edit again).
        """
        request = edit_request(room_id, message_id, text)
        return (self._retrying(self._chat.EditMessage, request, retry_for)).message

    def delete_message(self, room_id: str, message_id: str, *, retry_for: float = 15.0) -> None:
        """Erases one of one's own messages: it stays as a tombstone
        (`deleted`, empty text). Deleting again succeeds. PERMISSION_DENIED
        for another's message."""
        self._retrying(self._chat.DeleteMessage, delete_request(room_id, message_id), retry_for)

    def add_reaction(
        self, room_id: str, message_id: str, emoji: str, *, retry_for: float = 15.0
    ) -> None:
        """Reacts to a message with one emoji ("👍"). Adding it twice succeeds.

        INVALID_ARGUMENT for anything but one emoji, FAILED_PRECONDITION on
        a deleted message, RESOURCE_EXHAUSTED beyond 20 emoji of one's own
        on a message.
        """
        request = reaction_request(room_id, message_id, emoji, added=True)
        self._retrying(self._chat.AddReaction, request, retry_for)

    def remove_reaction(
        self, room_id: str, message_id: str, emoji: str, *, retry_for: float = 15.0
    ) -> None:
        """Takes one's reaction back; removing one that is not there succeeds."""
        request = reaction_request(room_id, message_id, emoji, added=False)
        self._retrying(self._chat.RemoveReaction, request, retry_for)

    def mark_read(self, room_id: str, seq: int) -> int:
        """Moves one's read marker in a room forward to `seq` (every event up
        to it is read) and returns where it is: never back, never past the
        room's last seq. Every stream of one's own gets a `read` event."""
        return self._call(self._chat.MarkRead, mark_read_request(room_id, seq)).last_read_seq

    def list_thread(
        self, room_id: str, thread_root_id: str, before_seq: int = 0, limit: int = 0
    ) -> pb.ListThreadResponse:
        """One page of a thread's replies (ascending seq), older than
        `before_seq`, and its root as it is now (with its reply count)."""
        request = thread_request(room_id, thread_root_id, before_seq, limit)
        return self._call(self._chat.ListThread, request)

    def thread_replies(self, room_id: str, thread_root_id: str) -> list[pb.Message]:
        """Every reply of a thread, ascending, following the pages."""
        collected: list[pb.Message] = []
        before: int | None = 0
        while before is not None:
            page = self.list_thread(room_id, thread_root_id, before_seq=before, limit=GAP_PAGE)
            before = take_older_page(collected, page, 0)
        return collected

    def _retrying(self, rpc, request, retry_for: float):
        """A call that is safe to repeat, repeated while the server is
        unavailable or its answer was lost, for up to `retry_for` seconds."""
        retry = SendRetry(retry_for)
        while True:
            try:
                return self._call(rpc, request)
            except ChatError as error:
                wait = retry.wait_after(error)
                if wait is None:
                    raise
            time.sleep(wait)

    def send_typing(self, room_id: str) -> None:
        self._call(self._chat.SendTyping, pb.SendTypingRequest(room_id=room_id))

    def history(self, room_id: str, before_seq: int = 0, limit: int = 0) -> pb.HistoryResponse:
        """One page of a room's messages (ascending seq), older than `before_seq`."""
        request = pb.HistoryRequest(room_id=room_id, before_seq=before_seq, limit=limit)
        return self._call(self._chat.History, request)

    def messages_between(self, room_id: str, after_seq: int, before_seq: int) -> list[pb.Message]:
        """Every message with after_seq < seq < before_seq (before_seq 0: up to the newest), ascending."""
        collected: list[pb.Message] = []
        before: int | None = before_seq
        while before is not None:
            page = self.history(room_id, before_seq=before, limit=GAP_PAGE)
            before = take_older_page(collected, page, after_seq)
        return collected

    def list_online_users(self, room_id: str = "") -> list[pb.User]:
        request = pb.ListOnlineUsersRequest(room_id=room_id)
        return list(self._call(self._chat.ListOnlineUsers, request).users)

    # -- live events -----------------------------------------------------

    def events(self, cursors: Mapping[str, int] | None = None) -> "EventStream":
        """An iterator over live events that reconnects and resumes.

        `cursors` maps room id to the newest seq the caller already has;
        those rooms resume after it. Every other room the user is in starts
        from its newest message now (this calls ListRooms): whatever is sent
        after `events()` returns is yielded, even before iteration starts.
        """
        stream = EventStream(self, cursors)
        self._streams.append(stream)
        return stream


class EventStream(ResumeCore):
    """Live `ServerEvent`s (protobuf messages) from a resuming `Subscribe`.

    Yields `ready` (once per connection, listing who is online), the events
    of each room's log (`message`, thread replies included, `edited`,
    `deleted`, `reaction`, `member`, `room_updated`: each once, in seq
    order, its seq moving the room's cursor), `read` markers (not in the
    log: no seq, passed as they come), `invited`, `profile`, `presence`,
    `typing` and `error` events; heartbeats (pong with
    nonce 0) are not yielded, but keep the watchdog quiet. A `resync` (more
    missed than the server resends) is handled here: the missing messages
    are paged with History and yielded as `message` events in seq order.
    History has them as they are now (edited text, tombstones, reactions
    and thread counts included) and top-level only: a consumer keeping
    counts should take those messages whole rather than add the events
    they skipped. Ends when `close()` is called; raises `ChatError` for
    failures no reconnect can fix (a revoked session, a room one has left).

    The watchdog: a stream (or a reconnection) that says nothing at all for
    twice `heartbeat_interval` plus `WATCHDOG_MARGIN` is cancelled and
    resumed, over a channel of its own from then on (the old connection is
    likely dead too), unless the client was given its channel. `stalls`
    counts these.
    """

    def __init__(self, client: ChatClient, cursors: Mapping[str, int] | None):
        super().__init__(cursors)
        self._client = client
        self._lock = threading.Lock()
        self._call = None
        self._closed = threading.Event()
        self._stub = client._chat
        self._channel: grpc.Channel | None = None  # its own, after a stall
        # Set while the consumer holds an event: its time is not the stream's silence.
        self._handing_over = False
        # The starting point is now: every message stored after this call
        # is yielded, even if iteration begins later.
        self._start_rooms()
        self._events = self._run()

    def __iter__(self) -> Iterator[pb.ServerEvent]:
        return self

    def __next__(self) -> pb.ServerEvent:
        return next(self._events)

    def disconnect(self) -> None:
        """Drops the current stream; iteration goes on over a resumed one."""
        with self._lock:
            self._disconnects += 1
            call = self._call
        if call is not None:
            call.cancel()

    def close(self) -> None:
        """Ends the iteration (from any thread)."""
        self._closed.set()
        with self._lock:
            call = self._call
        if call is not None:
            call.cancel()
        try:
            self._client._streams.remove(self)
        except ValueError:
            pass

    def _watch(self, call, over: threading.Event, stalled: threading.Event) -> None:
        """Cancels `call` once it has said nothing for too long (a thread per
        connection, until `over` is set). It looks again at least every
        `WATCHDOG_MARGIN`: `ready` may shorten the patience meanwhile."""
        while True:
            left = self._silence_left()
            if left <= 0:
                if not self._handing_over:
                    break
                left = WATCHDOG_MARGIN  # the consumer holds an event: look again later
            if over.wait(min(left, WATCHDOG_MARGIN)):
                return
        stalled.set()
        call.cancel()

    def _renew_channel(self) -> None:
        """After a stall, the connection is likely dead too: a new one."""
        channel = self._client._new_channel()
        if channel is None:
            return
        if self._channel is not None:
            self._channel.close()
        self._channel = channel
        self._stub = pb_grpc.ChatServiceStub(channel)

    def _start_rooms(self) -> None:
        self._start_from(self._client._iter_rooms(self._stub, joined_only=True))

    def _run(self) -> Iterator[pb.ServerEvent]:
        try:
            yield from self._resume()
        finally:
            if self._channel is not None:
                self._channel.close()

    def _resume(self) -> Iterator[pb.ServerEvent]:
        backoff = Backoff()
        while not self._closed.is_set():
            token = None
            over, stalled = threading.Event(), threading.Event()
            with self._lock:
                disconnects = self._disconnects
            try:
                self._start_rooms()
                token = self._client._token()
                call = self._stub.Subscribe(
                    self._subscribe_request(), metadata=self._client._metadata(token)
                )
                with self._lock:
                    self._call = call
                if self._closed.is_set():
                    call.cancel()
                self._opened()
                threading.Thread(
                    target=self._watch, args=(call, over, stalled), daemon=True
                ).start()
                for event in call:
                    backoff.reset()
                    take = self._take(event)
                    if take is Take.FILL_GAP:
                        yield from self._hand_over(self._fill_gap(event.resync))
                    elif take is Take.YIELD:
                        yield from self._hand_over((event,))
                # The server ended the stream without an error: resume.
                code, details = grpc.StatusCode.UNAVAILABLE, "stream ended"
            except grpc.RpcError as error:
                code, details = error.code(), error.details() or ""
            except ChatError as error:
                code, details = error.code, error.details
            finally:
                over.set()
                with self._lock:
                    self._call = None
            if self._closed.is_set():
                return
            then = self._ended(
                code, details, stalled=stalled.is_set(), disconnects_before=disconnects, token=token
            )
            if then is Then.NEW_CHANNEL:
                self._renew_channel()
            elif then is Then.REFRESH:
                self._client._refresh(token)
            elif then is Then.RAISE:
                raise ChatError(code, details)
            elif then is Then.BACK_OFF and self._closed.wait(backoff.next()):
                return

    def _hand_over(self, events: Iterable[pb.ServerEvent]) -> Iterator[pb.ServerEvent]:
        """Yields `events` with the watchdog paused: a consumer slow to ask
        for the next event does not make the stream look silent."""
        self._handing_over = True
        try:
            yield from events
        finally:
            self._handing_over = False
            self._heard()

    def _fill_gap(self, resync: pb.ServerEvent.Resync) -> Iterable[pb.ServerEvent]:
        after = self._gap_start(resync)
        missed = self._client.messages_between(resync.room_id, after, resync.from_seq)
        yield from self._gap_events(missed)
