"""Start the servers under test as subprocesses and read their CPU time and memory from /proc.

Each measurement gets a fresh server process, so ``VmHWM`` (peak resident memory) belongs
to that measurement alone. Everything listens on 127.0.0.1 only.

A server may be several processes: ``trio-chat serve --workers 2`` is a supervising parent
and two children that serve. Its CPU time and memory are those of the parent and of every
child alive when they are read; the Redis server its workers share the chat through is
started with it, and its CPU time is read apart (it is part of the cost, but not Python's).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

HOST = "127.0.0.1"
BENCH_DIR = Path(__file__).resolve().parent
#: The servers the bench knows, in report order.
SERVER_NAMES = (
    "trio-chat", "trio-chat-ws", "trio-chat+db", "trio-chat-workers2", "trio-chat-broker1",
    "baseline", "ngircd", "trio-chat-irc",
)  # fmt: skip
#: Which wire dialect the load generator speaks to each server.
DIALECT = {
    "trio-chat": "json",
    "trio-chat-ws": "ws",
    "trio-chat+db": "json",
    "trio-chat-workers2": "json",
    "trio-chat-broker1": "json",
    "baseline": "json",
    "ngircd": "irc",
    "trio-chat-irc": "irc",
}
#: Servers measured in only some scenarios (the rest take part in all of them).
#: "trio-chat-ws" is trio-chat over WebSocket, for comparing its fan-out with TCP's.
#: "trio-chat-irc" is trio-chat's IRC port, driven like ngIRCd (the same IRC dialect), so
#: the two IRC servers are compared on IRC itself.
SCENARIOS_OF = {
    "trio-chat-ws": ("fanout", "steady", "idle"),
    "trio-chat-irc": ("fanout", "steady", "idle"),
}
#: trio-chat sharing its chat through a Redis broker (a redis-server of its own, started
#: with it), and how many processes serve: "trio-chat-workers2" is ``--workers 2`` (a
#: supervisor and two workers on one port), "trio-chat-broker1" one process with
#: ``--broker``, so the broker's cost can be told from the second process's gain.
BROKER_WORKERS = {"trio-chat-workers2": 2, "trio-chat-broker1": 1}
#: The trio-chat kinds run from the exported tree (``TRIO_CHAT_REF``).
TRIO_CHAT_KINDS = (
    "trio-chat", "trio-chat-ws", "trio-chat+db", "trio-chat-irc", *BROKER_WORKERS,
)  # fmt: skip
#: A benchmark is one host sending as fast as it can: lift the per-connection flood limit and
#: the per-address connection cap (both protect a public server, and would refuse the load).
TRIO_CHAT_LIMITS = [
    "--flood-rate", "1000000", "--flood-burst", "1000000",
    "--max-connections", "100000", "--max-connections-per-host", "100000",
]  # fmt: skip
#: And a longer send queue per receiver (in events; the 1 MiB bound in bytes stays): at
#: millions of deliveries a second, the generator's receivers (hundreds of sockets per
#: process, on the same two cores) read in bursts and fall more than the default 1024
#: events behind, which the server rightly treats as too slow and disconnects.
TRIO_CHAT_CONFIG = "outbox_size = 8192\n"

_CLK_TCK = os.sysconf("SC_CLK_TCK")
_READY = re.compile(rb"serving on tcp://[^\s:]+:(\d+)")
#: trio-chat with WebSocket on prints both: ``serving on tcp://H:P  ws://H:Q``.
_READY_WS = re.compile(rb"serving on tcp://[^\s:]+:\d+\s+ws://[^\s:]+:(\d+)")
#: trio-chat with its IRC port on: ``serving on tcp://H:P  irc://H:Q``.
_READY_IRC = re.compile(rb"serving on tcp://[^\s:]+:\d+\s+irc://[^\s:]+:(\d+)")


class ServerUnavailable(Exception):
    """The server cannot be run here at all (not installed); the text says why."""


class ServerStartError(Exception):
    """The server did not come up this time; the text holds the end of its log."""


def _stat_fields(pid: int) -> list[str]:
    """The fields of ``/proc/PID/stat`` after the command name (which may hold spaces):
    ``[0]`` is the state, ``[1]`` the parent's pid, ``[11]``/``[12]`` utime/stime,
    ``[19]`` the start time."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _cpu_of(pid: int) -> float:
    """User + system CPU seconds process ``pid`` has used so far (its own, not its
    children's: a child's time is read from the child while it runs)."""
    fields = _stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def _status_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def descendants(pid: int) -> list[int]:
    """The living children of ``pid``, theirs, and so on, found by walking ``/proc`` for
    parent pids (``/proc/PID/task/*/children`` needs a kernel option this host lacks)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = _stat_fields(int(entry.name))
        except (OSError, IndexError):
            continue  # gone meanwhile
        if fields[0] != "Z":  # a zombie uses no more CPU and holds no memory
            parents.setdefault(int(fields[1]), []).append(int(entry.name))
    found: list[int] = []
    todo = [pid]
    while todo:
        kids = parents.get(todo.pop(), [])
        found += kids
        todo += kids
    return found


@dataclass
class RunningServer:
    name: str
    dialect: str
    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path
    #: The redis-server the workers share the chat through (broker kinds only).
    redis: subprocess.Popen[bytes] | None = None
    #: A trio-chat kind started with ``ws_port``: its WebSocket port besides ``port``.
    ws_port: int | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def pids(self) -> list[int]:
        """The server's processes: the one the bench started and its living descendants
        (with ``--workers``, the supervisor and the workers)."""
        return [self.pid, *descendants(self.pid)]

    def cpu_snapshot(self) -> dict[int, float]:
        """CPU seconds used so far by each of the server's processes, by pid."""
        snapshot = {self.pid: _cpu_of(self.pid)}
        for pid in descendants(self.pid):
            with contextlib.suppress(OSError, IndexError):  # exited meanwhile
                snapshot[pid] = _cpu_of(pid)
        return snapshot

    def write_calls(self) -> int | None:
        """Write-type system calls the server's processes have made so far (``syscw`` of
        ``/proc/PID/io``: write, writev, send, sendmsg...), summed; ``None`` where the
        kernel does not let us read it. Against the deliveries it says how many deliveries
        one write carried: what batching the server managed at a given load."""
        total = 0
        for pid in [self.pid, *descendants(self.pid)]:
            try:
                text = Path(f"/proc/{pid}/io").read_text()
            except FileNotFoundError:
                continue  # exited meanwhile
            except OSError:
                return None
            for line in text.splitlines():
                if line.startswith("syscw:"):
                    total += int(line.split()[1])
        return total

    def cpu_since(self, before: dict[int, float]) -> float:
        """CPU seconds the server's processes used since ``before`` (a ``cpu_snapshot``).

        Summed per process, so a worker started in between counts from zero; one that
        exited in between takes its time with it (``pids_changed`` tells)."""
        now = self.cpu_snapshot()
        return sum(cpu - before.get(pid, 0.0) for pid, cpu in now.items())

    def cpu_by_process(self, before: dict[int, float]) -> list[float]:
        """What ``cpu_since`` sums, per process: the one started first (with ``--workers``,
        the supervisor), then the others in pid order; to see how the load was spread."""
        now = self.cpu_snapshot()
        return [
            round(now[pid] - before.get(pid, 0.0), 3)
            for pid in sorted(now, key=lambda p: (p != self.pid, p))
        ]

    def sockets_by_process(self) -> list[int]:
        """Open sockets of each of the server's processes, in ``cpu_by_process`` order: with
        ``--workers``, how the kernel spread the connections over the workers."""
        counts = []
        for pid in sorted(self.pids(), key=lambda p: (p != self.pid, p)):
            count = 0
            with contextlib.suppress(OSError):
                for fd in os.scandir(f"/proc/{pid}/fd"):
                    with contextlib.suppress(OSError):
                        count += os.readlink(fd.path).startswith("socket:")
            counts.append(count)
        return counts

    def cpu_seconds(self) -> float:
        """User + system CPU seconds the server's processes have used so far."""
        return sum(self.cpu_snapshot().values())

    def _sum_kb(self, key: str) -> int:
        total = _status_kb(self.pid, key)
        for pid in descendants(self.pid):
            with contextlib.suppress(OSError, ValueError):
                total += _status_kb(pid, key)
        return total

    def rss_kb(self) -> int:
        """Resident memory now (VmRSS), in KiB, summed over the server's processes."""
        return self._sum_kb("VmRSS")

    def peak_rss_kb(self) -> int:
        """Peak resident memory (VmHWM), in KiB: each process's since it started, summed
        over the server's processes (the peaks need not have been at the same time)."""
        return self._sum_kb("VmHWM")

    def broker_cpu_seconds(self) -> float | None:
        """CPU seconds the redis-server has used so far; ``None`` without one."""
        return None if self.redis is None else _cpu_of(self.redis.pid)

    def broker_peak_rss_kb(self) -> int | None:
        """The redis-server's VmHWM in KiB (its stream keeps the messages); ``None``."""
        return None if self.redis is None else _status_kb(self.redis.pid, "VmHWM")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, lines: int = 5) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def raise_nofile() -> int:
    """Raise the soft open-files limit to the hard limit (inherited by subprocesses)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def ngircd_available() -> str | None:
    """``None`` if ngircd can be run, else the reason it cannot."""
    if shutil.which("ngircd") is None:
        return "ngircd is not installed (apt-get install -y ngircd)"
    return None


def redis_available() -> str | None:
    """``None`` if the broker kinds can be run (redis-server, and coredis for trio-chat's
    broker), else the reason they cannot."""
    if shutil.which("redis-server") is None:
        return "redis-server is not installed (apt-get install -y redis-server)"
    if importlib.util.find_spec("coredis") is None:
        return "coredis is not installed (pip install -e '.[redis]')"
    return None


def unavailable(name: str) -> str | None:
    """Why server ``name`` cannot be run here at all, or ``None``."""
    if name == "ngircd":
        return ngircd_available()
    if name in BROKER_WORKERS:
        return redis_available()
    return None


NGIRCD_CONF = """\
[Global]
Name = bench.ngircd.test
Info = trio-chat benchmark
AdminInfo1 = bench
AdminInfo2 = bench
AdminEMail = bench@localhost
Listen = {host}
Ports = {port}
MotdPhrase = "bench"
PidFile = {dir}/ngircd.pid
HelpFile = {dir}/help.txt

