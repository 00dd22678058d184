"""A logged-in connection's plain socket as a trio stream: its file descriptor, and nothing
else (:class:`FdStream`).

A socket accepted with trio is three objects: the standard library's socket, trio's socket
around it, and the ``SocketStream`` around that (with its conflict detector), about
0.38 KiB per connection for its whole life (bench/README.md, "Memory per connection").
After the log-in a plain TCP or WebSocket connection hardly uses them: its reader waits
for input in the parking lot and reads the descriptor itself, and the hub writes to the
descriptor directly. What is left (the writer task's ``send_all`` when a direct write did
not go out whole, the goodbye, the close) this does with the descriptor alone, as trio's
``SocketStream`` does it: a full checkpoint per call, waits in trio's I/O manager,
``BrokenResourceError`` for a broken connection, ``ClosedResourceError`` once closed,
``BusyResourceError`` for two senders at once. TLS connections keep trio's streams.
"""

from __future__ import annotations

import errno
import os
import socket

import trio

from .readiness import notify_closing

#: ``os`` errors that mean the descriptor is closed, as trio's socket stream has them.
_CLOSED_ERRNOS = frozenset({errno.EBADF, errno.ENOTSOCK})

#: Bytes asked of the socket per :meth:`FdStream.receive_some` without ``max_bytes``.
_RECEIVE_SIZE = 64 * 1024


class FdStream(trio.abc.HalfCloseableStream):
    """A connected, non-blocking stream socket by its file descriptor, which this owns and
    closes. Take one over from trio with :meth:`take_over`, or make one of a descriptor
    just accepted (:func:`~.streams.accept_plain_waiting`: the TCP chat port's
    connections are one of these from their accept on)."""

    __slots__ = ("_fd", "_sending")

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._sending = False

    @classmethod
    def take_over(cls, stream: trio.SocketStream) -> FdStream:
        """The descriptor of ``stream``'s socket, which ``stream`` no longer owns (it is
        left detached: using it raises, closing it does nothing)."""
        return cls(stream.socket.detach())

    def fileno(self) -> int:
        """The descriptor (``-1`` once closed)."""
        return self._fd

    @property
    def sending(self) -> bool:
        """Whether a :meth:`send_all` is under way (bytes must not be written around it)."""
        return self._sending

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self._sending:
            raise trio.BusyResourceError("another task is sending on this socket")
        self._sending = True
        try:
            await trio.lowlevel.checkpoint_if_cancelled()
            with memoryview(data) as view:
                fd = self._checked_fd()
                sent = 0
                while sent < len(view):
                    try:
                        sent += os.write(fd, view[sent:])
                    except BlockingIOError:
                        # (Closing the socket meanwhile raises ClosedResourceError here.)
                        await trio.lowlevel.wait_writable(fd)
                    except OSError as exc:
                        raise _stream_error(exc) from exc
            await trio.lowlevel.cancel_shielded_checkpoint()
        finally:
            self._sending = False

    async def send_eof(self) -> None:
        """Shut the sending side (the peer reads its end; reading goes on): what a refusal
        does before it drains the peer (:func:`~.streams.refuse`), so rarely that a
        socket object made for the call costs nothing worth sparing."""
        if self._sending:
            raise trio.BusyResourceError("another task is sending on this socket")
        await trio.lowlevel.checkpoint_if_cancelled()
        sock = socket.socket(fileno=self._checked_fd())
        try:
            sock.shutdown(socket.SHUT_WR)
        except OSError as exc:
            raise _stream_error(exc) from exc
        finally:
            sock.detach()
        await trio.lowlevel.cancel_shielded_checkpoint()

    async def wait_send_all_might_not_block(self) -> None:
        if self._sending:
            raise trio.BusyResourceError("another task is sending on this socket")
        await trio.lowlevel.wait_writable(self._checked_fd())

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        await trio.lowlevel.checkpoint_if_cancelled()
        while True:
            try:
                data = os.read(self._checked_fd(), max_bytes or _RECEIVE_SIZE)
            except BlockingIOError:
                await trio.lowlevel.wait_readable(self._fd)
                continue
            except OSError as exc:
                raise _stream_error(exc) from exc
            await trio.lowlevel.cancel_shielded_checkpoint()
            return data

    def close(self) -> None:
        """Close the descriptor now (idempotent); a task waiting on it gets
        ``ClosedResourceError``."""
        fd, self._fd = self._fd, -1
        if fd >= 0:
            notify_closing(fd)  # (a task waiting on it gets ClosedResourceError)
            os.close(fd)

    async def aclose(self) -> None:
        self.close()
        await trio.lowlevel.checkpoint()

    def _checked_fd(self) -> int:
        if self._fd < 0:
            raise trio.ClosedResourceError("this socket was closed")
        return self._fd


def _stream_error(exc: OSError) -> trio.ClosedResourceError | trio.BrokenResourceError:
    if exc.errno in _CLOSED_ERRNOS:
        return trio.ClosedResourceError("this socket was already closed")
    return trio.BrokenResourceError(f"socket connection broken: {exc}")
