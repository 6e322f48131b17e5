"""Python client for the chat.v1 gRPC chat server.

`ChatClient` wraps the generated stubs (`chat_client.pb` holds the protobuf
messages), `AsyncChatClient` is the same for asyncio; `python -m chat_client`
is a terminal chat program built on the first.
`escape` makes server text safe to print on a terminal.
"""

from .aio import AsyncChatClient, AsyncEventStream
from .client import ChatClient, ChatError, Cursors, EventStream, pb
from ._gen.chat.v1 import chat_pb2_grpc as pb_grpc
from .terminal import escape

__all__ = [
    "AsyncChatClient",
    "AsyncEventStream",
    "ChatClient",
    "ChatError",
    "Cursors",
    "EventStream",
    "escape",
    "pb",
    "pb_grpc",
]
