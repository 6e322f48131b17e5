"""A small synchronous client for the chat.v1 gRPC API.

`ChatClient` holds one channel and the session's tokens: it adds
`authorization: Bearer <access_token>` to every ChatService call, refreshes
the access token shortly before it expires, and, should the server still
answer UNAUTHENTICATED "access token expired", refreshes and retries once.

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
import uuid
from typing import Iterable, Iterator, Mapping

import grpc

from ._gen.chat.v1 import chat_pb2 as pb
from ._gen.chat.v1 import chat_pb2_grpc as pb_grpc

__all__ = ["ChatClient", "ChatError", "Cursors", "EventStream", "pb"]

FIRST_BACKOFF = 0.05
MAX_BACKOFF = 2.0
# The heartbeat interval (seconds) assumed until a `ready` tells it, and of a
# server that does not (older ones beat every 30 s).
UNTOLD_HEARTBEAT = 30.0
# Added to two heartbeat intervals before a silent stream counts as dead:
# room for a beat that comes late.
WATCHDOG_MARGIN = 1.0

# A stream or call ending with these is not helped by reconnecting.
_FATAL = {
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.UNIMPLEMENTED,
}


class ChatError(Exception):
    """A call failed: `code` is the grpc.StatusCode, `details` the server's message."""

    def __init__(self, code: grpc.StatusCode, details: str):
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details

    @classmethod
    def from_rpc_error(cls, error: grpc.RpcError) -> "ChatError":
        return cls(error.code(), error.details() or "")


def _is_expired_token(code: grpc.StatusCode, details: str) -> bool:
    return code == grpc.StatusCode.UNAUTHENTICATED and "access token expired" in (details or "")


class Cursors:
    """The newest seq seen in each room; thread-safe, only moves forward."""

    def __init__(self, initial: Mapping[str, int] | None = None):
        self._lock = threading.Lock()
        self._seqs: dict[str, int] = dict(initial or {})

    def track(self, room_id: str, seq: int) -> None:
        with self._lock:
            self._seqs[room_id] = max(self._seqs.get(room_id, 0), seq)

    def start(self, room_id: str, seq: int) -> None:
        """Starts a room's cursor at `seq` unless the room is tracked already."""
        with self._lock:
            self._seqs.setdefault(room_id, seq)

    def get(self, room_id: str) -> int | None:
        with self._lock:
            return self._seqs.get(room_id)

    def as_dict(self) -> dict[str, int]:
        with self._lock:
            return dict(self._seqs)

    def to_pb(self) -> list[pb.RoomCursor]:
        return [pb.RoomCursor(room_id=r, after_seq=s) for r, s in sorted(self.as_dict().items())]

    def __repr__(self) -> str:
        return f"Cursors({self.as_dict()!r})"


