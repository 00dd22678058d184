"""The reconnect storm's worker process: its share of the users logging back in at once.

After a restart every user comes back as trio-chat's terminal client does after a lost
connection (``trio_chat/client/resume.py``; docs/protocol.md section 9, "Filling a gap
after a reconnect"), over TCP JSON lines:

1. ``hello`` (a guest nick), then the ``welcome``, its ``join`` of ``#lobby`` and
   ``#lobby``'s join-time ``history`` frame;
2. ``{"type":"history","room":"#lobby","after":LAST,"ref":"L"}`` with the last id it saw
   there, paged on while ``more`` is true; and at once
3. ``{"type":"command","name":"join","args":"#sK","ref":"J"}`` for its other room, and once
   its own ``join`` of ``#sK`` came, ``{"type":"history","room":"#sK","after":LAST,
   "ref":"R"}``, paged likewise.

A user is *back* once both gaps are filled; the worker reports each user's time from its
connect to then, and how many messages each gap held (the coordinator knows how many it
should). Connects are non-blocking, at most ``IN_FLIGHT`` under way per worker, so the
storm is as fast as the server accepts. Like ``loadgen.py`` it does not import trio-chat.
"""

from __future__ import annotations

import errno
import json
import selectors
import socket
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from loadgen import RECV_SIZE, cpu_seconds, raise_nofile

#: Connects under way at once per worker (a bound, so the storm does not overflow the
#: server's accept queue into the kernel's one-second SYN retries).
IN_FLIGHT = 256


@dataclass(eq=False)
class Returning:
    """One user coming back: its socket, its gaps and how far it is."""

    user: int
    nick: str
    room: str
    lobby_after: int
    room_after: int
    sock: socket.socket | None = None
    started: float = 0.0
    back_at: float = 0.0
    connected: bool = False
    welcomed: bool = False
    outbuf: bytes = b""
    partial: bytes = b""
    #: Messages received in each gap's pages; gaps still open.
    got: dict[str, int] = field(default_factory=lambda: {"L": 0, "R": 0})
    open_gaps: set[str] = field(default_factory=lambda: {"L", "R"})
    error: str = ""
    #: Counted among the users back (once).
    counted: bool = False

    def send(self, frame: dict[str, Any]) -> None:
        self.outbuf += json.dumps(frame, separators=(",", ":")).encode() + b"\n"

    def on_line(self, line: bytes, now: float) -> None:
        """One JSON line from the server; what the client does with it."""
        try:
            event = json.loads(line)
        except ValueError:
            if not self.welcomed:
                return  # the text prompt, sent before a late hello (docs/protocol.md, 1)
            self.error = "bad json"
            return
        kind = event.get("type")
        if kind == "welcome" and not self.welcomed:
            self.welcomed = True
            self.send({"type": "history", "room": "#lobby", "after": self.lobby_after, "ref": "L"})
            self.send({"type": "command", "name": "join", "args": self.room, "ref": "J"})
        elif kind == "join" and event.get("nick") == self.nick and event.get("room") == self.room:
            self.send({"type": "history", "room": self.room, "after": self.room_after, "ref": "R"})
        elif kind == "history" and event.get("ref") in self.open_gaps:
            ref = event["ref"]
            messages = event.get("messages") or []
            self.got[ref] += len(messages)
            if event.get("more") and messages:
                room = "#lobby" if ref == "L" else self.room
                self.send(
                    {"type": "history", "room": room, "after": messages[-1]["id"], "ref": ref}
                )
            else:
                self.open_gaps.discard(ref)
                if not self.open_gaps:
                    self.back_at = now
        elif kind == "error" or kind == "bye":
            self.error = f"{kind}: {event.get('code')}"


def storm_worker(cfg: dict[str, Any], ctrl: Connection) -> None:
    """Bring this worker's users back at ``("go",)``; report ``("done", result)``."""
    raise_nofile()
    deadline = time.monotonic() + cfg["max_seconds"]
    users = [Returning(**spec) for spec in cfg["users"]]
    ctrl.send(("ready",))
    while not ctrl.poll(0.1):
        if time.monotonic() > deadline:
            return
    if ctrl.recv()[0] != "go":
        return
    cpu0 = cpu_seconds()
    t0 = time.monotonic()
    until = t0 + cfg["timeout"]
    sel = selectors.DefaultSelector()
    waiting = list(reversed(users))
    connecting = 0
    pending = len(users)
    failures: dict[str, int] = {}

    def fail(user: Returning, why: str) -> None:
        nonlocal pending
        failures[why] = failures.get(why, 0) + 1
        user.error = user.error or why
        if user.sock is not None:
            sel.unregister(user.sock)
            user.sock.close()
            user.sock = None
        pending -= 1

    while pending and time.monotonic() < until:
        while waiting and connecting < IN_FLIGHT:
            user = waiting.pop()
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            user.started = time.monotonic()
            code = sock.connect_ex((cfg["host"], cfg["port"]))
            if code not in (0, errno.EINPROGRESS):
                sock.close()
                fail(user, errno.errorcode.get(code, str(code)))
                continue
            user.sock = sock
            sel.register(sock, selectors.EVENT_WRITE, user)
            connecting += 1
        for key, mask in sel.select(0.05):
            user = key.data
            sock = user.sock
            assert sock is not None
            if not user.connected:
                connecting -= 1
                code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if code:
                    fail(user, errno.errorcode.get(code, str(code)))
                    continue
                user.connected = True
                user.send({"type": "hello", "nick": user.nick})
                sel.modify(sock, selectors.EVENT_READ | selectors.EVENT_WRITE, user)
            if mask & selectors.EVENT_READ:
                try:
                    data = sock.recv(RECV_SIZE)
                except BlockingIOError:
                    data = None
                except OSError:
                    data = b""
                if data == b"":
                    fail(user, "closed")
                    continue
                if data:
                    now = time.monotonic()
                    buf = user.partial + data
                    *lines, user.partial = buf.split(b"\n")
                    for line in lines:
                        if line:
                            user.on_line(line, now)
                    if user.error:
                        fail(user, user.error)
                        continue
                    if user.back_at and not user.counted:
                        user.counted = True
                        pending -= 1
            if user.outbuf:
                try:
                    sent = sock.send(user.outbuf)
                    user.outbuf = user.outbuf[sent:]
                except BlockingIOError:
                    pass
                except OSError:
                    fail(user, "send failed")
                    continue
            sel.modify(
                sock, selectors.EVENT_READ | (selectors.EVENT_WRITE if user.outbuf else 0), user
            )
    back = [u for u in users if u.back_at]
    result = {
        "back": len(back),
        "users": len(users),
        "failures": failures,
        "not_back": len(users) - len(back) - sum(failures.values()),
        "back_seconds": [u.back_at - u.started for u in back],
        "last_back": max((u.back_at for u in back), default=t0) - t0,
        "gap_messages": [(u.got["L"], u.got["R"]) for u in back],
        "cpu_seconds": cpu_seconds() - cpu0,
    }
    ctrl.send(("done", result))
    while not ctrl.poll(0.1) and time.monotonic() < deadline:
        pass  # stay connected until the coordinator has read the server's figures
    for u in users:
        if u.sock is not None:
            u.sock.close()
