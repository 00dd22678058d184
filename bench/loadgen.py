"""The load generator: worker processes on plain non-blocking sockets and ``selectors``.

Nothing here imports trio-chat: the generator speaks the wire protocol itself, so it measures
the server and not a shared code path. Each worker runs in its own process, talks to the
coordinator over a ``multiprocessing`` pipe, and stops by itself at its deadline.

Receivers count frames cheaply: after the ``SYNC`` marker line they count newlines in the
received bytes (WebSocket: occurrences of ``"type":"message"`` in the unframed payloads) and
the ``END`` markers the senders send last. A few *probe* receivers also parse the send
timestamp embedded in each message text to measure latency. Message text is
``@@<sender>:<seq>:<monotonic ns>:`` padded with ``x``; ``time.monotonic_ns`` is one clock for
all processes on Linux.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import json
import os
import random
import re
import resource
import selectors
import socket
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

SYNC = b"SYNC!SYNC"
END = b"END!END"
_STAMP = re.compile(rb"@@(\d+):(\d+):(\d+):")
RECV_SIZE = 256 * 1024
#: Connections opened before the worker drains what the server sent them.
CONNECT_BATCH = 50


# ----------------------------------------------------------------------------- dialects


class Dialect:
    """How to log in, speak and quit in one wire protocol."""

    name = ""
    #: Bytes that tell the login is complete and the client is in #lobby.
    ready = b""
    #: Bytes that tell the server took the login, after which :meth:`after_welcome` is sent
    #: (empty: the login is all sent at once).
    welcome = b""
    #: Messages acknowledged per ack (1 for echo-based, the ping interval for IRC).
    ack_every = 1
    #: Seconds between two connects of one worker (a server with a short accept queue
    #: drops connects beyond it, and the client's kernel retries only a second later).
    connect_gap = 0.0
    #: What receivers count, one per delivery, in the (decoded) bytes after the SYNC marker.
    unit = b"\n"

    def login(self, nick: str) -> bytes:
        raise NotImplementedError

    def after_welcome(self) -> bytes:
        return b""

    def say(self, text: str) -> bytes:
        raise NotImplementedError

    def quit(self) -> bytes:
        raise NotImplementedError

    def ack_token(self, sender: int) -> bytes:
        """Bytes whose occurrences in what a sender receives count its acknowledgements."""
        raise NotImplementedError

    def ack_request(self, seq: int) -> bytes:
        """Extra bytes sent after every ``ack_every`` messages (IRC: a PING)."""
        return b""

    def decode(self, conn: Conn, data: bytes) -> bytes:
        """The received bytes as the counters see them (WebSocket: unframed)."""
        return data

    def after_marker(self, buf: bytes, at: int) -> int:
        """Where counting starts after a marker found at ``at``: past the end of its line
        (``-1`` if that line is not complete yet)."""
        newline = buf.find(b"\n", at)
        return newline + 1 if newline >= 0 else -1


class JsonDialect(Dialect):
    """trio-chat's JSON lines (and the threaded baseline): the sender gets its own echo."""

    name = "json"
    ready = b'"type":"welcome"'

    def login(self, nick: str) -> bytes:
        return json.dumps({"type": "hello", "nick": nick}).encode() + b"\n"

    def say(self, text: str) -> bytes:
        return b'{"type":"say","text":"' + text.encode() + b'"}\n'

    def quit(self) -> bytes:
        return b'{"type":"quit"}\n'

    def ack_token(self, sender: int) -> bytes:
        return b"@@%d:" % sender

    def decode(self, conn: Conn, data: bytes) -> bytes:
        # trio-chat pings a client it has not heard from for a minute and drops it 30 s
        # later without an answer: idle clients answer, or a log-in storm longer than that
        # (20,000 over two workers took 150 s here) loses its first clients before SYNC.
        # A ping split over two reads goes unanswered; they come one a line, a minute apart.
        if b'"type":"ping"' in data:
            conn.outbuf += b'{"type":"pong"}\n'
        return data


