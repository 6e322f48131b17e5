"""What the blocking and the asyncio client share: everything but the I/O.

`ChatClient` (client.py) and `AsyncChatClient` (aio.py) make the same calls
in the same order and take the same decisions; they differ only in how a
call is made (blocking or awaited) and how they wait. The decisions live
here, once:

- `ChatError`, the one error both raise, and which status codes a retry,
  a refresh or a reconnect can help;
- `ClientCore`: the session's tokens (when to refresh, which refresh is
  already done), the bearer metadata, the request of each call, and the
  bookkeeping of open event streams when rooms are joined or left;
- `Cursors` and `ResumeCore`: an event stream's per-room cursors, what to
  do with each server event (yield it, skip it as a heartbeat or a
  duplicate, fill a gap), the watchdog's patience, and what to do when a
  stream ends (resume, refresh first, start over on a new channel, back
  off, or give up);
- `Backoff` and `SendRetry`: how long to wait between attempts (sends,
  edits, deletions and reactions are all safe to repeat);
- the request of each conversation call (`send_request`, `edit_request`,
  `reaction_request`, ...) and of the room and profile calls
  (`create_room_request`, `update_room_request`, `members_request`, ...),
  so both clients ask the same thing.

Nothing here calls the network or sleeps.
"""

from __future__ import annotations

import enum
import threading
import time
import uuid
from typing import Iterable, Mapping

import grpc

from ._gen.chat.v1 import chat_pb2 as pb

FIRST_BACKOFF = 0.05
MAX_BACKOFF = 2.0
# The heartbeat interval (seconds) assumed until a `ready` tells it, and of a
# server that does not (older ones beat every 30 s).
UNTOLD_HEARTBEAT = 30.0
# Added to two heartbeat intervals before a silent stream counts as dead:
# room for a beat that comes late.
WATCHDOG_MARGIN = 1.0
# Messages asked for per History page when filling a gap.
GAP_PAGE = 200

# A stream or call ending with these is not helped by reconnecting.
FATAL = frozenset({
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.UNIMPLEMENTED,
})

# A send failing with these may not have reached the server, or its answer
# was lost: the same client_msg_id again stores it at most once.
SEND_RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})


class ChatError(Exception):
    """A call failed: `code` is the grpc.StatusCode, `details` the server's message."""

    def __init__(self, code: grpc.StatusCode, details: str):
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details

    @classmethod
    def from_rpc_error(cls, error: grpc.RpcError) -> "ChatError":
        """From a blocking call's `grpc.RpcError` or an asyncio one's `grpc.aio.AioRpcError`."""
        return cls(error.code(), error.details() or "")


def is_expired_token(code: grpc.StatusCode, details: str | None) -> bool:
    return code == grpc.StatusCode.UNAUTHENTICATED and "access token expired" in (details or "")


def channel_options(user_agent: str, *, own_connection: bool = False) -> list[tuple[str, object]]:
    """Channel options; `own_connection` keeps the channel off the connections
    of every other channel to the same address (the old one may be dead)."""
    options: list[tuple[str, object]] = [("grpc.primary_user_agent", user_agent)]
    if own_connection:
        options.append(("grpc.use_local_subchannel_pool", 1))
    return options


class Backoff:
    """Waits that double from FIRST_BACKOFF up to MAX_BACKOFF."""

    def __init__(self) -> None:
        self.delay = FIRST_BACKOFF

    def reset(self) -> None:
        self.delay = FIRST_BACKOFF

    def next(self) -> float:
        delay = self.delay
        self.delay = min(delay * 2, MAX_BACKOFF)
        return delay


class SendRetry:
    """When a failed send is tried again: only for SEND_RETRYABLE codes, and
    only while the next attempt still starts within `retry_for` seconds."""

    def __init__(self, retry_for: float):
        self._deadline = time.monotonic() + retry_for
        self._backoff = Backoff()

    def wait_after(self, error: ChatError) -> float | None:
        """Seconds to wait before the next attempt, or None: raise `error`."""
        wait = self._backoff.delay
        if error.code not in SEND_RETRYABLE or time.monotonic() + wait > self._deadline:
            return None
        return self._backoff.next()


