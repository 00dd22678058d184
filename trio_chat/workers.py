"""``trio-chat serve --workers N``: N server processes on one machine sharing the ports.

The parent process serves nobody itself. It checks the settings once, reserves the TCP and
WebSocket ports (a port of 0 becomes one concrete free port, the same for every worker),
then runs ``trio-chat serve`` N times with the same command line and environment, each
child told its number in ``TRIO_CHAT_WORKER`` (1 to N). A worker opens the chat ports with
``SO_REUSEPORT``, so the kernel spreads new connections over the workers; keeps its own
SQLite file next to ``--db`` (``chat.db`` becomes ``chat.worker1.db``: each node keeps its
own copy of the history, replicated from the broker's log); and serves ``--metrics-port``
plus its number minus one, so each worker can be scraped.

The parent passes the workers' output through, each line prefixed with ``[worker K]``,
prints the addresses once when every worker serves, restarts a worker that exits (with a
growing delay, and gives up when they keep failing at once), and on SIGINT/SIGTERM stops
them all: SIGTERM to each, a wait, then SIGKILL for any that is still there. Workers run
in their own process group, so a Ctrl-C in the terminal reaches the parent alone, and each
watches its standard input, a pipe from the parent: if the parent dies, they stop too.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import TextIO

import trio

from .config import ServerConfig
from .transports.streams import ListenError, share_port

log = logging.getLogger("trio_chat.workers")

#: The environment variable that makes ``trio-chat serve`` a worker, and says which (1..N).
WORKER_ENV = "TRIO_CHAT_WORKER"
#: Names the supervisor's run (host, pid, a random part) for its workers' broker names.
RUN_ENV = "TRIO_CHAT_WORKERS_RUN"

#: Delay before restarting a worker that exited, doubled for each failure in a row.
RESTART_DELAY = 0.5
RESTART_DELAY_MAX = 30.0
#: A worker that exits sooner than this after starting counts as failing at once.
STABLE_AFTER = 10.0
#: Failures at once in a row after which the parent gives up and stops every worker.
GIVE_UP_AFTER = 5
#: Seconds a worker gets to stop after SIGTERM, beyond the server's own shutdown grace.
STOP_MARGIN = 10.0

BANNER = "trio-chat serving on "
_SWALLOWED = frozenset({"Stop with Ctrl-C.", "trio-chat stopped."})


def worker_number(environ: Mapping[str, str]) -> int | None:
    """This process's worker number, or ``None`` when it is not a ``--workers`` worker."""
    text = environ.get(WORKER_ENV, "").strip()
    return int(text) if text.isdigit() and int(text) >= 1 else None


def worker_slot(environ: Mapping[str, str], number: int) -> str | None:
    """The stable part of worker ``number``'s name in the broker's log: the same for the
    worker and for the one that replaces it after it died, and for no other process. A
    new worker retires the nodes of its slot at once (see ``RedisBroker``): its users are
    shown leaving within seconds rather than when the dead one's key expires."""
    run = environ.get(RUN_ENV, "").strip()
    return f"{run}-w{number}" if run else None


def worker_db_path(db: str, number: int) -> str:
    """A worker's own database next to ``db``: ``chat.db`` -> ``chat.worker1.db``."""
    if db == ":memory:":
        return db
    root, ext = os.path.splitext(db)
    return f"{root}.worker{number}{ext}"


def worker_config(config: ServerConfig, number: int) -> ServerConfig:
    """The settings worker ``number`` runs with: its own database file and metrics port."""
    db = None if config.db is None else worker_db_path(config.db, number)
    metrics_port = config.metrics_port
    if metrics_port:  # 0 (any free port) and None stay as they are
        metrics_port += number - 1
    return dataclasses.replace(config, db=db, metrics_port=metrics_port)


def reserve_port(host: str, port: int) -> socket.socket:
    """Bind (without listening) a ``SO_REUSEPORT`` socket to ``host:port``.

    The workers' listening sockets join it on the same port; held by the parent, it keeps
    the port, picked by the system when ``port`` is 0, from anyone else while workers come
    and go. Not listening, it is never handed a connection. Raises :class:`ListenError`.
    """
    try:
        family, type_, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, type_, proto)
    except OSError as exc:
        raise ListenError(host, port, exc) from None
    try:
        share_port(sock, family)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise ListenError(host, port, exc) from None
    return sock


def worker_command(argv: Sequence[str], ports: Mapping[str, int]) -> list[str]:
    """The command line of a worker: the parent's, then the concrete ports it reserved."""
    command = [sys.executable, "-m", "trio_chat.cli", *argv]
    for flag, port in ports.items():
        command += [flag, str(port)]
    return command


class GaveUp(Exception):
    """Workers kept failing at once; the message says which and how."""


