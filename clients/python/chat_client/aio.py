"""The chat client for asyncio (grpc.aio), beside the blocking `ChatClient`.

`AsyncChatClient` has every method of `ChatClient`, as coroutines, and takes
the same decisions: those live in `_common.py`, which both clients use, so
the two differ only in their I/O. It keeps the session's tokens (refreshed
ahead of expiry, and once more on "access token expired"), retries an
idempotent `send`, and raises the same `ChatError`.

`events()` is an async iterator over live events with the blocking
`EventStream`'s semantics: per-room cursors, resume after any drop, gaps
filled from History on `resync`, and the heartbeat watchdog (no event for
twice `ready.heartbeat_interval` plus a second: the stream is cancelled and
resumed over a channel of its own). The watchdog is a timeout on each read,
so it needs no thread; the time a consumer spends on an event is never
counted, since nothing is read meanwhile.

Make the client inside a running event loop (grpc.aio binds its channel to
it), typically as `async with AsyncChatClient(address) as client:`.
"""

from __future__ import annotations

import asyncio
from typing import AsyncIterator, Mapping

import grpc
import grpc.aio

from ._common import (
    GAP_PAGE,
    Backoff,
    ChatError,
    ClientCore,
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

__all__ = ["AsyncChatClient", "AsyncEventStream"]


class AsyncChatClient(ClientCore):
    """A client of one chat server, for asyncio.

    >>> async with AsyncChatClient("127.0.0.1:50051") as client:
    ...     await client.login("alice", "correct horse battery")
    ...     room = await client.create_room("general")
    ...     await client.send(room.id, "hello")
    """

    def __init__(
        self,
        address: str,
        *,
        timeout: float = 10.0,
        refresh_before_expiry: bool = True,
        user_agent: str = "chat-client-python/0.1",
        channel: grpc.aio.Channel | None = None,
    ):
        super().__init__(
            address, timeout=timeout, refresh_before_expiry=refresh_before_expiry, user_agent=user_agent
        )
        # A channel given from outside (TLS, say) is the only one: event
        # streams then reconnect over it, never over a channel of their own.
        self._own_channels = channel is None
        self._channel = channel or grpc.aio.insecure_channel(address, options=channel_options(user_agent))
        self._auth = pb_grpc.AuthServiceStub(self._channel)
        self._chat = pb_grpc.ChatServiceStub(self._channel)
        self._token_lock = asyncio.Lock()

    # -- lifecycle -------------------------------------------------------

    async def close(self) -> None:
        """Closes the event streams, then the channel."""
        for stream in list(self._streams):
            await stream.aclose()
        await self._channel.close()

    async def __aenter__(self) -> "AsyncChatClient":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    def _new_channel(self) -> grpc.aio.Channel | None:
        """A channel with a connection of its own (not shared with any other
        channel to the same address), if this client makes its channels."""
        if not self._own_channels:
            return None
        return grpc.aio.insecure_channel(
            self.address, options=channel_options(self._user_agent, own_connection=True)
        )

    # -- accounts and tokens ----------------------------------------------

    async def register(self, username: str, password: str) -> pb.User:
        """Creates an account (it does not log in)."""
        request = pb.RegisterRequest(username=username, password=password)
        return (await self._unauthenticated(self._auth.Register, request)).user

    async def login(self, username: str, password: str) -> pb.User:
        """Opens a session; its tokens are kept and refreshed by this client."""
        request = pb.LoginRequest(username=username, password=password)
        response = await self._unauthenticated(self._auth.Login, request)
        self._logged_in(response)
        return response.user

    async def logout(self) -> None:
        await self._call(self._auth.Logout, pb.LogoutRequest())
        self._logged_out()

    async def change_password(self, current_password: str, new_password: str) -> None:
        """Changes the account's password; the server checks the current one.

        Every other session of the account ends; this one goes on. Raises
        `ChatError` with PERMISSION_DENIED "wrong password" when
        `current_password` is wrong, INVALID_ARGUMENT when `new_password` is
        not acceptable.
        """
        request = pb.ChangePasswordRequest(
            current_password=current_password, new_password=new_password
        )
        await self._call(self._auth.ChangePassword, request)

    async def revoke_other_sessions(self) -> int:
        """Ends every session of the account but this one; returns how many ended."""
        request = pb.RevokeOtherSessionsRequest()
        return (await self._call(self._auth.RevokeOtherSessions, request)).revoked

    async def _token(self) -> str:
        """A current access token, refreshed first when it is about to expire."""
        token = self._current_token()
        if self._token_due():
            await self._refresh(token)
            token = self._access_token
        return token

    async def _refresh(self, stale_token: str) -> None:
        """Trades the refresh token for new tokens, once per stale access token
        (tasks that find the same token stale refresh it only once)."""
        async with self._token_lock:
            request = self._refresh_request(stale_token)
            if request is None:
                return
            try:
                response = await self._auth.Refresh(request, timeout=self.timeout)
            except grpc.RpcError as error:
                raise ChatError.from_rpc_error(error) from None
            self._refreshed(response)

    async def _unauthenticated(self, rpc, request):
        try:
            return await rpc(request, timeout=self.timeout)
        except grpc.RpcError as error:
            raise ChatError.from_rpc_error(error) from None

    async def _call(self, rpc, request):
        """A call with the bearer token; on "access token expired", refresh and retry once."""
        token = await self._token()
        try:
            return await rpc(request, metadata=self._metadata(token), timeout=self.timeout)
        except grpc.RpcError as error:
            if not is_expired_token(error.code(), error.details()):
                raise ChatError.from_rpc_error(error) from None
        await self._refresh(token)
        try:
            return await rpc(request, metadata=self._metadata(await self._token()), timeout=self.timeout)
        except grpc.RpcError as error:
            raise ChatError.from_rpc_error(error) from None

    # -- rooms -----------------------------------------------------------

    async def create_room(
        self, name: str, *, topic: str = "", visibility: int = pb.ROOM_VISIBILITY_UNSPECIFIED
    ) -> pb.Room:
        """Creates a group room, public unless `visibility` is
        `pb.ROOM_VISIBILITY_PRIVATE` (as `ChatClient.create_room`)."""
        request = create_room_request(name, topic, visibility)
        room = (await self._call(self._chat.CreateRoom, request)).room
        self._room_joined(room)
        return room

    async def join_room(self, room_id: str) -> pb.Room:
        room = (await self._call(self._chat.JoinRoom, pb.JoinRoomRequest(room_id=room_id))).room
        self._room_joined(room)
        return room

    async def leave_room(self, room_id: str) -> None:
        await self._call(self._chat.LeaveRoom, pb.LeaveRoomRequest(room_id=room_id))
        self._room_left(room_id)

    async def list_rooms(self, *, page_size: int = 0, joined_only: bool = False) -> list[pb.Room]:
        """Every group room and the caller's direct rooms, in order of creation,
        following ListRooms' pages to the last (as `ChatClient.list_rooms`)."""
        return [room async for room in self.iter_rooms(page_size=page_size, joined_only=joined_only)]

    def iter_rooms(self, *, page_size: int = 0, joined_only: bool = False) -> AsyncIterator[pb.Room]:
        """The rooms of `list_rooms`, fetching each page only when it is reached."""
        return self._iter_rooms(self._chat, page_size=page_size, joined_only=joined_only)

    async def _iter_rooms(
        self, chat, *, page_size: int = 0, joined_only: bool = False
    ) -> AsyncIterator[pb.Room]:
        """`iter_rooms` over the ChatService stub `chat` (of this client's channel or another)."""
        page_token = ""
        while True:
            page = await self._call(chat.ListRooms, rooms_request(page_size, page_token, joined_only))
            for room in page.rooms:
                yield room
            if not page.next_page_token:
                return
            page_token = page.next_page_token

    async def find_room(self, name: str) -> pb.Room | None:
        """The group room with this name, if there is one."""
        async for room in self.iter_rooms():
            if room.kind == pb.ROOM_KIND_GROUP and room.name == name:
                return room
        return None

    async def open_direct_room(self, username: str) -> pb.Room:
        request = pb.OpenDirectRoomRequest(username=username)
        room = (await self._call(self._chat.OpenDirectRoom, request)).room
        self._room_joined(room)
        return room

    # -- room settings and members ----------------------------------------
    # The rules and refusals of each call are on `ChatClient`'s twin.

    async def update_room(
        self,
        room_id: str,
        *,
        name: str | None = None,
        topic: str | None = None,
        visibility: int | None = None,
    ) -> pb.Room:
        """Changes what is given of a group room's name, topic ("" clears it)
        and visibility, keeping the rest; returns the room as it is now."""
        request = update_room_request(room_id, name, topic, visibility)
        return (await self._call(self._chat.UpdateRoom, request)).room

    async def invite_to_room(self, room_id: str, username: str) -> None:
        """Invites a user; their `join_room` accepts, `leave_room` declines."""
        request = pb.InviteToRoomRequest(room_id=room_id, username=username)
        await self._call(self._chat.InviteToRoom, request)

    async def list_members_page(
        self, room_id: str, *, page_size: int = 0, page_token: str = ""
    ) -> pb.ListMembersResponse:
        """One page of a room's members and the `next_page_token` ("" on the last)."""
        request = members_request(room_id, page_size, page_token)
        return await self._call(self._chat.ListMembers, request)

    async def list_members(self, room_id: str, *, page_size: int = 0) -> list[pb.Member]:
        """Every member of a room, following ListMembers' pages to the last."""
        return [member async for member in self.iter_members(room_id, page_size=page_size)]

    async def iter_members(self, room_id: str, *, page_size: int = 0) -> AsyncIterator[pb.Member]:
        """The members of `list_members`, fetching each page only when it is reached."""
        page_token = ""
        while True:
            page = await self.list_members_page(room_id, page_size=page_size, page_token=page_token)
            for member in page.members:
                yield member
            if not page.next_page_token:
                return
            page_token = page.next_page_token

    async def set_member_role(self, room_id: str, user_id: str, role: int) -> None:
        """Makes a member an admin or a plain member, or hands the room over (the owner only)."""
        request = pb.SetMemberRoleRequest(room_id=room_id, user_id=user_id, role=role)
        await self._call(self._chat.SetMemberRole, request)

    async def remove_member(
        self, room_id: str, user_id: str, *, ban: bool = False, reason: str = ""
    ) -> None:
        """Removes a member, and with `ban` refuses their later joins and invitations."""
        request = remove_member_request(room_id, user_id, ban, reason)
        await self._call(self._chat.RemoveMember, request)

    async def unban_member(self, room_id: str, user_id: str) -> None:
        """Lifts a ban; lifting one that is not there succeeds."""
        request = pb.UnbanMemberRequest(room_id=room_id, user_id=user_id)
        await self._call(self._chat.UnbanMember, request)

    # -- people: profiles, search, blocking -----------------------------------

    async def update_profile(self, *, display_name: str | None = None) -> pb.User:
        """Sets one's display name ("" clears it; None changes nothing) and
        returns oneself as one is now (also kept as `self.user`)."""
        request = update_profile_request(display_name)
        user = (await self._call(self._chat.UpdateProfile, request)).user
        self.user = user
        return user

    async def search_users(self, prefix: str, *, limit: int = 0) -> list[pb.User]:
        """Users whose username or display name starts with `prefix`, by
        username, at most 20; users who block the caller are left out."""
        request = pb.SearchUsersRequest(prefix=prefix, limit=limit)
        return list((await self._call(self._chat.SearchUsers, request)).users)

    async def block_user(self, username: str) -> None:
        """Blocks a user (see `ChatClient.block_user`); blocking twice succeeds."""
        await self._call(self._chat.BlockUser, pb.BlockUserRequest(username=username))

    async def unblock_user(self, username: str) -> None:
        """Lifts a block; unblocking someone not blocked succeeds."""
        await self._call(self._chat.UnblockUser, pb.UnblockUserRequest(username=username))

    async def list_blocked_users(self) -> list[pb.User]:
        """The users one blocks, by username."""
        request = pb.ListBlockedUsersRequest()
        return list((await self._call(self._chat.ListBlockedUsers, request)).users)

    # -- messages --------------------------------------------------------

    async def send(
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
        return (await self._retrying(self._chat.SendMessage, request, retry_for)).message

    async def edit_message(
        self, room_id: str, message_id: str, text: str, *, retry_for: float = 15.0
    ) -> pb.Message:
        """Replaces the text of one of one's own messages; returns it as it is now.

        PERMISSION_DENIED for another's message, FAILED_PRECONDITION for a
        deleted one, NOT_FOUND for an unknown one; the text rules of `send`.
        Retried like a send (an edit is the same edit again).
        """
        request = edit_request(room_id, message_id, text)
        return (await self._retrying(self._chat.EditMessage, request, retry_for)).message

    async def delete_message(self, room_id: str, message_id: str, *, retry_for: float = 15.0) -> None:
        """Erases one of one's own messages: it stays as a tombstone
        (`deleted`, empty text). Deleting again succeeds. PERMISSION_DENIED
        for another's message."""
        await self._retrying(self._chat.DeleteMessage, delete_request(room_id, message_id), retry_for)

    async def add_reaction(
        self, room_id: str, message_id: str, emoji: str, *, retry_for: float = 15.0
    ) -> None:
        """Reacts to a message with one emoji ("👍"). Adding it twice succeeds.

        INVALID_ARGUMENT for anything but one emoji, FAILED_PRECONDITION on
        a deleted message, RESOURCE_EXHAUSTED beyond 20 emoji of one's own
        on a message.
        """
        request = reaction_request(room_id, message_id, emoji, added=True)
        await self._retrying(self._chat.AddReaction, request, retry_for)

    async def remove_reaction(
        self, room_id: str, message_id: str, emoji: str, *, retry_for: float = 15.0
    ) -> None:
        """Takes one's reaction back; removing one that is not there succeeds."""
        request = reaction_request(room_id, message_id, emoji, added=False)
        await self._retrying(self._chat.RemoveReaction, request, retry_for)

    async def mark_read(self, room_id: str, seq: int) -> int:
        """Moves one's read marker in a room forward to `seq` (every event up
        to it is read) and returns where it is: never back, never past the
        room's last seq. Every stream of one's own gets a `read` event."""
        return (await self._call(self._chat.MarkRead, mark_read_request(room_id, seq))).last_read_seq

    async def list_thread(
        self, room_id: str, thread_root_id: str, before_seq: int = 0, limit: int = 0
    ) -> pb.ListThreadResponse:
        """One page of a thread's replies (ascending seq), older than
        `before_seq`, and its root as it is now (with its reply count)."""
        request = thread_request(room_id, thread_root_id, before_seq, limit)
        return await self._call(self._chat.ListThread, request)

    async def thread_replies(self, room_id: str, thread_root_id: str) -> list[pb.Message]:
        """Every reply of a thread, ascending, following the pages."""
        collected: list[pb.Message] = []
        before: int | None = 0
        while before is not None:
            page = await self.list_thread(room_id, thread_root_id, before_seq=before, limit=GAP_PAGE)
            before = take_older_page(collected, page, 0)
        return collected

    async def _retrying(self, rpc, request, retry_for: float):
        """A call that is safe to repeat, repeated while the server is
        unavailable or its answer was lost, for up to `retry_for` seconds."""
        retry = SendRetry(retry_for)
        while True:
            try:
                return await self._call(rpc, request)
            except ChatError as error:
                wait = retry.wait_after(error)
                if wait is None:
                    raise
            await asyncio.sleep(wait)

    async def send_typing(self, room_id: str) -> None:
        await self._call(self._chat.SendTyping, pb.SendTypingRequest(room_id=room_id))

    async def history(self, room_id: str, before_seq: int = 0, limit: int = 0) -> pb.HistoryResponse:
        """One page of a room's messages (ascending seq), older than `before_seq`."""
        request = pb.HistoryRequest(room_id=room_id, before_seq=before_seq, limit=limit)
        return await self._call(self._chat.History, request)

    async def messages_between(self, room_id: str, after_seq: int, before_seq: int) -> list[pb.Message]:
        """Every message with after_seq < seq < before_seq (before_seq 0: up to the newest), ascending."""
        collected: list[pb.Message] = []
        before: int | None = before_seq
        while before is not None:
            page = await self.history(room_id, before_seq=before, limit=GAP_PAGE)
            before = take_older_page(collected, page, after_seq)
        return collected

    async def list_online_users(self, room_id: str = "") -> list[pb.User]:
        request = pb.ListOnlineUsersRequest(room_id=room_id)
        return list((await self._call(self._chat.ListOnlineUsers, request)).users)

    # -- live events -----------------------------------------------------

    def events(self, cursors: Mapping[str, int] | None = None) -> "AsyncEventStream":
        """An async iterator over live events that reconnects and resumes.

        `cursors` maps room id to the newest seq the caller already has;
        those rooms resume after it. Every other room the user is in starts
        from its newest message when the stream starts (it calls ListRooms):
        at the first `async for` step, or at once with
        `stream = await client.events()` (or `async with client.events() as
        stream`), after which whatever is sent is yielded.
        """
        stream = AsyncEventStream(self, cursors)
        self._streams.append(stream)
        return stream


class AsyncEventStream(ResumeCore):
    """Live `ServerEvent`s from a resuming `Subscribe`, for `async for`.

    Yields what the blocking `EventStream` yields: `ready` (once per
    connection), each room's log events (`message`, `edited`, `deleted`,
    `reaction`, `member`, `room_updated`) once and in seq order, `read`
    markers, `invited`, `profile`, `presence`, `typing` and `error`; never
    a heartbeat; a `resync`'s missing messages paged from
    History as `message` events, as they are now.
    Raises `ChatError` for failures no reconnect can fix.

    Ends when `close()` or `aclose()` is called (from any task), or
    `async with` ends. Cancelling the task that iterates cancels the stream's
    call and raises `CancelledError` there; `aclose()` still releases the
    rest. `connections`, `stalls`, `resyncs`, `heartbeat_interval` and
    `cursors` are as on `EventStream`.
    """

    def __init__(self, client: AsyncChatClient, cursors: Mapping[str, int] | None):
        super().__init__(cursors)
        self._client = client
        self._call: grpc.aio.UnaryStreamCall | None = None
        self._closed = asyncio.Event()
        self._stub = client._chat
        self._channel: grpc.aio.Channel | None = None  # its own, after a stall
        self._started = False
        self._events = self._run()

    def __await__(self):
        return self._start().__await__()

    async def __aenter__(self) -> "AsyncEventStream":
        return await self._start()

    async def __aexit__(self, *exc) -> None:
        await self.aclose()

    def __aiter__(self) -> "AsyncEventStream":
        return self

    async def __anext__(self) -> pb.ServerEvent:
        return await self._events.__anext__()

    def disconnect(self) -> None:
        """Drops the current stream; iteration goes on over a resumed one."""
        self._disconnects += 1
        if self._call is not None:
            self._call.cancel()

    def close(self) -> None:
        """Ends the iteration: the next step (or the one waiting) stops it."""
        self._closed.set()
        if self._call is not None:
            self._call.cancel()
        try:
            self._client._streams.remove(self)
        except ValueError:
            pass

    async def aclose(self) -> None:
        """`close()`, and closes the channel of the stream's own, if it has one."""
        self.close()
        await self._drop_channel()

    async def _start(self) -> "AsyncEventStream":
        """Fixes the starting point: from here on every message is yielded."""
        if not self._started:
            await self._start_rooms()
            self._started = True
        return self

    async def _start_rooms(self) -> None:
        self._start_from([room async for room in self._client._iter_rooms(self._stub, joined_only=True)])

    async def _renew_channel(self) -> None:
        """After a stall, the connection is likely dead too: a new one."""
        channel = self._client._new_channel()
        if channel is None:
            return
        await self._drop_channel()
        self._channel = channel
        self._stub = pb_grpc.ChatServiceStub(channel)

    async def _drop_channel(self) -> None:
        channel, self._channel = self._channel, None
        if channel is not None:
            await channel.close()

    @staticmethod
    def _cancelled_from_outside() -> bool:
        """Whether a CancelledError is the iterating task's own cancellation,
        not the stream's call cancelled by close(), disconnect() or the watchdog."""
        task = asyncio.current_task()
        return task is not None and task.cancelling() > 0

    async def _run(self) -> AsyncIterator[pb.ServerEvent]:
        try:
            await self._start()
            backoff = Backoff()
            while not self._closed.is_set():
                token = None
                call = None
                stalled = False
                disconnects = self._disconnects
                try:
                    await self._start_rooms()
                    token = await self._client._token()
                    call = self._stub.Subscribe(
                        self._subscribe_request(), metadata=self._client._metadata(token)
                    )
                    self._call = call
                    if self._closed.is_set():
                        call.cancel()
                    self._opened()
                    while True:
                        try:
                            async with asyncio.timeout(max(self._silence_left(), 0.0)):
                                event = await call.read()
                        except TimeoutError:
                            # The watchdog: nothing heard for too long.
                            stalled = True
                            code, details = grpc.StatusCode.CANCELLED, "no event within the watchdog's patience"
                            break
                        if event is grpc.aio.EOF:
                            # The server ended the stream without an error: resume.
                            code, details = grpc.StatusCode.UNAVAILABLE, "stream ended"
                            break
                        backoff.reset()
                        take = self._take(event)
                        if take is Take.FILL_GAP:
                            after = self._gap_start(event.resync)
                            missed = await self._client.messages_between(
                                event.resync.room_id, after, event.resync.from_seq
                            )
                            for gap_event in self._gap_events(missed):
                                yield gap_event
                        elif take is Take.YIELD:
                            yield event
                        # The consumer's time with an event is not the stream's silence.
                        self._heard()
                except grpc.RpcError as error:
                    code, details = error.code(), error.details() or ""
                except ChatError as error:
                    code, details = error.code, error.details
                except asyncio.CancelledError:
                    if self._cancelled_from_outside():
                        raise
                    code, details = grpc.StatusCode.CANCELLED, "cancelled"
                finally:
                    self._call = None
                    if call is not None and not call.done():
                        call.cancel()
                if self._closed.is_set():
                    return
                then = self._ended(
                    code, details, stalled=stalled, disconnects_before=disconnects, token=token
                )
                if then is Then.NEW_CHANNEL:
                    await self._renew_channel()
                elif then is Then.REFRESH:
                    await self._client._refresh(token)
                elif then is Then.RAISE:
                    raise ChatError(code, details)
                elif then is Then.BACK_OFF:
                    try:
                        await asyncio.wait_for(self._closed.wait(), backoff.next())
                        return
                    except TimeoutError:
                        pass
        finally:
            await self._drop_channel()