class ChatClient:
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
        self.address = address
        self.timeout = timeout
        self.refresh_before_expiry = refresh_before_expiry
        self._user_agent = user_agent
        # A channel given from outside (TLS, say) is the only one: event
        # streams then reconnect over it, never over a channel of their own.
        self._own_channels = channel is None
        self._channel = channel or grpc.insecure_channel(
            address, options=[("grpc.primary_user_agent", user_agent)]
        )
        self._auth = pb_grpc.AuthServiceStub(self._channel)
        self._chat = pb_grpc.ChatServiceStub(self._channel)
        self._token_lock = threading.Lock()
        self._access_token: str | None = None
        self._refresh_token: str | None = None
        self._expires_at = 0.0  # epoch seconds
        self._lifetime = 0.0
        self.user: pb.User | None = None
        self.session_id: str | None = None
        self.refreshes = 0  # how many times the access token was refreshed
        self._streams: list[EventStream] = []

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
            self.address,
            options=[
                ("grpc.primary_user_agent", self._user_agent),
                ("grpc.use_local_subchannel_pool", 1),
            ],
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
            self._store_tokens(response)
            self.user = response.user
            self.session_id = response.session_id
        return response.user

    def logout(self) -> None:
        self._call(self._auth.Logout, pb.LogoutRequest())
        with self._token_lock:
            self._access_token = self._refresh_token = None

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

    @property
    def access_token(self) -> str | None:
        return self._access_token

    def _store_tokens(self, response) -> None:
        self._access_token = response.access_token
        self._refresh_token = response.refresh_token
        expires_at = response.access_token_expires_at.ToSeconds()
        self._expires_at = float(expires_at)
        self._lifetime = max(0.0, expires_at - time.time())

    def _token(self) -> str:
        """A current access token, refreshed first when it is about to expire."""
        token = self._access_token
        if token is None:
            raise ChatError(grpc.StatusCode.UNAUTHENTICATED, "not logged in: call login() first")
        if self.refresh_before_expiry:
            margin = min(60.0, 0.2 * self._lifetime)
            if time.time() >= self._expires_at - margin:
                self._refresh(token)
                token = self._access_token
        return token

    def _refresh(self, stale_token: str) -> None:
        """Trades the refresh token for new tokens, once per stale access token.

        Refresh tokens work once (a spent one revokes the session), so
        threads that find the same token stale refresh it only once.
        """
        with self._token_lock:
            if self._access_token != stale_token or self._refresh_token is None:
                return
            request = pb.RefreshRequest(refresh_token=self._refresh_token)
            try:
                response = self._auth.Refresh(request, timeout=self.timeout)
            except grpc.RpcError as error:
                raise ChatError.from_rpc_error(error) from None
            self._store_tokens(response)
            self.refreshes += 1

    def _metadata(self, token: str) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {token}"),)

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
            if not _is_expired_token(error.code(), error.details()):
                raise ChatError.from_rpc_error(error) from None
        self._refresh(token)
        try:
            return rpc(request, metadata=self._metadata(self._token()), timeout=self.timeout)
        except grpc.RpcError as error:
            raise ChatError.from_rpc_error(error) from None

    # -- rooms -----------------------------------------------------------

    def create_room(self, name: str) -> pb.Room:
        room = self._call(self._chat.CreateRoom, pb.CreateRoomRequest(name=name)).room
        self._room_joined(room)
        return room

    def join_room(self, room_id: str) -> pb.Room:
        room = self._call(self._chat.JoinRoom, pb.JoinRoomRequest(room_id=room_id)).room
        self._room_joined(room)
        return room

    def leave_room(self, room_id: str) -> None:
        self._call(self._chat.LeaveRoom, pb.LeaveRoomRequest(room_id=room_id))
        for stream in list(self._streams):
            stream._forget(room_id)

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
            request = pb.ListRoomsRequest(
                page_size=page_size, page_token=page_token, joined_only=joined_only
            )
            page = self._call(chat.ListRooms, request)
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

    def _room_joined(self, room: pb.Room) -> None:
        # Open event streams resume this room from here on after a reconnect.
        for stream in list(self._streams):
            stream.cursors.start(room.id, room.last_seq)

    # -- messages --------------------------------------------------------

    def send(
        self,
        room_id: str,
        text: str,
        client_msg_id: str | None = None,
        *,
        retry_for: float = 15.0,
    ) -> pb.Message:
        """Stores a message and returns it (with its seq).

        The send carries an idempotency key (a fresh uuid4 unless given), so
        it is retried with the same key when the server is unavailable or
        the answer is lost, for up to `retry_for` seconds: it is stored once.
        """
        client_msg_id = client_msg_id or str(uuid.uuid4())
        request = pb.SendMessageRequest(room_id=room_id, text=text, client_msg_id=client_msg_id)
        deadline = time.monotonic() + retry_for
        backoff = FIRST_BACKOFF
        while True:
            try:
                return self._call(self._chat.SendMessage, request).message
            except ChatError as error:
                retryable = error.code in (
                    grpc.StatusCode.UNAVAILABLE,
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                )
                if not retryable or time.monotonic() + backoff > deadline:
                    raise
            time.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF)

    def send_typing(self, room_id: str) -> None:
        self._call(self._chat.SendTyping, pb.SendTypingRequest(room_id=room_id))

    def history(self, room_id: str, before_seq: int = 0, limit: int = 0) -> pb.HistoryResponse:
        """One page of a room's messages (ascending seq), older than `before_seq`."""
        request = pb.HistoryRequest(room_id=room_id, before_seq=before_seq, limit=limit)
        return self._call(self._chat.History, request)

    def messages_between(self, room_id: str, after_seq: int, before_seq: int) -> list[pb.Message]:
        """Every message with after_seq < seq < before_seq (before_seq 0: up to the newest), ascending."""
        collected: list[pb.Message] = []
        before = before_seq
        while True:
            page = self.history(room_id, before_seq=before, limit=200)
            collected[:0] = [m for m in page.messages if m.seq > after_seq]
            if not page.has_more or not page.messages or page.messages[0].seq <= after_seq + 1:
                return collected
            before = page.messages[0].seq

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