class Supervisor:
    """Runs ``count`` workers of ``command`` until told to stop (see the module's doc)."""

    def __init__(
        self,
        command: Sequence[str],
        count: int,
        *,
        environ: Mapping[str, str],
        stop_timeout: float,
        announce: Callable[[list[str]], None] | None = None,
        stdout: TextIO | None = None,
        stderr: TextIO | None = None,
    ) -> None:
        self.command = list(command)
        self.count = count
        self.environ = {
            **environ,
            RUN_ENV: f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(2)}",
        }
        self.stop_timeout = stop_timeout
        self.announce = announce
        self.stdout = stdout if stdout is not None else sys.stdout
        self.stderr = stderr if stderr is not None else sys.stderr
        self.stopping = trio.Event()
        self.kill_now = trio.Event()
        self.addresses: list[str] | None = None
        self._up: set[int] = set()
        self._announced = False
        self.gave_up: str | None = None

    async def run(self) -> None:
        """Run the workers until SIGINT/SIGTERM (a second one kills them at once).

        Raises :class:`GaveUp` when workers keep failing at once (after stopping the rest).
        """
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:

                async def run_workers() -> None:
                    async with trio.open_nursery() as workers:
                        for number in range(1, self.count + 1):
                            workers.start_soon(self._keep_running, number)
                    nursery.cancel_scope.cancel()  # all stopped: stop watching signals

                nursery.start_soon(run_workers)
                async for signum in signals:
                    name = signal.Signals(signum).name
                    if self.stopping.is_set():
                        log.info("received %s again, killing the workers", name)
                        self.kill_now.set()
                    else:
                        log.info("received %s, stopping the workers", name)
                        self.stopping.set()
        if self.gave_up is not None:
            raise GaveUp(self.gave_up)

    async def _keep_running(self, number: int) -> None:
        failures = 0
        while not self.stopping.is_set():
            started = trio.current_time()
            code = await self._run_once(number)
            if self.stopping.is_set():
                log.info("worker %d stopped (exit code %d)", number, code)
                return
            failures = failures + 1 if trio.current_time() - started < STABLE_AFTER else 0
            if failures >= GIVE_UP_AFTER:
                self.gave_up = (
                    f"worker {number} exited {failures} times in a row within "
                    f"{STABLE_AFTER:g} s of starting (last exit code {code}); giving up"
                )
                log.error("%s", self.gave_up)
                self.stopping.set()
                return
            delay = min(RESTART_DELAY * 2 ** max(failures - 1, 0), RESTART_DELAY_MAX)
            log.warning("worker %d exited with code %d; restarting in %g s", number, code, delay)
            with trio.move_on_after(delay):
                await self.stopping.wait()

    async def _run_once(self, number: int) -> int:
        environ = {**self.environ, WORKER_ENV: str(number), "PYTHONUNBUFFERED": "1"}
        process = await trio.lowlevel.open_process(
            self.command,
            env=environ,
            stdin=subprocess.PIPE,  # its end tells the worker when the parent is gone
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            process_group=0,  # Ctrl-C in the terminal is the parent's to pass on
        )
        log.info("worker %d started (pid %d)", number, process.pid)
        assert process.stdout is not None and process.stderr is not None
        try:
            async with trio.open_nursery() as pumps:
                pumps.start_soon(self._pump, process.stdout, number, True)
                pumps.start_soon(self._pump, process.stderr, number, False)
                async with trio.open_nursery() as waiting:
                    waiting.start_soon(self._stop_when_asked, process, number)
                    await process.wait()
                    waiting.cancel_scope.cancel()
        finally:
            self._up.discard(number)
            if process.returncode is None:
                process.kill()
                with trio.CancelScope(shield=True):
                    await process.wait()
            if process.stdin is not None:
                with trio.CancelScope(shield=True):
                    await process.stdin.aclose()
        assert process.returncode is not None
        return process.returncode

    async def _stop_when_asked(self, process: trio.Process, number: int) -> None:
        await self.stopping.wait()
        process.send_signal(signal.SIGTERM)
        with trio.move_on_after(self.stop_timeout):
            await self.kill_now.wait()
        if process.returncode is None:
            if not self.kill_now.is_set():
                log.warning(
                    "worker %d did not stop within %g s; killing it", number, self.stop_timeout
                )
            process.kill()

    async def _pump(self, stream: trio.abc.ReceiveStream, number: int, is_stdout: bool) -> None:
        out = self.stdout if is_stdout else self.stderr
        pending = b""
        while True:
            data = await stream.receive_some(65536)
            if not data:
                break
            pending += data
            *lines, pending = pending.split(b"\n")
            for line in lines:
                self._line(number, line.decode(errors="replace"), out, is_stdout)
        if pending:
            self._line(number, pending.decode(errors="replace"), out, is_stdout)

    def _line(self, number: int, line: str, out: TextIO, is_stdout: bool) -> None:
        if is_stdout and line.startswith(BANNER):
            self._came_up(number, line[len(BANNER) :].split())
            return
        if is_stdout and line in _SWALLOWED:
            return
        out.write(f"[worker {number}] {line}\n")
        out.flush()

    def _came_up(self, number: int, addresses: list[str]) -> None:
        if number == 1 or self.addresses is None:
            self.addresses = addresses
        self._up.add(number)
        if not self._announced and len(self._up) == self.count:
            self._announced = True
            if self.announce is not None:
                self.announce(self.addresses)
