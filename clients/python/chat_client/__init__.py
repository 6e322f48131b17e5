"""Python client for the chat.v1 gRPC chat server.

`ChatClient` wraps the generated stubs (`chat_client.pb` holds the protobuf
messages); `python -m chat_client` is a terminal chat program built on it.
`escape` makes server text safe to print on a terminal.
"""

from .client import ChatClient, ChatError, Cursors, EventStream, pb
from ._gen.chat.v1 import chat_pb2_grpc as pb_grpc
from .terminal import escape

__all__ = ["ChatClient", "ChatError", "Cursors", "EventStream", "escape", "pb", "pb_grpc"]
