"""A terminal chat: `python -m chat_client --user alice --room general`.

Logs in (registering first with --register), joins the room by name
(creating it when there is none), prints the others' lines and who comes
online or goes offline, and sends every line typed on stdin. Ctrl-D or
`/quit` leaves.

Everything that comes from the server (message text, usernames, room names,
error messages) is printed through `terminal.escape`, so control and bidi
characters in it show as escapes instead of acting on the terminal.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
import threading

import grpc

from .client import ChatClient, ChatError, pb
from .terminal import escape


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m chat_client", description=__doc__.splitlines()[0])
    parser.add_argument("--server", default=os.environ.get("CHAT_SERVER", "127.0.0.1:50051"),
                        help="host:port of the chat server (default %(default)s, or $CHAT_SERVER)")
    parser.add_argument("--user", required=True, help="username")
    parser.add_argument("--password", default=os.environ.get("CHAT_PASSWORD"),
                        help="password (default $CHAT_PASSWORD, else asked for)")
    parser.add_argument("--register", action="store_true", help="create the account first")
    parser.add_argument("--room", default="general", help="group room to join or create (default %(default)s)")
    return parser.parse_args(argv)


def say(line: str) -> None:
    print(line, flush=True)


def join_or_create(client: ChatClient, name: str):
    room = client.find_room(name)
    if room is not None:
        return client.join_room(room.id) if not room.joined else room
    try:
        return client.create_room(name)
    except ChatError as error:
        if error.code != grpc.StatusCode.ALREADY_EXISTS:
            raise
        # Someone else created it meanwhile.
        return client.join_room(client.find_room(name).id)


# What a `member` event says of its user.
MEMBER_CHANGES = {
    pb.MEMBER_CHANGE_JOINED: "joined",
    pb.MEMBER_CHANGE_LEFT: "left",
    pb.MEMBER_CHANGE_INVITED: "was invited",
    pb.MEMBER_CHANGE_REMOVED: "was removed",
    pb.MEMBER_CHANGE_BANNED: "was banned",
    pb.MEMBER_CHANGE_UNBANNED: "was unbanned",
    pb.MEMBER_CHANGE_ROLE_CHANGED: "has a new role",
}


def show_event(event: pb.ServerEvent, room_id: str, me: str) -> list[str]:
    """The lines to print for an event (none for those not worth showing)."""
    kind = event.WhichOneof("event")
    if kind == "ready":
        return [f"* {escape(user.username)} is online" for user in event.ready.online_users]
    if kind == "message":
        message = event.message
        if message.room_id == room_id and message.sender.id != me:
            thread = "(in a thread) " if message.thread_root_id else ""
            return [f"<{escape(message.sender.username)}> {thread}{escape(message.text)}"]
    elif kind == "edited":
        message = event.edited.message
        if message.room_id == room_id and message.sender.id != me and not message.deleted:
            return [f"<{escape(message.sender.username)}> {escape(message.text)} (edited)"]
    elif kind == "deleted":
        if event.deleted.room_id == room_id and event.deleted.by.id != me:
            return [f"* {escape(event.deleted.by.username)} deleted a message"]
    elif kind == "reaction":
        reaction = event.reaction
        if reaction.room_id == room_id and reaction.user.id != me:
            done = "reacted" if reaction.added else "took back"
            return [f"* {escape(reaction.user.username)} {done} {escape(reaction.emoji)}"]
    elif kind == "member":
        member = event.member
        if member.room_id == room_id and member.user.id != me:
            return [f"* {escape(member.user.username)} {MEMBER_CHANGES.get(member.change, 'changed')}"]
    elif kind == "room_updated":
        updated = event.room_updated
        if updated.room.id == room_id:
            return [f"* {escape(updated.by.username)} changed the room: {escape(updated.room.name)}"
                    + (f" ({escape(updated.room.topic)})" if updated.room.topic else "")]
    elif kind == "presence":
        state = "online" if event.presence.online else "offline"
        return [f"* {escape(event.presence.user.username)} is {state}"]
    elif kind == "error":
        return [f"! {escape(event.error.message)}"]
    return []


def follow(client: ChatClient, stream, room_id: str, me: str) -> None:
    """Prints the room's events; runs in its own thread."""
    try:
        for event in stream:
            for line in show_event(event, room_id, me):
                say(line)
    except ChatError as error:
        say(f"! live events stopped: {escape(str(error))}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    password = args.password if args.password is not None else getpass.getpass(f"password for {args.user}: ")
    with ChatClient(args.server) as client:
        try:
            if args.register:
                try:
                    client.register(args.user, password)
                    say(f"* registered {escape(args.user)}")
                except ChatError as error:
                    if error.code != grpc.StatusCode.ALREADY_EXISTS:
                        raise
            me = client.login(args.user, password)
            room = join_or_create(client, args.room)
        except ChatError as error:
            print(f"error: {escape(error.details)} ({error.code.name})", file=sys.stderr)
            return 1
        # Resume from the room's newest message at join: nothing sent after
        # it is missed, even before the stream opens.
        stream = client.events({room.id: room.last_seq})
        thread = threading.Thread(target=follow, args=(client, stream, room.id, me.id), daemon=True)
        thread.start()
        say(f"* joined #{escape(room.name)} as {escape(me.username)} (Ctrl-D or /quit to leave)")
        try:
            for line in sys.stdin:
                text = line.rstrip("\n")
                if text.strip() == "/quit":
                    break
                if not text.strip():
                    continue
                try:
                    client.send(room.id, text)
                except ChatError as error:
                    say(f"! not sent: {escape(error.details)}")
        except KeyboardInterrupt:
            pass
        stream.close()
        thread.join(timeout=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