[Limits]
MaxConnections = 0
MaxConnectionsIP = 0
MaxJoins = 0
MaxNickLength = 30
# 0 disables penalties (ngIRCd's per-client flood throttling) as far as config allows.
MaxPenaltyTime = 0
PingTimeout = 3600
PongTimeout = 3600

[Options]
DNS = no
Ident = no
PAM = no
"""


#: Git ref of trio-chat to benchmark (exported into the server's temp dir, which is its cwd
#: and so comes first on its sys.path), or ``None`` for the installed working tree.
TRIO_CHAT_REF: str | None = "HEAD"
#: Extra servers "trio-chat@REF": plain "trio-chat" run from another git ref, so a change
#: can be measured against the code before it in the same run (``run.py --compare REF``).
COMPARE_REFS: dict[str, str] = {}


def run_trio_chat_from(ref: str) -> None:
    """Run trio-chat's servers from git ``ref`` (exported), or from this checkout's own
    files with ``"worktree"`` (put first on the servers' ``PYTHONPATH``, so an edit in
    progress is what runs, whatever is installed)."""
    global TRIO_CHAT_REF
    if ref == "worktree":
        TRIO_CHAT_REF = None
        repo = str(BENCH_DIR.parent)
        os.environ["PYTHONPATH"] = os.pathsep.join(
            [repo, *filter(None, [os.environ.get("PYTHONPATH")])]
        )
    else:
        TRIO_CHAT_REF = ref


def compare_with(ref: str) -> str:
    """Add "trio-chat@REF" to the servers the bench knows; return its name."""
    name = f"trio-chat@{ref}"
    COMPARE_REFS[name] = ref
    DIALECT[name] = "json"
    return name


def export_trio_chat(ref: str, dest: Path) -> None:
    """Put ``trio_chat/`` as of git ``ref`` into ``dest`` (other people may be editing it)."""
    repo = BENCH_DIR.parent
    archive = subprocess.run(
        ["git", "-C", str(repo), "archive", ref, "trio_chat"],
        capture_output=True,
        check=False,
        timeout=60,
    )
    if archive.returncode != 0:
        raise ServerStartError(f"git archive {ref} failed: {archive.stderr.decode().strip()}")
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True, timeout=60)


def _command(
    name: str,
    port: int,
    workdir: Path,
    redis_port: int | None,
    *,
    db: Path | None = None,
    ws_port: int | None = None,
) -> list[str]:
    if name in COMPARE_REFS:
        export_trio_chat(COMPARE_REFS[name], workdir)
        name = "trio-chat"
    elif name in TRIO_CHAT_KINDS and TRIO_CHAT_REF is not None:
        export_trio_chat(TRIO_CHAT_REF, workdir)
        if name in BROKER_WORKERS and not (workdir / "trio_chat/broker/redis.py").exists():
            # Older code has no broker: say so once, rather than fail at every point.
            raise ServerUnavailable(
                f"trio_chat at {TRIO_CHAT_REF} has no Redis broker (--broker, --workers)"
            )
    if name in TRIO_CHAT_KINDS:
        # "trio-chat" keeps no history (fan-out only); "trio-chat+db" commits every message to
        # SQLite before fanning it out (synchronous=NORMAL, the default since 2026-12-03;
        # FULL before: TRIO_CHAT_DB_SYNC_FULL=true in the environment gives it). "trio-chat-ws"
        # is "trio-chat" with its WebSocket port on too (free port); the bench uses only that.
        # The broker kinds are "trio-chat" sharing the chat through their own redis-server.
        store = ["--db", str(workdir / "chat.db")] if name == "trio-chat+db" else ["--no-db"]
        ws = ["--ws-port", "0"] if name == "trio-chat-ws" else ["--no-ws"]
        # The community and storm scenarios: a database that outlives one server (a
        # restart), and the WebSocket port on beside TCP, for clients of both.
        if db is not None:
            store = ["--db", str(db)]
        if ws_port is not None:
            ws = ["--ws-port", str(ws_port)]
        if name == "trio-chat-irc":
            ws += ["--irc-port", "0"]
        broker = []
        if name in BROKER_WORKERS:
            assert redis_port is not None
            broker = ["--broker", f"redis://{HOST}:{redis_port}/0"]
            broker += ["--workers", str(BROKER_WORKERS[name])]
        config = workdir / "trio-chat.toml"
        config.write_text(TRIO_CHAT_CONFIG)
        return [
            sys.executable, "-m", "trio_chat.cli", "serve", "--port", str(port), *ws,
            "--config", str(config), "--no-entry-points", "--log-level", "warning", *store,
            *broker, *TRIO_CHAT_LIMITS,
        ]  # fmt: skip
    if name == "baseline":
        return [sys.executable, str(BENCH_DIR / "baseline_threaded.py"), "--port", str(port)]
    if name == "ngircd":
        reason = ngircd_available()
        if reason is not None:
            raise ServerUnavailable(reason)
        conf = workdir / "ngircd.conf"
        (workdir / "help.txt").write_text("")
        conf.write_text(NGIRCD_CONF.format(host=HOST, port=port, dir=workdir))
        return ["ngircd", "--nodaemon", "--config", str(conf)]
    raise ValueError(f"unknown server {name!r}")


def _wait_ready(proc: subprocess.Popen[bytes], name: str, port: int, deadline: float) -> int:
    """Wait for the ready line (our servers) or an accepting port (ngircd); return the port
    the bench talks to (for "trio-chat-ws", the WebSocket one)."""
    if name == "ngircd":
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            with contextlib.suppress(OSError), socket.create_connection((HOST, port), 0.5):
                return port
            time.sleep(0.05)
        raise ServerStartError(f"ngircd did not start listening on {HOST}:{port}")
    assert proc.stdout is not None
    seen = b""
    pattern = {"ws": _READY_WS, "irc": _READY_IRC}.get(DIALECT[name], _READY)
    workers = BROKER_WORKERS.get(name, 1)
    if workers > 1:
        # The supervisor prints the address once every worker printed its own (a worker
        # does once its broker is up and it listens), then "N workers. Stop with Ctrl-C.":
        # wait for both, so the load never starts against part of the server.
        pattern = re.compile(pattern.pattern + rb".*\n%d workers\." % workers)
    while time.monotonic() < deadline and proc.poll() is None:
        ready, _, _ = select.select([proc.stdout], [], [], 0.1)
        if ready:
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:
                break
            seen += chunk
            match = pattern.search(seen)
            if match:
                serving = len(descendants(proc.pid))
                if serving != workers and workers > 1:
                    raise ServerStartError(f"{name}: {serving} worker processes, not {workers}")
                return int(match.group(1))
    raise ServerStartError(f"{name} did not print its ready line; output: {seen[-300:]!r}")


def _ping(port: int) -> bool:
    """Whether a Redis server answers ``PING`` on ``127.0.0.1:port`` (within 0.5 s)."""
    with contextlib.suppress(OSError), socket.create_connection((HOST, port), 0.5) as sock:
        sock.sendall(b"PING\r\n")
        return sock.recv(64).startswith(b"+PONG")
    return False


@contextlib.contextmanager
def redis_server(
    workdir: Path, port: int, *, timeout: float = 10.0
) -> Iterator[subprocess.Popen[bytes]]:
    """A redis-server of one measurement's own on ``127.0.0.1:port``, nothing saved to disk
    (its files, were there any, go to ``workdir``); stopped when the block ends, however."""
    with open(workdir / "redis.log", "wb") as log:
        try:
            proc = subprocess.Popen(
                ["redis-server", "--port", str(port), "--bind", HOST, "--save", "",
                 "--appendonly", "no", "--dir", str(workdir)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        except OSError as exc:
            raise ServerUnavailable(f"cannot start redis-server: {exc}") from None
        try:
            deadline = time.monotonic() + timeout
            while not _ping(port):
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.flush()
                    tail = (workdir / "redis.log").read_text(errors="replace").splitlines()
                    raise ServerStartError(
                        f"redis-server on port {port} did not answer PING; log: "
                        + " | ".join(tail[-3:])
                    )
                time.sleep(0.05)
            yield proc
        finally:
            _stop(proc)


@contextlib.contextmanager
def start_server(
    name: str,
    *,
    startup_timeout: float = 20.0,
    db: Path | None = None,
    ws: bool = False,
) -> Iterator[RunningServer]:
    """Run one server on a free 127.0.0.1 port for the duration of the ``with`` block
    (the broker kinds with a redis-server of their own, started first, stopped last).

    For the trio-chat kinds, ``db`` is the database to use (it stays after the server
    stops, so a second server can start on it: a restart), and ``ws`` turns the WebSocket
    port on besides the TCP one (``RunningServer.ws_port``)."""
    raise_nofile()
    with (
        tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as tmp,
        contextlib.ExitStack() as stack,
    ):
        workdir = Path(tmp)
        port = free_port() if name == "ngircd" else 0
        redis_port = free_port() if name in BROKER_WORKERS else None
        ws_port = free_port() if ws and name in (*TRIO_CHAT_KINDS, *COMPARE_REFS) else None
        command = _command(name, port, workdir, redis_port, db=db, ws_port=ws_port)
        redis = None
        if redis_port is not None:
            redis = stack.enter_context(redis_server(workdir, redis_port))
        log_path = workdir / "server.log"
        with open(log_path, "wb") as log:
            try:
                proc = subprocess.Popen(
                    command,
                    # Our servers print their address on stdout. ngIRCd (found by its port)
                    # logs every connection there when not a daemon: into a pipe nobody
                    # reads it blocked after ~64 KiB of log, i.e. a few hundred log-ins.
                    stdout=log if name == "ngircd" else subprocess.PIPE,
                    stderr=log,
                    stdin=subprocess.DEVNULL,
                    cwd=workdir,
                )
            except OSError as exc:
                raise ServerUnavailable(f"cannot start {name}: {exc}") from None
            try:
                try:
                    port = _wait_ready(proc, name, port, time.monotonic() + startup_timeout)
                except ServerStartError as exc:
                    log.flush()
                    tail = log_path.read_text(errors="replace").strip().splitlines()[-3:]
                    raise ServerStartError(f"{exc}; log: {' | '.join(tail)}") from None
                yield RunningServer(name, DIALECT[name], port, proc, log_path, redis, ws_port)
            finally:
                _stop(proc)


#: Seconds a stopping server gets before it is killed. A supervisor stops its workers
#: (each says goodbye to its connections and hands the broker what it still has), so it
#: gets longer; a worker still there after it is killed by its pid.
STOP_TIMEOUT = 5.0
STOP_TIMEOUT_SUPERVISOR = 15.0


def _started(pid: int) -> str | None:
    """When process ``pid`` started (in clock ticks since boot), or ``None`` if it is gone:
    with its pid, it names one process even after the pid is reused."""
    try:
        return _stat_fields(pid)[19]
    except (OSError, IndexError):
        return None


def _stop(proc: subprocess.Popen[bytes]) -> None:
    children: dict[int, str | None] = {}
    if proc.poll() is None:
        children = {pid: _started(pid) for pid in descendants(proc.pid)}
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT if proc.args[0] == sys.executable else signal.SIGTERM)
        try:
            proc.wait(STOP_TIMEOUT_SUPERVISOR if children else STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    for pid, started in children.items():  # normally stopped by the supervisor
        if started is not None and _started(pid) == started:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
    if proc.stdout is not None:
        proc.stdout.close()
