"""Accepting: a crowd waiting in the listener's backlog is taken in bursts, each served."""

from __future__ import annotations

import errno
import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import trio

from trio_chat.testing import local_config, open_test_server
from trio_chat.transports import tcp
from trio_chat.transports.fdstream import FdStream
from trio_chat.transports.streams import (
    ACCEPT_BURST,
    NOTSENT_LOWAT,
    accept_plain_waiting,
    accept_waiting,
    set_connection_defaults,
)


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


async def test_a_plain_accept_gives_descriptors_with_the_listeners_options_and_peers() -> None:
    """The TCP chat port's accept: each connection as a non-blocking :class:`FdStream`
    and its peer's address as the client sees its own, with the options trio would set
    on each (inherited from the listener, which has them once)."""
    with listening_socket() as listening:
        assert set_connection_defaults(listening)
        address = listening.getsockname()
        clients = [socket.create_connection(address) for _ in range(5)]
        try:
            first, failed = accept_plain_waiting(listening, 3)
            assert (len(first), failed) == (3, None)
            rest, failed = accept_plain_waiting(listening, 3)
            assert (len(rest), failed) == (2, None)
            assert accept_plain_waiting(listening, 3) == ([], None)
            own = ["{}:{}".format(*client.getsockname()[:2]) for client in clients]
            assert [peer for _, peer in first + rest] == own
            for stream, _ in first + rest:
                assert isinstance(stream, FdStream)
                served = socket.socket(fileno=stream.fileno())
                try:
                    assert not os.get_blocking(stream.fileno())
                    assert served.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
                    lowat = served.getsockopt(socket.IPPROTO_TCP, socket.TCP_NOTSENT_LOWAT)
                    assert lowat == NOTSENT_LOWAT
                finally:
                    served.detach()
                stream.close()
        finally:
            for client in clients:
                client.close()


async def test_a_refusal_on_a_plain_accepted_connection_is_read_to_its_end(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Refused (too many connections from one host), a client accepted as a descriptor
    reads the reason and then the end (the refusal shuts the sending side first: FdStream's
    ``send_eof``), whether or not it sent anything; the same through trio's accept."""
    texts, took = [], []
    for plain in (True, False):
        monkeypatch.setattr(tcp, "PLAIN_ACCEPT", plain)
        config = local_config(max_connections_per_host=1, limit_loopback=True)
        async with open_test_server(config=config) as chat:
            host, port = chat.address("tcp")
            async with await trio.open_tcp_stream(host, port) as first:
                await first.send_all(b'{"type":"hello","nick":"first"}\n')
                seen = b""
                with trio.fail_after(5):
                    while b'"type":"join"' not in seen:
                        seen += await first.receive_some(65536)
                    async with await trio.open_tcp_stream(host, port) as second:
                        started = trio.current_time()
                        await second.send_all(b'{"type":"hello","nick":"second"}\n')
                        data = b""
                        while chunk := await second.receive_some(65536):
                            data += chunk
                        # The end came with the reason, not at the refusal's bound (1 s).
                        took.append(trio.current_time() - started)
        texts.append(data)
    assert texts[0] == texts[1]
    assert texts[0].startswith(b"!! connection refused")
    assert max(took) < 0.8


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
