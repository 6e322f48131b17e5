"""Starts the real server binary on port 0 with a fresh database per test."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import tempfile
import threading
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
DEFAULT_BIN = HERE.parent.parent.parent / "target" / "debug" / "chat-server"
ADDRESS = re.compile(r"address=(\d+\.\d+\.\d+\.\d+:\d+)")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def server_bin() -> str:
    path = Path(os.environ.get("CHAT_SERVER_BIN", DEFAULT_BIN))
    if not path.is_file():
        pytest.fail(f"no server binary at {path}: build it (cargo build) or set CHAT_SERVER_BIN")
    return str(path)


class Server:
    """One chat-server process; `restart()` keeps its port and database."""

    def __init__(self, data_dir: str, extra_args: list[str]):
        self.data_dir = data_dir
        self.extra_args = extra_args
        self.address: str | None = None
        self.proc: subprocess.Popen | None = None
        self.log: list[str] = []

    def start(self, listen: str = "127.0.0.1:0") -> None:
        args = [server_bin(), "--listen", listen,
                "--database-url", f"sqlite://{self.data_dir}/chat.db", *self.extra_args]
        # No metrics listener: its fixed port would clash between servers,
        # and its address is not the one to talk to.
        env = dict(os.environ, RUST_LOG="info", NO_COLOR="1", CHAT_METRICS_LISTEN="off")
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True, env=env)
        found = threading.Event()

        def drain(stream):
            for line in stream:
                self.log.append(line)
                plain = ANSI.sub("", line)
                match = None if "metrics" in plain else ADDRESS.search(plain)
                if match and not found.is_set():
                    self.address = match.group(1)
                    found.set()

        threading.Thread(target=drain, args=(self.proc.stderr,), daemon=True).start()
        if not found.wait(30):
            self.stop()
            raise RuntimeError("the server did not log its address:\n" + "".join(self.log))

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def restart(self) -> None:
        self.stop()
        self.start(listen=self.address)


@pytest.fixture
def start_server():
    """A factory: start_server(*extra_args) -> Server (stopped after the test)."""
    servers: list[Server] = []
    dirs: list[tempfile.TemporaryDirectory] = []

    def start(*extra_args: str) -> Server:
        tmp = tempfile.TemporaryDirectory(prefix="chat-py-")
        dirs.append(tmp)
        server = Server(tmp.name, list(extra_args))
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
    for tmp in dirs:
        tmp.cleanup()


@pytest.fixture
def server(start_server) -> Server:
    return start_server()