class IrcDialect(Dialect):
    """IRC for ngIRCd: no echo to the sender, so a PING every few messages paces it."""

    name = "irc"
    ready = b" 366 "  # end of NAMES: registered and joined
    # JOIN waits for RPL_WELCOME: ngIRCd handles one command per client per pass of its
    # main loop and throttles a client with more waiting, so NICK, USER and JOIN sent
    # together took about a second per client (1000 clients did not log in in minutes);
    # this way 1000 log in and join in seconds, as an IRC client does it.
    welcome = b" 001 "
    ack_every = 8
    # ngIRCd listens with a backlog of 10 and accepts one connection per pass of its loop.
    connect_gap = 0.002

    def login(self, nick: str) -> bytes:
        return f"NICK {nick}\r\nUSER {nick} 0 * :{nick}\r\n".encode()

    def after_welcome(self) -> bytes:
        return b"JOIN #lobby\r\n"

    def say(self, text: str) -> bytes:
        return b"PRIVMSG #lobby :" + text.encode() + b"\r\n"

    def quit(self) -> bytes:
        return b"QUIT :bye\r\n"

    def ack_token(self, sender: int) -> bytes:
        return b" PONG "

    def ack_request(self, seq: int) -> bytes:
        if seq % self.ack_every:
            return b""
        return b"PING :%d\r\n" % seq


def ws_frame(payload: bytes, opcode: int = 1) -> bytes:
    """One client frame: FIN, ``opcode``, masked (RFC 6455 5.3), 7/16/64-bit length."""
    size = len(payload)
    if size < 126:
        head = bytes((0x80 | opcode, 0x80 | size))
    elif size < 1 << 16:
        head = bytes((0x80 | opcode, 0x80 | 126)) + size.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 0x80 | 127)) + size.to_bytes(8, "big")
    mask = random.getrandbits(32).to_bytes(4, "big")
    return head + mask + _xor(payload, mask)


