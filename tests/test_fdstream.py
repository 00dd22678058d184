"""A logged-in plain connection's socket by its descriptor alone
(:mod:`trio_chat.transports.fdstream`): it writes, waits and fails as trio's socket
stream does."""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import trio
import trio.testing

from trio_chat.testing import DEFAULT_TIMEOUT
from trio_chat.transports.fdstream import FdStream
from trio_chat.transports.streams import kept_stream, socket_fd


@contextmanager
def connected() -> Iterator[tuple[FdStream, trio.SocketStream]]:
    """An FdStream taken over from a trio socket stream, and the peer's trio stream."""
    ours, theirs = socket.socketpair()
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    theirs.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    trio_ours = trio.SocketStream(trio.socket.from_stdlib_socket(ours))
    stream = kept_stream(trio_ours)
    assert isinstance(stream, FdStream)
    assert trio_ours.socket.fileno() == -1  # detached: the FdStream owns the descriptor
    peer = trio.SocketStream(trio.socket.from_stdlib_socket(theirs))
    try:
        yield stream, peer
    finally:
        stream.close()
        peer.socket.close()


async def read_exactly(peer: trio.SocketStream, size: int) -> bytes:
    got = bytearray()
    while len(got) < size:
        data = await peer.receive_some(65536)
        assert data, "the peer saw the end early"
        got += data
    return bytes(got)


async def test_a_send_larger_than_the_socket_takes_waits_and_arrives_whole() -> None:
    data = bytes(range(256)) * 4096  # 1 MiB: many times what the buffers hold
    with connected() as (stream, peer), trio.fail_after(DEFAULT_TIMEOUT):
        assert socket_fd(stream) == stream.fileno() >= 0
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stream.send_all, data)
            assert await read_exactly(peer, len(data)) == data


async def test_it_receives_what_the_peer_sends_and_the_end() -> None:
    with connected() as (stream, peer), trio.fail_after(DEFAULT_TIMEOUT):
        await peer.send_all(b"hello")
        assert await stream.receive_some() == b"hello"
        await peer.send_eof()
        assert await stream.receive_some() == b""


async def test_closing_wakes_a_sender_that_waits_with_closed_resource_error() -> None:
    with connected() as (stream, _peer), trio.fail_after(DEFAULT_TIMEOUT):
        failed: list[BaseException] = []

        async def send_forever() -> None:
            try:
                await stream.send_all(b"x" * (1 << 22))  # the peer never reads
            except trio.ClosedResourceError as exc:
                failed.append(exc)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(send_forever)
            await trio.testing.wait_all_tasks_blocked()
            await stream.aclose()
        assert len(failed) == 1
        with pytest.raises(trio.ClosedResourceError):
            await stream.send_all(b"more")
        with pytest.raises(trio.ClosedResourceError):
            await stream.receive_some()
        await stream.aclose()  # again: nothing happens


async def test_closing_asks_trio_to_wake_only_a_task_that_waits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """trio's ``notify_closing`` (an error object and a failing ``epoll_ctl`` for a
    descriptor it never watched) is called only while a task waits on the descriptor in
    trio's epoll; a reader woken by it gets ``ClosedResourceError``. A descriptor whose
    number a closed one had is watched afresh as usual."""
    notified: list[int] = []
    notify = trio.lowlevel.notify_closing

    def counted(fd: Any) -> None:
        if isinstance(fd, int):  # (an FdStream's; trio's own sockets pass themselves)
            notified.append(fd)
        notify(fd)

    monkeypatch.setattr(trio.lowlevel, "notify_closing", counted)
    with trio.fail_after(DEFAULT_TIMEOUT):
        with connected() as (stream, peer):
            await peer.send_all(b"once")
            assert await stream.receive_some() == b"once"  # (it read without waiting)
            stream.close()
        assert notified == []
        with connected() as (stream, peer):
            fd = stream.fileno()
            failed: list[BaseException] = []

            async def receive() -> None:
                try:
                    await stream.receive_some()
                except trio.ClosedResourceError as exc:
                    failed.append(exc)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(receive)
                await trio.testing.wait_all_tasks_blocked()
                stream.close()
            assert notified == [fd] and len(failed) == 1
        with connected() as (stream, peer):  # (likely the same number again)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(stream.receive_some)
                await trio.testing.wait_all_tasks_blocked()
                await peer.send_all(b"again")
            await peer.send_eof()
            assert await stream.receive_some() == b""


async def test_two_senders_at_once_is_busy_and_a_cancelled_send_ends_cleanly() -> None:
    with connected() as (stream, _peer), trio.fail_after(DEFAULT_TIMEOUT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stream.send_all, b"x" * (1 << 22))
            await trio.testing.wait_all_tasks_blocked()
            with pytest.raises(trio.BusyResourceError):
                await stream.send_all(b"y")
            nursery.cancel_scope.cancel()
        with trio.move_on_after(0.01) as waited:
            await stream.send_all(b"z" * (1 << 22))  # the buffers are still full
        assert waited.cancelled_caught


async def test_a_reset_connection_is_broken() -> None:
    with connected() as (stream, peer), trio.fail_after(DEFAULT_TIMEOUT):
        # Close the peer with unread data waiting: the kernel resets the connection.
        peer.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        await stream.send_all(b"unread")
        peer.socket.close()
        with pytest.raises(trio.BrokenResourceError):
            for _ in range(100):  # the first writes may still be taken
                await stream.send_all(b"x" * 65536)
