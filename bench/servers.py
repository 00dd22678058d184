"""Start the servers under test as subprocesses and read their CPU time and memory from /proc.

Each measurement gets a fresh server process, so ``VmHWM`` (peak resident memory) belongs
to that measurement alone. Everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
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
SERVER_NAMES = ("trio-chat", "trio-chat-ws", "trio-chat+db", "baseline", "ngircd")
#: Which wire dialect the load generator speaks to each server.
DIALECT = {
    "trio-chat": "json",
    "trio-chat-ws": "ws",
    "trio-chat+db": "json",
    "baseline": "json",
    "ngircd": "irc",
}
#: Servers measured in only some scenarios (the rest take part in all of them).
#: "trio-chat-ws" is trio-chat over WebSocket, for comparing its fan-out with TCP's.
SCENARIOS_OF = {"trio-chat-ws": ("fanout", "steady", "idle")}
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


class ServerUnavailable(Exception):
    """The server cannot be run here at all (not installed); the text says why."""


class ServerStartError(Exception):
    """The server did not come up this time; the text holds the end of its log."""


@dataclass
class RunningServer:
    name: str
    dialect: str
    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def cpu_seconds(self) -> float:
        """User + system CPU seconds the server process has used so far."""
        stat = Path(f"/proc/{self.pid}/stat").read_text()
        fields = stat.rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _CLK_TCK

    def _status_kb(self, key: str) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
        return 0

    def rss_kb(self) -> int:
        """Resident memory now (VmRSS), in KiB."""
        return self._status_kb("VmRSS")

    def peak_rss_kb(self) -> int:
        """Peak resident memory since the process started (VmHWM), in KiB."""
        return self._status_kb("VmHWM")

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


def _command(name: str, port: int, workdir: Path) -> list[str]:
    if name in COMPARE_REFS:
        export_trio_chat(COMPARE_REFS[name], workdir)
        name = "trio-chat"
    elif name in ("trio-chat", "trio-chat-ws", "trio-chat+db") and TRIO_CHAT_REF is not None:
        export_trio_chat(TRIO_CHAT_REF, workdir)
    if name in ("trio-chat", "trio-chat-ws", "trio-chat+db"):
        # "trio-chat" keeps no history (fan-out only); "trio-chat+db" commits every message to
        # SQLite (synchronous=FULL, the default) before fanning it out. "trio-chat-ws" is
        # "trio-chat" with its WebSocket port on too (free port); the bench uses only that.
        store = ["--db", str(workdir / "chat.db")] if name == "trio-chat+db" else ["--no-db"]
        ws = ["--ws-port", "0"] if name == "trio-chat-ws" else ["--no-ws"]
        config = workdir / "trio-chat.toml"
        config.write_text(TRIO_CHAT_CONFIG)
        return [
            sys.executable, "-m", "trio_chat.cli", "serve", "--port", str(port), *ws,
            "--config", str(config), "--no-entry-points", "--log-level", "warning", *store,
            *TRIO_CHAT_LIMITS,
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
    pattern = _READY_WS if DIALECT[name] == "ws" else _READY
    while time.monotonic() < deadline and proc.poll() is None:
        ready, _, _ = select.select([proc.stdout], [], [], 0.1)
        if ready:
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:
                break
            seen += chunk
            match = pattern.search(seen)
            if match:
                return int(match.group(1))
    raise ServerStartError(f"{name} did not print its ready line; output: {seen[-300:]!r}")


@contextlib.contextmanager
def start_server(name: str, *, startup_timeout: float = 20.0) -> Iterator[RunningServer]:
    """Run one server on a free 127.0.0.1 port for the duration of the ``with`` block."""
    raise_nofile()
    with tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as tmp:
        workdir = Path(tmp)
        port = free_port() if name == "ngircd" else 0
        log_path = workdir / "server.log"
        with open(log_path, "wb") as log:
            try:
                proc = subprocess.Popen(
                    _command(name, port, workdir),
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
                yield RunningServer(name, DIALECT[name], port, proc, log_path)
            finally:
                _stop(proc)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT if proc.args[0] == sys.executable else signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    if proc.stdout is not None:
        proc.stdout.close()