class EventStream:
    """Live `ServerEvent`s (protobuf messages) from a resuming `Subscribe`.

    Yields `ready` (once per connection, listing who is online), `message`,
    `presence`, `typing` and `error` events; heartbeats (pong with nonce 0)
    are not yielded, but keep the watchdog quiet. A `resync` (more missed
    than the server resends) is handled here: the missing messages are paged
    with History and yielded as `message` events in seq order, so a consumer
    sees every room's messages once and gapless. Ends when `close()` is
    called; raises `ChatError` for failures no reconnect can fix (a revoked
    session, a room one has left).

    The watchdog: a stream (or a reconnection) that says nothing at all for
    twice `heartbeat_interval` plus `WATCHDOG_MARGIN` is cancelled and
    resumed, over a channel of its own from then on (the old connection is
    likely dead too), unless the client was given its channel. `stalls`
    counts these.
    """

    def __init__(self, client: ChatClient, cursors: Mapping[str, int] | None):
        self._client = client
        self.cursors = Cursors(cursors)
        self._lock = threading.Lock()
        self._call = None
        self._closed = threading.Event()
        self._disconnects = 0
        self._stub = client._chat
        self._channel: grpc.Channel | None = None  # its own, after a stall
        self._heard_at = time.monotonic()
        # Set while the consumer holds an event: its time is not the stream's silence.
        self._handing_over = False
        self.connections = 0  # how many Subscribe streams were opened
        self.resyncs = 0  # gaps filled from History
        # Seconds between heartbeats, as the last `ready` said.
        self.heartbeat_interval: float | None = None
        self.stalls = 0  # streams given up by the watchdog
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

    def _patience(self) -> float:
        """How long a stream may say nothing before it counts as dead."""
        return 2 * (self.heartbeat_interval or UNTOLD_HEARTBEAT) + WATCHDOG_MARGIN

    def _watch(self, call, over: threading.Event, stalled: threading.Event) -> None:
        """Cancels `call` once it has said nothing for too long (a thread per
        connection, until `over` is set). It looks again at least every
        `WATCHDOG_MARGIN`: `ready` may shorten the patience meanwhile."""
        while True:
            left = self._heard_at + self._patience() - time.monotonic()
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

    def _forget(self, room_id: str) -> None:
        with self.cursors._lock:
            self.cursors._seqs.pop(room_id, None)

    def _start_rooms(self) -> None:
        # Rooms not resumed yet start at their newest message, so a
        # reconnect resumes them too. Only the rooms one is in matter.
        for room in self._client._iter_rooms(self._stub, joined_only=True):
            self.cursors.start(room.id, room.last_seq)

    def _run(self) -> Iterator[pb.ServerEvent]:
        try:
            yield from self._resume()
        finally:
            if self._channel is not None:
                self._channel.close()

    def _resume(self) -> Iterator[pb.ServerEvent]:
        backoff = FIRST_BACKOFF
        while not self._closed.is_set():
            token = None
            over, stalled = threading.Event(), threading.Event()
            with self._lock:
                disconnects = self._disconnects
            try:
                self._start_rooms()
                token = self._client._token()
                request = pb.SubscribeRequest(cursors=self.cursors.to_pb())
                self._heard_at = time.monotonic()
                call = self._stub.Subscribe(request, metadata=self._client._metadata(token))
                with self._lock:
                    self._call = call
                if self._closed.is_set():
                    call.cancel()
                self.connections += 1
                threading.Thread(
                    target=self._watch, args=(call, over, stalled), daemon=True
                ).start()
                for event in call:
                    self._heard_at = time.monotonic()
                    backoff = FIRST_BACKOFF
                    kind = event.WhichOneof("event")
                    if kind == "ready":
                        told = event.ready.heartbeat_interval.ToTimedelta().total_seconds()
                        self.heartbeat_interval = told if told > 0 else UNTOLD_HEARTBEAT
                    if kind == "pong" and event.pong.nonce == 0:
                        continue
                    if kind == "resync":
                        yield from self._hand_over(self._fill_gap(event.resync))
                        continue
                    if kind in ("message", "sent"):
                        message = event.message if kind == "message" else event.sent.message
                        seen = self.cursors.get(message.room_id)
                        if seen is not None and message.seq <= seen:
                            continue  # already yielded
                        self.cursors.track(message.room_id, message.seq)
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
            if stalled.is_set():
                self.stalls += 1
                self._renew_channel()
                continue
            with self._lock:
                asked_to_disconnect = self._disconnects != disconnects
            if code == grpc.StatusCode.CANCELLED and asked_to_disconnect:
                continue
            if _is_expired_token(code, details) and token is not None:
                self._client._refresh(token)
                continue
            if code in _FATAL:
                raise ChatError(code, details)
            # UNAVAILABLE (server down or shutting down), RESOURCE_EXHAUSTED
            # (too slow: resume), and the like: back off and resume.
            if self._closed.wait(backoff):
                return
            backoff = min(backoff * 2, MAX_BACKOFF)

    def _hand_over(self, events: Iterable[pb.ServerEvent]) -> Iterator[pb.ServerEvent]:
        """Yields `events` with the watchdog paused: a consumer slow to ask
        for the next event does not make the stream look silent."""
        self._handing_over = True
        try:
            yield from events
        finally:
            self._handing_over = False
            self._heard_at = time.monotonic()

    def _fill_gap(self, resync: pb.ServerEvent.Resync) -> Iterable[pb.ServerEvent]:
        self.resyncs += 1
        after = self.cursors.get(resync.room_id) or 0
        missed = self._client.messages_between(resync.room_id, after, resync.from_seq)
        for message in missed:
            self.cursors.track(message.room_id, message.seq)
            yield pb.ServerEvent(message=message)
