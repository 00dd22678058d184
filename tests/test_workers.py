"""``trio-chat serve --workers N``: worker processes sharing the ports, supervised."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from pathlib import Path

import pytest
import trio

from trio_chat.testing import is_prompt
from trio_chat.workers import worker_config, worker_db_path, worker_number

CLI = [sys.executable, "-m", "trio_chat.cli"]


class Parent:
    """A running ``trio-chat serve --workers N`` with its output collected."""

    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self.stdout = ""
        self.stderr = ""
        self.more = trio.Event()

    async def collect(self, stream: trio.abc.ReceiveStream, which: str) -> None:
        while data := await stream.receive_some(65536):
            setattr(self, which, getattr(self, which) + data.decode(errors="replace"))
            self.more.set()
            self.more = trio.Event()

    async def wait_for(self, pattern: str, which: str = "stderr", start: int = 0) -> re.Match[str]:
        with trio.fail_after(20):
            while (match := re.compile(pattern).search(getattr(self, which), start)) is None:
                await self.more.wait()
        return match

    def pids(self) -> dict[int, int]:
        """The latest pid of each worker, from the parent's log."""
        found = re.findall(r"worker (\d+) started \(pid (\d+)\)", self.stderr)
        return {int(number): int(pid) for number, pid in found}


@asynccontextmanager
async def workers(*args: str, cwd: Path) -> AsyncIterator[Parent]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parent.parent), *sys.path])
    process = await trio.lowlevel.open_process(
        [*CLI, "serve", "--port", "0", "--ws-port", "0", "--no-entry-points", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=str(cwd),
    )
    assert process.stdout is not None and process.stderr is not None
    parent = Parent(process)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(parent.collect, process.stdout, "stdout")
            nursery.start_soon(parent.collect, process.stderr, "stderr")
            yield parent
            with trio.fail_after(30):
                await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        for pid in parent.pids().values():  # none may outlive the test
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


async def served_by(port: int, nick: str, parent: Parent) -> int:
    """Log ``nick`` in over TCP and return the number of the worker that served it."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(json.dumps({"type": "hello", "nick": nick}).encode() + b"\n")
        received = b""
        with trio.fail_after(10):
            while b'"welcome"' not in received:
                data = await stream.receive_some(4096)
                assert data, received
                received += data
    match = await parent.wait_for(rf"\[worker (\d+)\] .*connect nick={nick} ")
    return int(match.group(1))


def tcp_port(parent: Parent) -> int:
    first = parent.stdout.splitlines()[0]
    assert first.startswith("trio-chat serving on tcp://127.0.0.1:"), first
    assert " ws://127.0.0.1:" in first
    return int(first.split()[3].rsplit(":", 1)[1])


async def test_two_workers_share_one_port_and_a_killed_one_comes_back(
    redis_url: str, tmp_path: Path
) -> None:
    async with workers(
        "--workers", "2", "--broker", redis_url, "--db", "chat.db", cwd=tmp_path
    ) as parent:
        await parent.wait_for(r"Stop with Ctrl-C\.", "stdout")
        assert parent.stdout.count("trio-chat serving on") == 1
        port = tcp_port(parent)
        seen = {await served_by(port, f"u{i}", parent) for i in range(40)}
        assert seen == {1, 2}
        assert (tmp_path / "chat.worker1.db").exists() and (tmp_path / "chat.worker2.db").exists()
        assert not (tmp_path / "chat.db").exists()

        killed = parent.pids()[2]
        os.kill(killed, signal.SIGKILL)
        mark = len(parent.stderr)
        await parent.wait_for(r"worker 2 exited with code -9; restarting", start=mark)
        await parent.wait_for(r"worker 2 started \(pid \d+\)", start=mark)
        assert parent.pids()[2] != killed
        await parent.wait_for(r"\[worker 2\] .*listening on", start=mark)
        seen = {await served_by(port, f"v{i}", parent) for i in range(40)}
        assert seen == {1, 2}

        parent.process.send_signal(signal.SIGTERM)
    assert parent.process.returncode == 0
    assert "trio-chat stopped." in parent.stdout
    assert "Traceback" not in parent.stderr
    for pid in parent.pids().values():  # stopped, and reaped by the parent
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=30)


def test_several_workers_without_a_broker_is_one_line() -> None:
    result = run_cli("serve", "--workers", "2", "--no-entry-points")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "trio-chat: error: several workers need a broker (--broker redis://...) "
        "to share rooms, users and ids"
    )


def test_a_bad_broker_url_is_one_line() -> None:
    result = run_cli("serve", "--broker", "http://127.0.0.1:6379", "--no-entry-points")
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == (
        "trio-chat serve: error: argument --broker: must be a redis://, rediss:// or unix:// "
        "URL (e.g. redis://127.0.0.1:6379/0), got 'http://127.0.0.1:6379'"
    )
    assert "Traceback" not in result.stderr


def test_each_worker_has_its_own_database_and_metrics_port() -> None:
    from trio_chat.config import ServerConfig

    assert worker_db_path("/data/chat.db", 2) == "/data/chat.worker2.db"
    assert worker_db_path("history", 1) == "history.worker1"
    assert worker_db_path(":memory:", 3) == ":memory:"
    config = worker_config(ServerConfig(db="chat.db", metrics_port=9100), 3)
    assert (config.db, config.metrics_port) == ("chat.worker3.db", 9102)
    config = worker_config(ServerConfig(db=None, metrics_port=0), 2)
    assert (config.db, config.metrics_port) == (None, 0)
    assert worker_number({"TRIO_CHAT_WORKER": "2"}) == 2
    assert worker_number({}) is None


class LineClient:
    """A JSON-lines client of a worker pool, reading what it is sent."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buffer = b""

    async def send(self, frame: dict[str, object]) -> None:
        await self.stream.send_all(json.dumps(frame).encode() + b"\n")

    async def expect(self, predicate: Callable[[dict[str, object]], bool]) -> dict[str, object]:
        while True:
            while b"\n" in self.buffer:
                line, self.buffer = self.buffer.split(b"\n", 1)
                if is_prompt(line):
                    continue  # our hello came after the sniff delay
                event = json.loads(line)
                if predicate(event):
                    return event
            data = await self.stream.receive_some(65536)
            assert data, "the server closed the connection"
            self.buffer += data


async def test_users_of_two_workers_chat_and_a_killed_workers_users_are_shown_gone(
    broker_url: str, tmp_path: Path
) -> None:
    async with workers("--workers", "2", "--broker", broker_url, "--no-db", cwd=tmp_path) as parent:
        await parent.wait_for(r"Stop with Ctrl-C\.", "stdout")
        port = tcp_port(parent)
        clients: dict[int, tuple[str, LineClient]] = {}  # one user per worker
        async with trio.open_nursery() as nursery:
            for i in range(60):
                if len(clients) == 2:
                    break
                stream = await trio.open_tcp_stream("127.0.0.1", port)
                client = LineClient(stream)
                nick = f"w{i}"
                await client.send({"type": "hello", "nick": nick})
                with trio.fail_after(10):
                    await client.expect(lambda e: e["type"] == "welcome")
                match = await parent.wait_for(rf"\[worker (\d+)\] .*connect nick={nick} ")
                number = int(match.group(1))
                if number in clients:
                    await stream.aclose()
                else:
                    clients[number] = (nick, client)
            assert set(clients) == {1, 2}
            first, (two, second) = clients[1][1], clients[2]
            with trio.fail_after(10):
                # first's own line coming back means its join is in the shared log.
                await first.send({"type": "say", "text": "from worker one"})
                await first.expect(lambda e: e["type"] == "message")
                await second.send({"type": "say", "text": "from worker two"})
                said = await first.expect(lambda e: e["type"] == "message")
                echo = await second.expect(lambda e: e.get("text") == "from worker two")
            assert said == echo and said["nick"] == two
            os.kill(parent.pids()[2], signal.SIGKILL)
            # The worker that replaces it retires its node: its users are shown leaving at
            # the next check (every 3 s), not once its 10 s key has expired.
            await parent.wait_for(r"\[worker 2\] .*the worker this one replaces, is gone")
            with trio.fail_after(10):
                gone = await first.expect(lambda e: e["type"] == "leave" and e["nick"] == two)
            assert "went away" in str(gone.get("reason")), parent.stderr
            async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
                again = LineClient(stream)  # its nick is free again, on either worker
                await again.send({"type": "hello", "nick": two})
                with trio.fail_after(10):
                    assert (await again.expect(lambda e: True))["type"] == "welcome"
            await first.stream.aclose()
            nursery.cancel_scope.cancel()
        parent.process.send_signal(signal.SIGTERM)
    assert parent.process.returncode == 0