def _xor(data: bytes, mask: bytes) -> bytes:
    if not data:
        return data
    size = len(data)
    key = (mask * (size // 4 + 1))[:size]
    return (int.from_bytes(data, "big") ^ int.from_bytes(key, "big")).to_bytes(size, "big")


class WsDialect(Dialect):
    """trio-chat's WebSocket JSON: one JSON object per text message, the sender gets its own
    echo. The hello asks for ``batch`` messages (several events in one message), so a
    receiver counts ``"type":"message"`` in the payloads rather than messages. ``decode``
    unframes what the server sent (answering pings, noting a close) and hands the counters
    each complete text message followed by a newline, so SYNC/END handling and the probes'
    time stamps work as for JSON lines."""

    name = "ws"
    ready = b'"type":"welcome"'
    unit = b'"type":"message"'
    #: Longest HTTP response head accepted before the upgrade counts as failed.
    max_head = 16 * 1024

    def login(self, nick: str) -> bytes:
        # The hello follows once the 101 response head is in (see ``decode``).
        key = base64.b64encode(os.urandom(16))
        return (
            b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: " + key + b"\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n"
        )

    def hello(self, nick: str) -> bytes:
        return ws_frame(json.dumps({"type": "hello", "nick": nick, "batch": True}).encode())

    def say(self, text: str) -> bytes:
        return ws_frame(b'{"type":"say","text":"' + text.encode() + b'"}')

    def quit(self) -> bytes:
        return ws_frame(b'{"type":"quit"}')

    def ack_token(self, sender: int) -> bytes:
        return b"@@%d:" % sender

    def after_marker(self, buf: bytes, at: int) -> int:
        # ``decode`` ends every message with a newline. ``type`` comes first in every event,
        # so the marker's own "type":"message" lies before ``at``: count from the next event
        # of the same batch message, if any, else from the next message.
        newline = buf.find(b"\n", at)
        event = buf.find(self.unit, at, newline)
        return event if event >= 0 else newline + 1

    def decode(self, conn: Conn, data: bytes) -> bytes:
        buf = conn.wsbuf + data if conn.wsbuf else data
        if not conn.upgraded:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                conn.wsbuf = buf
                if len(buf) > self.max_head:
                    conn.closing = True
                return b""
            if not buf.startswith((b"HTTP/1.1 101 ", b"HTTP/1.1 101\r")):
                conn.closing = True
                return b""
            conn.upgraded = True
            conn.outbuf += self.hello(conn.nick)
            buf = buf[end + 4 :]
        out: list[bytes] = []
        pos, size = 0, len(buf)
        while size - pos >= 2:
            first, second = buf[pos], buf[pos + 1]
            length, head = second & 0x7F, 2
            if length == 126:
                if size - pos < 4:
                    break
                length, head = int.from_bytes(buf[pos + 2 : pos + 4], "big"), 4
            elif length == 127:
                if size - pos < 10:
                    break
                length, head = int.from_bytes(buf[pos + 2 : pos + 10], "big"), 10
            mask = b""
            if second & 0x80:  # servers do not mask; undo it anyway if one did
                if size - pos < head + 4:
                    break
                mask, head = buf[pos + head : pos + head + 4], head + 4
            end = pos + head + length
            if end > size:
                break
            payload = buf[pos + head : end]
            if mask:
                payload = _xor(payload, mask)
            pos = end
            opcode = first & 0x0F
            if opcode < 8:  # text, binary or continuation: one message, maybe in fragments
                if not first & 0x80:
                    conn.fragments += payload
                elif conn.fragments:
                    out.append(conn.fragments + payload)
                    conn.fragments = b""
                else:
                    out.append(payload)
            elif opcode == 9:  # ping
                conn.outbuf += ws_frame(payload, 10)
            elif opcode == 8:  # close: answer it, then it is a disconnect
                conn.outbuf += ws_frame(payload[:2], 8)
                conn.closing = True
                pos = size
                break
        conn.wsbuf = buf[pos:]
        if not out:
            return b""
        if conn.phase == COUNTING:
            conn.ws_messages += len(out)
        out.append(b"")
        return b"\n".join(out)


DIALECTS: dict[str, Dialect] = {"json": JsonDialect(), "irc": IrcDialect(), "ws": WsDialect()}


def message_text(sender: int, seq: int, stamp_ns: int, size: int) -> str:
    head = f"@@{sender}:{seq}:{stamp_ns}:"
    return head + "x" * max(0, size - len(head))


# ----------------------------------------------------------------------------- plumbing


def raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


LOGIN, PRESYNC, COUNTING, DONE, CLOSED = range(5)


@dataclass(eq=False)
class Conn:
    """One client socket and the cheap counters the receivers keep."""

    sock: socket.socket
    probe: bool = False
    nick: str = ""
    phase: int = LOGIN
    tail: bytes = b""
    lines: int = 0
    ends: int = 0
    last_rx: int = 0
    partial: bytes = b""
    latencies: list[int] = field(default_factory=list)
    outbuf: bytes = b""
    #: A sample of lines (probe receivers only) that were neither a message nor a marker.
    odd_lines: list[bytes] = field(default_factory=list)
    #: WebSocket: the 101 response is in; bytes of an incomplete frame; an unfinished
    #: fragmented message; the server closed (close frame, or a failed upgrade).
    upgraded: bool = False
    wsbuf: bytes = b""
    fragments: bytes = b""
    closing: bool = False
    #: WebSocket: text messages received while counting (a batch message is one).
    ws_messages: int = 0
    #: The dialect's ``welcome`` came and its ``after_welcome`` was sent.
    welcomed: bool = False

    def feed(self, data: bytes, now: int, n_ends: int, dialect: Dialect) -> None:
        data = dialect.decode(self, data)
        if not data:
            return
        if self.phase == LOGIN:
            buf = self.tail + data
            if dialect.welcome and not self.welcomed and dialect.welcome in buf:
                self.welcomed = True
                self.outbuf += dialect.after_welcome()
            if dialect.ready not in buf:
                self.tail = buf[-max(len(dialect.ready), len(dialect.welcome)) :]
                return
            self.phase, self.tail, data = PRESYNC, b"", buf
        if self.phase == PRESYNC:
            buf = self.tail + data
            at = buf.find(SYNC)
            start = dialect.after_marker(buf, at) if at >= 0 else -1
            if start < 0:
                # Keep the marker (or what may be its first part) for the next chunk.
                self.tail = buf[at:] if at >= 0 else buf[-len(SYNC) :]
                return
            self.phase, self.tail, data = COUNTING, b"", buf[start:]
            if not data:
                return
        if self.phase == COUNTING:
            # WebSocket: ``decode`` hands over whole messages only, so no unit is split.
            self.lines += data.count(dialect.unit)
            buf = self.tail + data
            self.ends += buf.count(END)
            self.tail = buf[-(len(END) - 1) :]
            self.last_rx = now
            if self.probe:
                self._stamp(data, now)
            if self.ends >= n_ends:
                self.phase = DONE
                # Lines after the last END line (leave notices...) are not deliveries.
                start = dialect.after_marker(buf, buf.rfind(END))
                if start >= 0:
                    self.lines -= buf.count(dialect.unit, start)

    def _stamp(self, data: bytes, now: int) -> None:
        buf = self.partial + data
        cut = buf.rfind(b"\n") + 1
        self.partial = buf[cut:]
        for match in _STAMP.finditer(buf, 0, cut):
            self.latencies.append(now - int(match.group(3)))
        if len(self.odd_lines) < 10:
            for line in buf[:cut].splitlines():
                if b"@@" not in line and END not in line and len(self.odd_lines) < 10:
                    self.odd_lines.append(line[:200])


def open_conns(
    host: str,
    port: int,
    nicks: list[str],
    dialect: Dialect,
    sel: selectors.BaseSelector,
    deadline: float,
    *,
    pump_between: bool = True,
) -> tuple[list[Conn], int]:
    """Connect and log in every nick (in batches, draining in between); return conns, failures."""
    conns: list[Conn] = []
    failures = 0
    for start in range(0, len(nicks), CONNECT_BATCH):
        for nick in nicks[start : start + CONNECT_BATCH]:
            if time.monotonic() > deadline:
                failures += 1
                continue
            if dialect.connect_gap:
                # Read meanwhile: each join is announced to everyone already in, and a
                # server may drop a client that does not read its share (ngIRCd does).
                until = time.monotonic() + dialect.connect_gap
                while (left := until - time.monotonic()) > 0:
                    pump(sel, left, 0, dialect)
            try:
                sock = socket.create_connection((host, port), timeout=10)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.sendall(dialect.login(nick))
            except OSError:
                failures += 1
                continue
            sock.setblocking(False)
            conn = Conn(sock, nick=nick)
            sel.register(sock, selectors.EVENT_READ, conn)
            conns.append(conn)
        if pump_between:
            # Drain everything pending (bounded) so that no client falls behind the join
            # notices its neighbours cause while this worker is busy connecting.
            for _ in range(100):
                if not sel.select(0):
                    break
                pump(sel, 0.0, 0, dialect)
    return conns, failures


def pump(sel: selectors.BaseSelector, timeout: float, n_ends: int, dialect: Dialect) -> int:
    """Read whatever is ready once; return how many connections closed."""
    closed = 0
    for key, _ in sel.select(timeout):
        conn: Conn = key.data
        try:
            data = conn.sock.recv(RECV_SIZE)
        except BlockingIOError:
            continue
        except OSError:
            data = b""
        if data:
            conn.feed(data, time.monotonic_ns(), n_ends, dialect)
            if conn.outbuf:  # the hello after WebSocket's 101, IRC's JOIN, a pong, a close
                flush(conn)
        if not data or conn.closing:
            sel.unregister(conn.sock)
            conn.sock.close()
            conn.phase = CLOSED
            closed += 1
    return closed


def flush(conn: Conn) -> None:
    """Send what ``conn.outbuf`` holds as far as the socket takes it now."""
    try:
        sent = conn.sock.send(conn.outbuf)
        conn.outbuf = conn.outbuf[sent:]
    except BlockingIOError:
        pass
    except OSError:
        conn.closing = True


def wait_all(
    sel: selectors.BaseSelector,
    conns: list[Conn],
    phase: int,
    deadline: float,
    dialect: Dialect,
    n_ends: int = 0,
) -> None:
    """Pump until every open connection reached ``phase`` or the deadline passed."""
    pending = [c for c in conns if c.phase < phase]
    while pending and time.monotonic() < deadline:
        pump(sel, 0.05, n_ends, dialect)
        pending = [c for c in pending if c.phase < phase]


def wait_command(
    ctrl: Connection,
    sel: selectors.BaseSelector | None,
    dialect: Dialect,
    deadline: float,
    n_ends: int = 0,
) -> Any:
    """Wait for the coordinator's next command, draining sockets meanwhile."""
    while time.monotonic() < deadline:
        if ctrl.poll(0 if sel is not None else 0.05):
            return ctrl.recv()
        if sel is not None:
            pump(sel, 0.02, n_ends, dialect)
    return ("stop",)


def close_all(conns: list[Conn]) -> None:
    for conn in conns:
        with contextlib.suppress(OSError):
            conn.sock.close()


# ----------------------------------------------------------------------------- workers


def receiver_worker(cfg: dict[str, Any], ctrl: Connection) -> None:
    """N receivers in #lobby: log in, report ready, count frames between SYNC and END.

    They log in in rounds, one chunk (``cfg["chunks"]``) at each ``("login", k)`` from
    the coordinator, answered by ``("logged", k)`` once the chunk's joins are confirmed:
    so the coordinator decides where each worker's connections fall in the room's join
    order (see ``scenarios.login_rounds``). A ``cfg["probe"]`` worker's connections all
    time the messages they receive.
    """
    raise_nofile()
    if cfg["nice"]:
        os.nice(cfg["nice"])
    dialect = DIALECTS[cfg["dialect"]]
    hard_deadline = time.monotonic() + cfg["max_seconds"]
    sel = selectors.DefaultSelector()
    conns: list[Conn] = []
    failures = 0
    first = 0
    for k, size in enumerate(cfg["chunks"]):
        command = wait_command(ctrl, sel, dialect, hard_deadline)
        if command != ("login", k):
            close_all(conns)
            return
        nicks = [f"r{cfg['worker']}x{i}" for i in range(first, first + size)]
        first += size
        chunk, failed = open_conns(cfg["host"], cfg["port"], nicks, dialect, sel, hard_deadline)
        for conn in chunk:
            conn.probe = cfg["probe"]
        wait_all(sel, chunk, PRESYNC, hard_deadline, dialect)
        conns += chunk
        failures += failed
        ctrl.send(("logged", k))
    n_ends = cfg["senders"]
    ctrl.send(("ready", sum(c.phase >= PRESYNC for c in conns), failures))
    wait_all(sel, conns, COUNTING, hard_deadline, dialect, n_ends)
    ctrl.send(("synced", sum(c.phase >= COUNTING and c.phase != CLOSED for c in conns)))
    cpu0 = cpu_seconds()
    # Count until every receiver saw all END markers, or the coordinator's deadline.
    command = ("run",)
    while time.monotonic() < hard_deadline:
        if all(c.phase in (DONE, CLOSED) for c in conns):
            break
        pump(sel, 0.05, n_ends, dialect)
        if ctrl.poll():
            command = ctrl.recv()
            if command[0] == "stop":
                break
    cpu = cpu_seconds() - cpu0
    # Stay connected (reading, no longer counting) until the coordinator says stop: a
    # receiver that left now would send leave notices into receivers still counting.
    result = {
        "deliveries": sum(c.lines - min(c.ends, n_ends) for c in conns),
        "per_receiver": sorted(c.lines - min(c.ends, n_ends) for c in conns),
        "complete_receivers": sum(c.phase == DONE for c in conns),
        "disconnected": sum(c.phase == CLOSED for c in conns),
        "receivers": len(conns),
        "login_failures": failures,
        "last_rx_ns": max((c.last_rx for c in conns), default=0),
        "latencies_ns": [x for c in conns if c.probe for x in c.latencies],
        "odd_lines": [line.decode(errors="replace") for c in conns for line in c.odd_lines],
        "ws_messages": sum(c.ws_messages for c in conns),
        "cpu_seconds": cpu,
    }
    ctrl.send(("done", result))
    if command[0] != "stop":
        wait_command(ctrl, sel, dialect, hard_deadline, n_ends)
    close_all(conns)


def sender_worker(cfg: dict[str, Any], ctrl: Connection) -> None:
    """S senders: full speed with a window of unacknowledged messages, or a fixed rate."""
    raise_nofile()
    dialect = DIALECTS[cfg["dialect"]]
    hard_deadline = time.monotonic() + cfg["max_seconds"]
    sel = selectors.DefaultSelector()
    n = cfg["senders"]
    conns, failures = open_conns(
        cfg["host"], cfg["port"], [f"s{i}" for i in range(n)], dialect, sel, hard_deadline
    )
    wait_all(sel, conns, PRESYNC, hard_deadline, dialect)
    ctrl.send(("ready", sum(c.phase >= PRESYNC for c in conns), failures))
    command = wait_command(ctrl, sel, dialect, hard_deadline)
    if any(c.phase == CLOSED for c in conns):
        close_all(conns)
        ctrl.send(("done", {"sent": 0, "error": "the server closed a sender before go"}))
        return
    if command[0] == "sync":
        conns[0].sock.setblocking(True)
        conns[0].sock.sendall(dialect.say(SYNC.decode()))
        conns[0].sock.setblocking(False)
        command = wait_command(ctrl, sel, dialect, hard_deadline)
    if command[0] != "go":
        close_all(conns)
        ctrl.send(("done", {"sent": 0, "error": f"no go: {command!r}"}))
        return
    params = command[1]
    for c in conns:
        sel.unregister(c.sock)
    result = _send_loop(conns, dialect, params, hard_deadline)
    ctrl.send(("done", result))
    # Keep the senders connected (and drained) until every receiver is done counting.
    for c in conns:
        c.tail = b""
        sel.register(c.sock, selectors.EVENT_READ, c)
    wait_command(ctrl, sel, dialect, hard_deadline)
    close_all(conns)


#: Rate mode: the last seconds before a scheduled send are slept, not waited in select.
PRECISE_WAIT = 0.002


def _send_loop(
    conns: list[Conn], dialect: Dialect, params: dict[str, Any], hard_deadline: float
) -> dict[str, Any]:
    sel = selectors.DefaultSelector()
    n = len(conns)
    mode = params["mode"]  # "window" (full speed) or "rate"
    size = params["size"]
    max_msgs = params["max_messages"]
    window = params["window"]
    interval = n / params["rate"] if mode == "rate" else 0.0
    start = time.monotonic()
    stop_at = start + params["duration"]
    state = []
    for i, c in enumerate(conns):
        c.tail = b""
        sel.register(c.sock, selectors.EVENT_READ, (i, c))
        state.append(
            {
                "sent": 0,
                "acked": 0,
                "token": dialect.ack_token(i),
                "finished": False,
                "next": start + i * interval / n,
                "closed": False,
                "late_ns": [],
            }
        )
    cpu0 = cpu_seconds()
    writing = [False] * n
    while time.monotonic() < hard_deadline:
        now = time.monotonic()
        for i, c in enumerate(conns):
            st = state[i]
            if st["closed"]:
                continue
            if not st["finished"]:
                if now >= stop_at or st["sent"] >= max_msgs:
                    c.outbuf += dialect.say(END.decode())
                    st["finished"] = True
                else:
                    c.outbuf += _produce(dialect, i, st, mode, window, interval, size, now)
            if c.outbuf:
                try:
                    sent = c.sock.send(c.outbuf)
                    c.outbuf = c.outbuf[sent:]
                except BlockingIOError:
                    pass
                except OSError:
                    st["closed"] = True
                    sel.unregister(c.sock)
                    continue
            if bool(c.outbuf) != writing[i]:
                writing[i] = bool(c.outbuf)
                events = selectors.EVENT_READ | (selectors.EVENT_WRITE if writing[i] else 0)
                sel.modify(c.sock, events, (i, c))
        if all(
            st["closed"] or (st["finished"] and not c.outbuf)
            for c, st in zip(conns, state, strict=True)
        ):
            break
        timeout = 0.05
        if mode == "rate":
            wait = min(st["next"] for st in state) - time.monotonic()
            if wait <= PRECISE_WAIT:
                # selectors round a timeout up to whole milliseconds, which made messages up
                # to 1 ms late, lateness then counted as latency: sleep the last part exactly.
                if wait > 0:
                    time.sleep(wait)
                timeout = 0.0
            else:
                timeout = min(wait - PRECISE_WAIT, 0.05)
        for key, mask in sel.select(timeout):
            i, c = key.data
            if not mask & selectors.EVENT_READ:
                continue
            try:
                data = c.sock.recv(RECV_SIZE)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if data:
                data = dialect.decode(c, data)  # WebSocket: unframed; pongs go to outbuf
            else:
                c.closing = True
            if c.closing:
                sel.unregister(c.sock)
                state[i]["closed"] = True
                continue
            buf = c.tail + data
            tok = state[i]["token"]
            state[i]["acked"] += buf.count(tok) * dialect.ack_every
            c.tail = buf[-(len(tok) - 1) :]
    return {
        "sent": sum(st["sent"] for st in state),
        "sender_disconnects": sum(st["closed"] for st in state),
        "seconds": time.monotonic() - start,
        "start_ns": int(start * 1e9),
        "late_ns": [x for st in state for x in st["late_ns"]],
        "cpu_seconds": cpu_seconds() - cpu0,
    }


def _produce(
    dialect: Dialect,
    i: int,
    st: dict[str, Any],
    mode: str,
    window: int,
    interval: float,
    size: int,
    now: float,
) -> bytes:
    out = []
    if mode == "window":
        room = window - (st["sent"] - st["acked"])
        for _ in range(max(0, room)):
            st["sent"] += 1
            out.append(dialect.say(message_text(i, st["sent"], time.monotonic_ns(), size)))
            out.append(dialect.ack_request(st["sent"]))
    else:
        # Open loop: sends keep to the schedule whatever the server does. The stamp is the
        # time the message is written (a message the socket does not take at once waits in
        # outbuf, and that wait counts as latency); how late the generator itself woke for
        # it is noted apart, as ``late_ns`` (see bench/README.md, "steady").
        while st["next"] <= now:
            st["sent"] += 1
            stamp = time.monotonic_ns()
            st["late_ns"].append(stamp - int(st["next"] * 1e9))
            out.append(dialect.say(message_text(i, st["sent"], stamp, size)))
            st["next"] += interval
    return b"".join(out)


def idle_worker(cfg: dict[str, Any], ctrl: Connection) -> None:
    """Many logged-in connections that only read; report when all saw the SYNC marker."""
    raise_nofile()
    dialect = DIALECTS[cfg["dialect"]]
    hard_deadline = time.monotonic() + cfg["max_seconds"]
    sel = selectors.DefaultSelector()
    t0 = time.monotonic()
    nicks = [f"i{cfg['worker']}x{i}" for i in range(cfg["count"])]
    conns, failures = open_conns(cfg["host"], cfg["port"], nicks, dialect, sel, hard_deadline)
    wait_all(sel, conns, PRESYNC, hard_deadline, dialect)
    ctrl.send(("ready", sum(c.phase >= PRESYNC for c in conns), failures, time.monotonic() - t0))
    wait_all(sel, conns, COUNTING, hard_deadline, dialect)
    ctrl.send(("synced", sum(c.phase in (COUNTING, DONE) for c in conns)))
    wait_command(ctrl, sel, dialect, hard_deadline)
    closed = sum(c.phase == CLOSED for c in conns)
    close_all(conns)
    ctrl.send(("done", {"disconnected": closed}))


def churn_worker(cfg: dict[str, Any], ctrl: Connection) -> None:
    """Connect, log in, say one line, quit, wait for the close; again until the deadline."""
    dialect = DIALECTS[cfg["dialect"]]
    hard_deadline = time.monotonic() + cfg["max_seconds"]
    ctrl.send(("ready", 1, 0))
    command = wait_command(ctrl, None, dialect, hard_deadline)
    if command[0] != "go":
        ctrl.send(("done", {"ok": 0, "failed": 0, "seconds": 0.0}))
        return
    duration, max_count = command[1]["duration"], command[1]["max_count"]
    start = time.monotonic()
    stop_at = min(start + duration, hard_deadline)
    ok = failed = 0
    errors: dict[str, int] = {}
    i = 0
    while time.monotonic() < stop_at and i < max_count:
        i += 1
        try:
            _one_churn(cfg["host"], cfg["port"], dialect, f"c{cfg['worker']}x{i}")
            ok += 1
        except (OSError, RuntimeError) as exc:
            failed += 1
            key = type(exc).__name__ + (
                f"({errno.errorcode.get(exc.errno, exc.errno)})"
                if isinstance(exc, OSError) and exc.errno
                else ""
            )
            errors[key] = errors.get(key, 0) + 1
    ctrl.send(
        (
            "done",
            {"ok": ok, "failed": failed, "seconds": time.monotonic() - start, "errors": errors},
        )
    )


def log_in(sock: socket.socket, dialect: Dialect, nick: str) -> None:
    """Log ``nick`` in on a blocking socket (bounded by its timeout) and wait until it is in
    #lobby; raises ``RuntimeError`` if the server closes first."""
    sock.sendall(dialect.login(nick))
    buf = b""
    if isinstance(dialect, WsDialect):  # the hello follows the upgrade's response
        while b"\r\n\r\n" not in buf:
            buf += _recv_or_fail(sock)
        sock.sendall(dialect.hello(nick))
    welcomed = not dialect.welcome
    while dialect.ready not in buf:
        buf = buf[-64:] + _recv_or_fail(sock)
        if not welcomed and dialect.welcome in buf:
            welcomed = True
            sock.sendall(dialect.after_welcome())


def _recv_or_fail(sock: socket.socket) -> bytes:
    data = sock.recv(65536)
    if not data:
        raise RuntimeError("closed before login completed")
    return data


def _one_churn(host: str, port: int, dialect: Dialect, nick: str) -> None:
    with socket.create_connection((host, port), timeout=5) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        log_in(sock, dialect, nick)
        sock.sendall(dialect.say("hello from " + nick) + dialect.quit())
        for _ in range(1000):  # read until the server closes (bounded)
            if not sock.recv(65536):
                return
        raise RuntimeError("server did not close after quit")
