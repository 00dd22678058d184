from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest_plugins = ["trio_chat.testing"]


@pytest.fixture(autouse=True)
def private_data_home(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """Servers started by a test keep their default database in a temporary folder, never in
    the user's real data directory."""
    home = tmp_path_factory.mktemp("data-home")
    monkeypatch.setenv("XDG_DATA_HOME", str(home))
    return home


# ---------------------------------------------------------------------------- Redis


class RedisServer:
    """A ``redis-server`` of the tests' own on a free loopback port, keeping its data
    (append-only file) in ``folder`` so that :meth:`restart` finds it again.

    ``stop``/``start``/``restart`` block (a fraction of a second); in a trio test use
    ``await trio.to_thread.run_sync(server.restart)`` so that in-process servers run on.
    """

    START_TIMEOUT = 10.0

    def __init__(self, folder: Path, port: int | None = None) -> None:
        self.folder = folder
        self.port = port if port is not None else free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        assert self.process is None, "already running"
        command = [
            REDIS_SERVER or "redis-server",
            *("--port", str(self.port), "--bind", "127.0.0.1", "--save", ""),
            *("--appendonly", "yes", "--dir", str(self.folder)),
        ]
        log = open(self.folder / "redis.log", "ab")  # noqa: SIM115  (the child writes it)
        with log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + self.START_TIMEOUT
        while not redis_answers(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                tail = (self.folder / "redis.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"redis-server did not come up on {self.port}:\n{tail}")
            time.sleep(0.05)

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def restart(self) -> None:
        self.stop()
        self.start()


REDIS_SERVER = shutil.which("redis-server") or (
    "/usr/bin/redis-server" if os.path.exists("/usr/bin/redis-server") else None
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def redis_answers(port: int) -> bool:
    """Whether a Redis on loopback ``port`` answers PING."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def flushed_database(url: str, db: int) -> str:
    """``url`` pointed at database ``db``, emptied (tests that share the session's Redis
    each start from nothing)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379), 5) as sock:
        sock.sendall(f"SELECT {db}\r\nFLUSHDB\r\n".encode())
        answer = b""
        while answer.count(b"\r\n") < 2:
            chunk = sock.recv(64)
            if not chunk:
                break
            answer += chunk
        assert answer == b"+OK\r\n+OK\r\n", answer
    return f"{parts.scheme}://{parts.netloc}/{db}"


def need_redis_server() -> None:
    """Skip without ``redis-server``; fail in CI, which must have it (``.ci/run``)."""
    if REDIS_SERVER is None:
        message = "redis-server is not installed (apt-get install redis-server)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Redis for the whole session: ``TRIO_CHAT_TEST_REDIS_URL`` if set (``.ci/run``
    sets it), else a ``redis-server`` of our own. Tests share it: use keys of their own."""
    given = os.environ.get("TRIO_CHAT_TEST_REDIS_URL")
    if given:
        yield given
        return
    need_redis_server()
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A ``redis-server`` of this test's own, running, that it may stop and restart."""
    need_redis_server()
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def broker_url(redis_url: str) -> str:
    """The session's Redis, database 1, emptied for this test (nodes of a test share it)."""
    return flushed_database(redis_url, db=1)
