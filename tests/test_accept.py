"""Accepting: a crowd waiting in the listener's backlog is taken in bursts, each served."""

from __future__ import annotations

import errno
import json
import socket
from collections.abc import Iterator
from contextlib import contextmanager

import trio

from trio_chat.testing import open_test_server
from trio_chat.transports.streams import ACCEPT_BURST, accept_waiting


@contextmanager
def listening_socket() -> Iterator[socket.socket]:
    sock = socket.socket()
    try:
        sock.bind(("127.0.0.1", 0))
        sock.listen(512)
        sock.setblocking(False)
        yield sock
    finally:
        sock.close()


async def test_accept_waiting_takes_what_waits_up_to_the_limit_and_never_blocks() -> None:
    with listening_socket() as listening:
        address = listening.getsockname()
        clients = [socket.create_connection(address) for _ in range(5)]
        try:
            first, failed = accept_waiting(listening, 3)
            assert (len(first), failed) == (3, None)
            rest, failed = accept_waiting(listening, 3)
            assert (len(rest), failed) == (2, None)
            assert accept_waiting(listening, 3) == ([], None)  # nothing waits: no wait
            for stream in first + rest:
                assert isinstance(stream, trio.SocketStream)
                stream.socket.close()
        finally:
            for client in clients:
                client.close()


class FailingListener:
    """A listening socket whose ``accept`` raises the given errors, then has nothing."""

    def __init__(self, *codes: int) -> None:
        self.codes = list(codes)

    def accept(self) -> tuple[socket.socket, object]:
        if self.codes:
            code = self.codes.pop(0)
            raise OSError(code, "simulated")
        raise BlockingIOError


def test_a_connection_gone_before_its_accept_is_skipped() -> None:
    listener = FailingListener(errno.ECONNABORTED, errno.ECONNRESET)
    assert accept_waiting(listener, 10) == ([], None)  # type: ignore[arg-type]
    assert listener.codes == []


def test_an_error_of_the_machine_stops_the_burst_and_is_returned() -> None:
    listener = FailingListener(errno.EMFILE)
    streams, failed = accept_waiting(listener, 10)  # type: ignore[arg-type]
    assert streams == []
    assert failed is not None and failed.errno == errno.EMFILE


async def test_a_crowd_waiting_in_the_backlog_is_accepted_and_welcomed() -> None:
    """More clients than one burst connect and say hello while the server cannot run
    (this task holds the loop): all of them wait in the backlog, and each is served."""
    crowd = 3 * ACCEPT_BURST + 5
    async with open_test_server() as chat:
        address = chat.address("tcp")
        plain = []
        try:
            for n in range(crowd):
                client = socket.create_connection(address)
                client.sendall(json.dumps({"type": "hello", "nick": f"c{n}"}).encode() + b"\n")
                plain.append(client)
            streams = [trio.SocketStream(trio.socket.from_stdlib_socket(c)) for c in plain]
            welcomed: set[str] = set()

            async def welcome_of(stream: trio.SocketStream) -> None:
                buffer = b""
                while b'"type":"welcome"' not in buffer:
                    data = await stream.receive_some(65536)
                    assert data, "closed before the welcome"
                    buffer += data
                line = next(x for x in buffer.split(b"\n") if b'"type":"welcome"' in x)
                welcomed.add(json.loads(line)["nick"])

            with trio.fail_after(30):
                async with trio.open_nursery() as nursery:
                    for stream in streams:
                        nursery.start_soon(welcome_of, stream)
            assert welcomed == {f"c{n}" for n in range(crowd)}
        finally:
            for client in plain:
                client.close()
