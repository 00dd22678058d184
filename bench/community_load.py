"""The community load's worker process: its share of the users, each sending and receiving.

One process holds every ``W``-th user of the plan (``bench/community.py``), each on its own
socket in its own wire dialect (JSON lines, WebSocket or IRC), and runs one ``selectors``
loop that both sends the users' scheduled messages (open loop: at their times, whatever the
server does) and reads what they receive. Like ``loadgen.py`` it does not import trio-chat.

Phases, each begun by the coordinator over the pipe and bounded by the worker's deadline:

1. log in and join: each user logs in and joins its rooms (trio-chat: a ``/join`` command
   per room with ``ref`` ``J``, counted by the replies that carry it; IRC: one ``JOIN`` of
   all its channels after ``001``, counted by the ``366`` end-of-names replies); ``ready``;
2. ``go`` with a start time on the shared monotonic clock: the schedule runs; every
   received message text is ``@@<room>:<seq>:<scheduled ns>:xxx``, so each delivery is
   counted for its receiver and timed from its *scheduled* send time; ``sent`` reports
   what was sent per (user, room);
3. ``expect`` with each user's expected count (the coordinator works it out from what all
   workers sent): reading goes on until every user has them all or ``drain`` seconds pass,
   then ``done`` with the counts and latencies; the users stay connected until ``stop``.
"""

from __future__ import annotations

import re
import selectors
import socket
import time
from array import array
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import loadgen
from loadgen import Conn, raise_nofile, ws_frame

_STAMP = re.compile(rb"@@(\d+):(\d+):(\d+):")
JOIN_REF = b'"ref":"J"'
IRC_END_OF_NAMES = b" 366 "


@dataclass(eq=False)
class User(Conn):
    """One user's connection: ``loadgen.Conn`` (its WebSocket unframing state) plus what
    the community load counts for it."""

    user: int = 0
    transport: str = "json"  # json, ws or irc
    rooms: list[str] = field(default_factory=list)
    joined: int = 0
    received: int = 0
    line_tail: bytes = b""
    ready: bool = False


def say_frame(transport: str, room: str, text: str) -> bytes:
    """A chat line to ``room`` in the user's dialect."""
    if transport == "irc":
        return f"PRIVMSG {room} :{text}\r\n".encode()
    body = b'{"type":"say","room":"' + room.encode() + b'","text":"' + text.encode() + b'"}'
    return ws_frame(body) if transport == "ws" else body + b"\n"


def join_frames(transport: str, rooms: list[str]) -> bytes:
    """Joining ``rooms``: one IRC ``JOIN`` of all, or one ``/join`` command per room."""
    if not rooms:
        return b""
    if transport == "irc":
        return f"JOIN {','.join(rooms)}\r\n".encode()
    out = []
    for room in rooms:
        body = b'{"type":"command","name":"join","args":"' + room.encode() + b'","ref":"J"}'
        out.append(ws_frame(body) if transport == "ws" else body + b"\n")
    return b"".join(out)


def stamp_text(room: int, seq: int, scheduled_ns: int, size: int) -> str:
    head = f"@@{room}:{seq}:{scheduled_ns}:"
    return head + "x" * max(0, size - len(head))