def send_request(
    room_id: str,
    text: str,
    client_msg_id: str | None,
    *,
    reply_to_id: str = "",
    thread_root_id: str = "",
) -> pb.SendMessageRequest:
    """A send with its idempotency key: a fresh uuid4 unless one is given.

    `reply_to_id` quotes a message of the room; `thread_root_id` makes the
    message a reply in the thread of a top-level message of the room."""
    return pb.SendMessageRequest(
        room_id=room_id,
        text=text,
        client_msg_id=client_msg_id or str(uuid.uuid4()),
        reply_to_id=reply_to_id,
        thread_root_id=thread_root_id,
    )


def edit_request(room_id: str, message_id: str, text: str) -> pb.EditMessageRequest:
    return pb.EditMessageRequest(room_id=room_id, message_id=message_id, text=text)


def delete_request(room_id: str, message_id: str) -> pb.DeleteMessageRequest:
    return pb.DeleteMessageRequest(room_id=room_id, message_id=message_id)


def reaction_request(
    room_id: str, message_id: str, emoji: str, *, added: bool
) -> pb.AddReactionRequest | pb.RemoveReactionRequest:
    """The AddReaction (`added`) or RemoveReaction request for one emoji."""
    kind = pb.AddReactionRequest if added else pb.RemoveReactionRequest
    return kind(room_id=room_id, message_id=message_id, emoji=emoji)


def mark_read_request(room_id: str, seq: int) -> pb.MarkReadRequest:
    return pb.MarkReadRequest(room_id=room_id, seq=seq)


def thread_request(
    room_id: str, thread_root_id: str, before_seq: int, limit: int
) -> pb.ListThreadRequest:
    return pb.ListThreadRequest(
        room_id=room_id, thread_root_id=thread_root_id, before_seq=before_seq, limit=limit
    )


def rooms_request(page_size: int, page_token: str, joined_only: bool) -> pb.ListRoomsRequest:
    return pb.ListRoomsRequest(page_size=page_size, page_token=page_token, joined_only=joined_only)


def create_room_request(name: str, topic: str, visibility: int) -> pb.CreateRoomRequest:
    return pb.CreateRoomRequest(name=name, topic=topic, visibility=visibility)


def update_room_request(
    room_id: str, name: str | None, topic: str | None, visibility: int | None
) -> pb.UpdateRoomRequest:
    """An UpdateRoom that sets the fields given and leaves the `None` ones unset
    (kept by the server): an empty topic clears the topic, None keeps it."""
    changes = {"name": name, "topic": topic, "visibility": visibility}
    return pb.UpdateRoomRequest(room_id=room_id, **{k: v for k, v in changes.items() if v is not None})


def members_request(room_id: str, page_size: int, page_token: str) -> pb.ListMembersRequest:
    return pb.ListMembersRequest(room_id=room_id, page_size=page_size, page_token=page_token)


def remove_member_request(room_id: str, user_id: str, ban: bool, reason: str) -> pb.RemoveMemberRequest:
    return pb.RemoveMemberRequest(room_id=room_id, user_id=user_id, ban=ban, reason=reason)


def update_profile_request(display_name: str | None) -> pb.UpdateProfileRequest:
    """An UpdateProfile that sets the display name ("" clears it), or, with
    None, changes nothing (the answer is the caller as they are)."""
    if display_name is None:
        return pb.UpdateProfileRequest()
    return pb.UpdateProfileRequest(display_name=display_name)


def take_older_page(
    collected: list[pb.Message], page: pb.HistoryResponse | pb.ListThreadResponse, after_seq: int
) -> int | None:
    """Puts a History (or ListThread) page's messages after `after_seq` in
    front of `collected`; returns the `before_seq` of the next older page to
    read, or None when the range is complete."""
    collected[:0] = [m for m in page.messages if m.seq > after_seq]
    if not page.has_more or not page.messages or page.messages[0].seq <= after_seq + 1:
        return None
    return page.messages[0].seq


