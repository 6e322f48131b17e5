#!/usr/bin/env python3
"""Generates chat_client/_gen/chat/v1/chat_pb2{,_grpc}.py from ../../proto.

Needs grpcio-tools. The output is not committed (see .gitignore): it is made
at install and test time, so it is never stale. The generated gRPC module
imports `from chat.v1 import chat_pb2`; that import is rewritten to a
relative one so the stubs live inside this package without touching
sys.path.
"""

import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROTO_ROOT = Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else HERE.parent.parent / "proto"
OUT = HERE / "chat_client" / "_gen"


def main() -> int:
    from grpc_tools import protoc
    import grpc_tools

    proto = PROTO_ROOT / "chat" / "v1" / "chat.proto"
    if not proto.is_file():
        print(f"generate.py: {proto} not found", file=sys.stderr)
        return 1
    OUT.mkdir(parents=True, exist_ok=True)
    # grpc_tools ships google/protobuf/*.proto (timestamp.proto).
    well_known = Path(grpc_tools.__file__).resolve().parent / "_proto"
    code = protoc.main([
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"--python_out={OUT}",
        f"--pyi_out={OUT}",
        f"--grpc_python_out={OUT}",
        str(proto),
    ])
    if code != 0:
        print(f"generate.py: protoc failed ({code})", file=sys.stderr)
        return code
    for package in (OUT, OUT / "chat", OUT / "chat" / "v1"):
        (package / "__init__.py").touch()
    grpc_module = OUT / "chat" / "v1" / "chat_pb2_grpc.py"
    text = grpc_module.read_text()
    fixed = re.sub(r"^from chat\.v1 import chat_pb2", "from . import chat_pb2", text, flags=re.M)
    if fixed == text:
        print("generate.py: expected `from chat.v1 import chat_pb2` in the gRPC stubs", file=sys.stderr)
        return 1
    grpc_module.write_text(fixed)
    print(f"generated stubs in {OUT.relative_to(HERE)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