class Loop:
    """The worker's sockets and what it counts."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        self.cfg = cfg
        self.sel = selectors.DefaultSelector()
        self.users: list[User] = []
        self.failures = 0
        self.big = cfg.get("big_room")
        #: Latencies (ns from the scheduled send) of deliveries, small rooms and the big one.
        self.small_ns = array("q")
        self.big_ns = array("q")
        self.writing: set[User] = set()

    # ---------------------------------------------------------------------- connecting

    def connect_all(self, deadline: float) -> None:
        """Connect and log in every user of this worker, draining between connects."""
        cfg = self.cfg
        for spec in cfg["users"]:
            if time.monotonic() > deadline:
                self.failures += 1
                continue
            transport = spec["transport"]
            dialect = loadgen.DIALECTS[transport]
            if dialect.connect_gap:  # ngIRCd's short accept queue (see loadgen)
                until = time.monotonic() + dialect.connect_gap
                while (left := until - time.monotonic()) > 0:
                    self.pump(left)
            port = cfg["ws_port"] if transport == "ws" else cfg["port"]
            nick = f"u{spec['user']}"
            try:
                sock = socket.create_connection((cfg["host"], port), timeout=10)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.sendall(dialect.login(nick))
            except OSError:
                self.failures += 1
                continue
            sock.setblocking(False)
            user = User(sock, nick=nick, user=spec["user"], transport=transport)
            user.rooms = spec["rooms"]
            self.sel.register(sock, selectors.EVENT_READ, user)
            self.users.append(user)
            if len(self.users) % loadgen.CONNECT_BATCH == 0:
                for _ in range(100):
                    if not self.pump(0.0):
                        break

    def all_ready(self) -> bool:
        return all(u.ready or u.phase == loadgen.CLOSED for u in self.users)

    # ------------------------------------------------------------------------- reading

    def pump(self, timeout: float) -> int:
        """Read whatever is ready once; return how many sockets had something."""
        events = self.sel.select(timeout)
        for key, mask in events:
            user: User = key.data
            if mask & selectors.EVENT_WRITE:
                self.flush(user)
            if not mask & selectors.EVENT_READ:
                continue
            try:
                data = user.sock.recv(loadgen.RECV_SIZE)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if data:
                self.feed(user, data, time.monotonic_ns())
                if user.outbuf:
                    self.flush(user)
            if not data or user.closing:
                self.sel.unregister(user.sock)
                self.writing.discard(user)
                user.sock.close()
                user.phase = loadgen.CLOSED
        return len(events)

    def feed(self, user: User, data: bytes, now: int) -> None:
        data = loadgen.DIALECTS[user.transport].decode(user, data)
        if not data:
            return
        buf = user.line_tail + data
        cut = buf.rfind(b"\n") + 1
        user.line_tail = buf[cut:]
        if not cut:
            return
        if not user.ready:
            self._logging_in(user, buf[:cut])
        count = 0
        for match in _STAMP.finditer(buf, 0, cut):
            count += 1
            latency = now - int(match.group(3))
            (self.big_ns if int(match.group(1)) == self.big else self.small_ns).append(latency)
        user.received += count

    def _logging_in(self, user: User, lines: bytes) -> None:
        """Log-in replies: the welcome (then the joins are sent), then one reply per join."""
        if not user.welcomed:
            irc = user.transport == "irc"
            if (b" 001 " if irc else b'"type":"welcome"') not in lines:
                return
            user.welcomed = True
            user.outbuf += join_frames(user.transport, user.rooms)
            lines = lines[lines.find(b" 001 " if irc else b'"type":"welcome"') :]
        token = IRC_END_OF_NAMES if user.transport == "irc" else JOIN_REF
        user.joined += lines.count(token)
        if user.joined >= len(user.rooms):
            user.ready = True

    # ------------------------------------------------------------------------- writing

    def flush(self, user: User) -> None:
        if user.phase == loadgen.CLOSED:
            return
        if user.outbuf:
            try:
                sent = user.sock.send(user.outbuf)
                user.outbuf = user.outbuf[sent:]
            except BlockingIOError:
                pass
            except OSError:
                user.closing = True
                return
        wants = bool(user.outbuf)
        if wants != (user in self.writing):
            (self.writing.add if wants else self.writing.discard)(user)
            events = selectors.EVENT_READ | (selectors.EVENT_WRITE if wants else 0)
            self.sel.modify(user.sock, events, user)

    def run_schedule(self, start: float, deadline: float) -> dict[str, Any]:
        """Send every scheduled message at its time (``start`` + offset), reading meanwhile."""
        by_user = {u.user: u for u in self.users}
        schedule = self.cfg["schedule"]
        names = self.cfg["room_names"]
        size = self.cfg["size"]
        sent: dict[tuple[int, int], int] = {}
        late = array("q")
        lost = 0
        i = 0
        while i < len(schedule) and time.monotonic() < deadline:
            at = start + schedule[i][0]
            wait = at - time.monotonic()
            if wait > loadgen.PRECISE_WAIT:
                self.pump(min(wait - loadgen.PRECISE_WAIT, 0.05))
                continue
            if wait > 0:
                time.sleep(wait)  # selectors round timeouts up to whole milliseconds
            now_ns = time.monotonic_ns()
            while i < len(schedule) and start + schedule[i][0] <= now_ns / 1e9:
                offset, who, room = schedule[i]
                i += 1
                user = by_user.get(who)
                if user is None or user.phase == loadgen.CLOSED:
                    lost += 1
                    continue
                scheduled_ns = int((start + offset) * 1e9)
                late.append(now_ns - scheduled_ns)
                seq = sent.get((who, room), 0) + 1
                sent[(who, room)] = seq
                text = stamp_text(room, seq, scheduled_ns, size)
                user.outbuf += say_frame(user.transport, names[room], text)
                self.flush(user)
            self.pump(0.0)
        late_sorted = sorted(late)
        return {
            "sent": [(u, r, n) for (u, r), n in sent.items()],
            "not_sent": lost + len(schedule) - i,
            "late_p50_ns": late_sorted[len(late) // 2] if late else None,
            "late_p99_ns": late_sorted[min(len(late) - 1, int(0.99 * len(late)))] if late else None,
        }

    def drain(self, expected: dict[int, int], until: float) -> None:
        """Read until every user received what it should, or ``until``."""
        while time.monotonic() < until:
            if all(
                u.received >= expected.get(u.user, 0) or u.phase == loadgen.CLOSED
                for u in self.users
            ):
                return
            self.pump(0.02)


def _command(ctrl: Connection, loop: Loop, deadline: float) -> Any:
    """The coordinator's next command, reading the sockets meanwhile."""
    while time.monotonic() < deadline:
        if ctrl.poll(0):
            return ctrl.recv()
        loop.pump(0.02)
    return ("stop",)