class ClientCore:
    """The state of a client of one chat server, without its channel.

    Holds the session's tokens: `_token_due()` says when to refresh ahead of
    expiry, `_refresh_request(stale)` whether a refresh is still needed
    (refresh tokens work once, and a spent one revokes the session, so only
    the first caller to find a token stale refreshes it).
    """

    def __init__(self, address: str, *, timeout: float, refresh_before_expiry: bool, user_agent: str):
        self.address = address
        self.timeout = timeout
        self.refresh_before_expiry = refresh_before_expiry
        self._user_agent = user_agent
        self._access_token: str | None = None
        self._refresh_token: str | None = None
        self._expires_at = 0.0  # epoch seconds
        self._lifetime = 0.0
        self.user: pb.User | None = None
        self.session_id: str | None = None
        self.refreshes = 0  # how many times the access token was refreshed
        self._streams: list = []  # open event streams (ResumeCore)

    @property
    def access_token(self) -> str | None:
        return self._access_token

    def _logged_in(self, response: pb.LoginResponse) -> None:
        self._store_tokens(response)
        self.user = response.user
        self.session_id = response.session_id

    def _logged_out(self) -> None:
        self._access_token = self._refresh_token = None

    def _store_tokens(self, response) -> None:
        self._access_token = response.access_token
        self._refresh_token = response.refresh_token
        expires_at = response.access_token_expires_at.ToSeconds()
        self._expires_at = float(expires_at)
        self._lifetime = max(0.0, expires_at - time.time())

    def _current_token(self) -> str:
        token = self._access_token
        if token is None:
            raise ChatError(grpc.StatusCode.UNAUTHENTICATED, "not logged in: call login() first")
        return token

    def _token_due(self) -> bool:
        """Whether the access token is about to expire and should be refreshed first."""
        if not self.refresh_before_expiry:
            return False
        margin = min(60.0, 0.2 * self._lifetime)
        return time.time() >= self._expires_at - margin

    def _refresh_request(self, stale_token: str) -> pb.RefreshRequest | None:
        """The refresh that replaces `stale_token`, or None when another
        caller has already replaced it (or there is nothing to refresh with)."""
        if self._access_token != stale_token or self._refresh_token is None:
            return None
        return pb.RefreshRequest(refresh_token=self._refresh_token)

    def _refreshed(self, response: pb.RefreshResponse) -> None:
        self._store_tokens(response)
        self.refreshes += 1

    def _metadata(self, token: str) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {token}"),)

    def _room_joined(self, room: pb.Room) -> None:
        # Open event streams resume this room from here on after a reconnect.
        for stream in list(self._streams):
            stream.cursors.start(room.id, room.last_seq)

    def _room_left(self, room_id: str) -> None:
        for stream in list(self._streams):
            stream._forget(room_id)


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

    def forget(self, room_id: str) -> None:
        with self._lock:
            self._seqs.pop(room_id, None)

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


def event_seq(event: pb.ServerEvent) -> tuple[str, int] | None:
    """The room and the seq of the room's log an event holds, or None for
    an event outside the log (ready, presence, typing, `read` markers...).

    A `message` (thread replies included) or `sent` is at its message's
    seq; an `edited`, `deleted` or `reaction` at its own event seq, not the
    seq of the message it changes. Membership changes (`member`: joins,
    leaves, removals, bans, roles, invitations) and `room_updated` are room
    events too, each at its own seq; `invited` (to the invitee, of a room
    they are not in yet) is not."""
    kind = event.WhichOneof("event")
    if kind == "message":
        return event.message.room_id, event.message.seq
    if kind == "sent":
        return event.sent.message.room_id, event.sent.message.seq
    if kind == "edited":
        return event.edited.message.room_id, event.edited.seq
    if kind == "deleted":
        return event.deleted.room_id, event.deleted.seq
    if kind == "reaction":
        return event.reaction.room_id, event.reaction.seq
    if kind == "member":
        return event.member.room_id, event.member.seq
    if kind == "room_updated":
        return event.room_updated.room.id, event.room_updated.seq
    return None


# The codes of a `ServerEvent.error` about one room that end its resumes.
ROOM_GONE = (grpc.StatusCode.PERMISSION_DENIED.value[0], grpc.StatusCode.NOT_FOUND.value[0])


class Take(enum.Enum):
    """What an event stream does with one server event."""

    YIELD = "yield"
    SKIP = "skip"  # a heartbeat, or a message already yielded
    FILL_GAP = "fill gap"  # a resync: page the missed messages from History


class Then(enum.Enum):
    """What an event stream does once a Subscribe stream has ended."""

    RESUME = "resume"  # at once: it was asked to drop the stream
    NEW_CHANNEL = "new channel"  # the watchdog gave it up: resume over a new connection
    REFRESH = "refresh"  # the access token expired: refresh, then resume
    RAISE = "raise"  # nothing a reconnect can fix
    BACK_OFF = "back off"  # wait, then resume


