"""A naive thread-per-client broadcast chat server: the baseline trio-chat is measured against.

This is the classic tutorial design on purpose: one thread per client, one global lock, and
``sock.sendall`` to every client, one after the other, for every message. It speaks the
subset of trio-chat's JSON-lines protocol the benchmark uses:

* ``{"type":"hello","nick":...}``  -> ``welcome`` to that client (no join announcements);
* ``{"type":"say","text":...}``    -> one ``message`` event to every client, sender included;
* ``{"type":"quit"}``              -> ``bye`` to that client, then the connection is closed.

It has no slow-consumer policy: a client that stops reading blocks ``sendall`` and so every
other client (the lock is held during the broadcast). Run it as
``python bench/baseline_threaded.py --port 0``; it prints ``baseline serving on tcp://...``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import socket
import sys
import threading
import time


class BroadcastServer:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.clients: dict[int, socket.socket] = {}
        self.ids = itertools.count(1)

    def broadcast(self, data: bytes) -> None:
        with self.lock:
            dead = []
            for key, sock in self.clients.items():
                try:
                    sock.sendall(data)
                except OSError:
                    dead.append(key)
            for key in dead:
                self.clients.pop(key, None)

    def handle(self, sock: socket.socket) -> None:
        key = sock.fileno()
        nick = None
        buf = b""
        try:
            while True:
                data = sock.recv(65536)
                if not data:
                    return
                buf += data
                *lines, buf = buf.split(b"\n")
                for line in lines:
                    if not line.strip():
                        continue
                    try:
                        frame = json.loads(line)
                    except ValueError:
                        continue
                    kind = frame.get("type")
                    if kind == "hello" and nick is None:
                        nick = str(frame.get("nick"))
                        welcome = {
                            "type": "welcome",
                            "nick": nick,
                            "room": "#lobby",
                            "server": "baseline",
                            "version": "0",
                            "protocol": 1,
                        }
                        line = json.dumps(welcome, separators=(",", ":")).encode() + b"\n"
                        with self.lock:
                            sock.sendall(line)
                            self.clients[key] = sock
                    elif kind == "say" and nick is not None:
                        event = {
                            "type": "message",
                            "id": next(self.ids),
                            "ts": time.time(),
                            "room": "#lobby",
                            "nick": nick,
                            "text": frame.get("text"),
                            "kind": "say",
                        }
                        self.broadcast(json.dumps(event, separators=(",", ":")).encode() + b"\n")
                    elif kind == "quit":
                        with self.lock:
                            self.clients.pop(key, None)
                            sock.sendall(b'{"type":"bye","code":"quit","text":"quit"}\n')
                        return
        except OSError:
            return
        finally:
            with self.lock:
                self.clients.pop(key, None)
            sock.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    server = BroadcastServer()
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((args.host, args.port))
    listener.listen(4096)
    host, port = listener.getsockname()
    print(f"baseline serving on tcp://{host}:{port}", flush=True)
    try:
        while True:
            sock, _ = listener.accept()
            threading.Thread(target=server.handle, args=(sock,), daemon=True).start()
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