def community_worker(cfg: dict[str, Any], ctrl: Connection) -> None:
    """One generator process of the community load (phases in the module docstring)."""
    raise_nofile()
    hard_deadline = time.monotonic() + cfg["max_seconds"]
    loop = Loop(cfg)
    command = _command(ctrl, loop, hard_deadline)
    if command[0] != "login":
        return
    loop.connect_all(hard_deadline)
    login_deadline = time.monotonic() + cfg["login_timeout"]
    while not loop.all_ready() and time.monotonic() < login_deadline:
        loop.pump(0.05)
    closed = sum(u.phase == loadgen.CLOSED for u in loop.users)
    ready = sum(u.ready for u in loop.users)
    ctrl.send(("ready", {"ready": ready, "closed": closed, "failures": loop.failures}))
    command = _command(ctrl, loop, hard_deadline)
    if command[0] != "go":
        _close(loop)
        return
    start = command[1]["start"]
    cpu0 = loadgen.cpu_seconds()
    report = loop.run_schedule(start, hard_deadline)
    ctrl.send(("sent", report))
    command = _command(ctrl, loop, hard_deadline)
    if command[0] == "expect":
        expected: dict[int, int] = command[1]["expected"]
        loop.drain(expected, min(hard_deadline, time.monotonic() + command[1]["drain"]))
        short = {
            u.user: expected.get(u.user, 0) - u.received
            for u in loop.users
            if u.received != expected.get(u.user, 0)
        }
        result = {
            "received": sum(u.received for u in loop.users),
            "expected": sum(expected.get(u.user, 0) for u in loop.users),
            "short": short,
            "disconnected": sum(u.phase == loadgen.CLOSED for u in loop.users),
            "small_ns": loop.small_ns,
            "big_ns": loop.big_ns,
            "ws_messages": sum(u.ws_messages for u in loop.users),
            "cpu_seconds": loadgen.cpu_seconds() - cpu0,
        }
        ctrl.send(("done", result))
        _command(ctrl, loop, hard_deadline)  # stay connected until "stop"
    _close(loop)


def _close(loop: Loop) -> None:
    loadgen.close_all(loop.users)