class ResumeCore:
    """The decisions of a resuming event stream, without its I/O.

    Keeps the per-room `cursors` (the newest seq yielded in each room), the
    heartbeat interval the last `ready` told, the watchdog's patience and
    the counters a caller may read.
    """

    def __init__(self, cursors: Mapping[str, int] | None):
        self.cursors = Cursors(cursors)
        self.connections = 0  # how many Subscribe streams were opened
        self.resyncs = 0  # gaps filled from History
        # Seconds between heartbeats, as the last `ready` said.
        self.heartbeat_interval: float | None = None
        self.stalls = 0  # streams given up by the watchdog
        self._heard_at = time.monotonic()
        self._disconnects = 0  # drops asked for by disconnect()

    def _start_from(self, rooms: Iterable[pb.Room]) -> None:
        # Rooms not resumed yet start at their newest message, so a
        # reconnect resumes them too. Only the rooms one is in are asked for.
        for room in rooms:
            self.cursors.start(room.id, room.last_seq)

    def _forget(self, room_id: str) -> None:
        self.cursors.forget(room_id)

    def _subscribe_request(self) -> pb.SubscribeRequest:
        return pb.SubscribeRequest(cursors=self.cursors.to_pb())

    def _opened(self) -> None:
        self.connections += 1
        self._heard_at = time.monotonic()

    def _heard(self) -> None:
        self._heard_at = time.monotonic()

    def _patience(self) -> float:
        """How long a stream may say nothing before it counts as dead."""
        return 2 * (self.heartbeat_interval or UNTOLD_HEARTBEAT) + WATCHDOG_MARGIN

    def _silence_left(self) -> float:
        """Seconds until the current stream counts as dead if it says nothing."""
        return self._heard_at + self._patience() - time.monotonic()

    def _take(self, event: pb.ServerEvent) -> Take:
        """Notes an event just received (it restarts the watchdog, a `ready`
        sets the heartbeat interval, an event of a room's log moves the
        room's cursor) and says what to do with it."""
        self._heard()
        kind = event.WhichOneof("event")
        if kind == "ready":
            told = event.ready.heartbeat_interval.ToTimedelta().total_seconds()
            self.heartbeat_interval = told if told > 0 else UNTOLD_HEARTBEAT
        if kind == "pong" and event.pong.nonce == 0:
            return Take.SKIP
        if kind == "resync":
            return Take.FILL_GAP
        if kind == "error" and event.error.room_id and event.error.code in ROOM_GONE:
            # A resume cursor for a room one may no longer read (removed or
            # banned while away) or that is gone: the stream goes on for the
            # others, and later resumes leave this one out.
            self.cursors.forget(event.error.room_id)
        in_log = event_seq(event)
        if in_log is not None:
            # Every event of a room's log moves its cursor: messages (thread
            # replies too), and the edits, deletions, reactions, membership
            # changes and room updates that take seqs of their own, so a
            # resume after one does not bring it again, and a repeat is not
            # yielded twice.
            room_id, seq = in_log
            seen = self.cursors.get(room_id)
            if seen is not None and seq <= seen:
                return Take.SKIP  # already yielded
            self.cursors.track(room_id, seq)
        # Everything else (`read` markers among them: not room events, no
        # seq) is yielded as it comes and moves no cursor.
        return Take.YIELD

    def _gap_start(self, resync: pb.ServerEvent.Resync) -> int:
        """The seq after which the messages a resync left out begin."""
        self.resyncs += 1
        return self.cursors.get(resync.room_id) or 0

    def _gap_events(self, missed: Iterable[pb.Message]) -> Iterable[pb.ServerEvent]:
        for message in missed:
            self.cursors.track(message.room_id, message.seq)
            yield pb.ServerEvent(message=message)

    def _ended(
        self,
        code: grpc.StatusCode,
        details: str,
        *,
        stalled: bool,
        disconnects_before: int,
        token: str | None,
    ) -> Then:
        """What to do after a stream ended with `code`: `stalled` when the
        watchdog cancelled it, `disconnects_before` the drops asked for when
        it opened, `token` the access token it used (None: it never got one)."""
        if stalled:
            self.stalls += 1
            return Then.NEW_CHANNEL
        if code == grpc.StatusCode.CANCELLED and self._disconnects != disconnects_before:
            return Then.RESUME
        if is_expired_token(code, details) and token is not None:
            return Then.REFRESH
        if code in FATAL:
            return Then.RAISE
        # UNAVAILABLE (server down or shutting down), RESOURCE_EXHAUSTED
        # (too slow: resume), and the like.
        return Then.BACK_OFF
