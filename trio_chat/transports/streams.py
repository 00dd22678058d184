"""Stream helpers shared by the transports: replaying sniffed bytes, TLS, peer addresses."""

from __future__ import annotations

import contextvars
import errno
import logging
import os
import socket
import ssl
from collections.abc import Awaitable, Callable

import trio

from ..framing import EOF, NEED_DATA, LineBuffer, LineTooLong
from ..proxyproto import ProxyHeader, format_address, parse_proxy_header
from .fdstream import FdStream

log = logging.getLogger("trio_chat.accept")

#: First byte of every TLS record that opens a handshake (ClientHello).
TLS_HANDSHAKE_BYTE = 0x16
TLS_REQUIRED = (
    b"This port speaks TLS. Connect with TLS "
    b"(trio-chat connect --tls, or openssl s_client -connect HOST:PORT).\n"
)


class ReplayStream(trio.abc.Stream):
    """A stream that first hands back bytes already read, then reads from ``inner``."""

    def __init__(self, inner: trio.abc.Stream, prefix: bytes) -> None:
        self.inner = inner
        self._prefix = prefix

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        if self._prefix:
            size = len(self._prefix) if max_bytes is None else max_bytes
            data, self._prefix = self._prefix[:size], self._prefix[size:]
            await trio.lowlevel.checkpoint()
            return data
        return await self.inner.receive_some(max_bytes)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        await self.inner.aclose()


def peer_address(stream: trio.abc.Stream) -> str:
    """``host:port`` of the peer of a (possibly TLS-wrapped) socket stream, or ``?``."""
    inner: object = stream
    while isinstance(inner, trio.SSLStream | ReplayStream):
        inner = inner.transport_stream if isinstance(inner, trio.SSLStream) else inner.inner
    try:
        host, port, *_ = inner.socket.getpeername()  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError):
        return "?"
    return format_address(host, port)


def server_ssl_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    """A modern server context (TLS 1.2+) from PEM files; raises OSError/ssl.SSLError."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    return context


def certificate_not_after(cert_file: str) -> float | None:
    """When the first certificate in a PEM file expires (Unix time), or ``None`` if that
    cannot be read. Uses the ``ssl`` module's own decoder (a private function, the only
    way the standard library reads a certificate file; absent, expiry goes unreported)."""
    decode = getattr(getattr(ssl, "_ssl", None), "_test_decode_cert", None)
    if decode is None:
        return None
    try:
        not_after = decode(cert_file)["notAfter"]
        return float(ssl.cert_time_to_seconds(not_after))
    except (OSError, ssl.SSLError, KeyError, ValueError, TypeError):
        return None


async def accept_tls(
    stream: trio.abc.Stream, context: ssl.SSLContext, first: bytes = b""
) -> trio.abc.Stream | None:
    """Complete a server-side TLS handshake, or explain and give up.

    A client that opens with anything but a TLS ClientHello (someone with ``nc`` on a TLS
    port) gets one plain line saying so; a failed handshake (bad or expired certificate on
    the client's side, garbage) returns ``None``. ``first`` is what the caller already read
    from ``stream`` (the bytes after a PROXY header, or a first read it looked at). Bound
    the call with a timeout.
    """
    if not first:
        first = bytes(await stream.receive_some(4096))
        if not first:
            return None
    if first[0] != TLS_HANDSHAKE_BYTE:
        await stream.send_all(TLS_REQUIRED)
        return None
    tls = trio.SSLStream(ReplayStream(stream, bytes(first)), context, server_side=True)
    try:
        await tls.do_handshake()
    except (trio.BrokenResourceError, ssl.SSLError):
        return None
    return tls


#: ``accept()`` errors that mean the machine is out of something (file descriptors, memory):
#: wait a little and accept again, as ``trio.serve_listeners`` does.
ACCEPT_CAPACITY_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})
ACCEPT_RETRY_SECONDS = 0.1
#: ``accept()`` errors about one connection only (it was reset or went away while it
#: waited): skip it and accept the next, as ``trio.SocketListener.accept`` does.
_SKIPPED_NAMES = (
    "ECONNABORTED ECONNRESET EHOSTDOWN EHOSTUNREACH ENETDOWN ENETUNREACH ENONET ENOPROTOOPT "
    "ENOSR EOPNOTSUPP EPERM EPROTO EPROTONOSUPPORT ESOCKTNOSUPPORT ETIMEDOUT"
)
ACCEPT_SKIPPED_ERRNOS = frozenset(
    getattr(errno, name) for name in _SKIPPED_NAMES.split() if hasattr(errno, name)
)
#: Most connections accepted in a row, without a scheduling round between them.
ACCEPT_BURST = 64


#: What takes a connection accepted as its descriptor (:func:`accept_plain_waiting`):
#: called with the stream and the peer's ``host:port`` in the accepting task, it must not
#: block: it starts the connection's task, or leaves the connection somewhere to wait for
#: one (the TCP chat port's doorstep: :mod:`.doorstep`).
PlainHandler = Callable[[FdStream, str], None]


async def accept_forever(
    listeners: list[trio.SocketListener],
    handler: Callable[[trio.SocketStream], Awaitable[object]],
    handler_nursery: trio.Nursery,
    *,
    plain: PlainHandler | None = None,
) -> None:
    """Accept connections on ``listeners`` and run ``handler(stream)`` for each in
    ``handler_nursery``, until cancelled; with ``plain``, call ``plain(stream, peer)``
    instead (see :data:`PlainHandler`), each connection taken as its descriptor
    (:func:`accept_plain_waiting`: only for listeners that gave their connections every
    option they need, see :func:`set_connection_defaults`).

    ``trio.serve_listeners`` with one difference: the handler owns the stream and must
    close it (or hand it on). trio's closes it when the handler returns, but a parked
    connection outlives the task that accepted it.
    """
    async with trio.open_nursery() as nursery:
        for listener in listeners:
            nursery.start_soon(_accept_on, listener, handler, handler_nursery, plain)


async def serve_port(
    host: str,
    port: int,
    scheme: str,
    handler: Callable[[trio.SocketStream], Awaitable[object]],
    handler_nursery: trio.Nursery,
    *,
    reuse_port: bool | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Listen on ``host:port``, report the bound addresses (``scheme://host:port``, see
    :func:`listener_address`) through ``task_status``, then :func:`accept_forever`.

    ``reuse_port``: see :func:`open_listeners`; ``None`` takes :data:`SHARE_PORTS`."""
    if reuse_port is None:
        reuse_port = SHARE_PORTS.get()
    listeners = await open_listeners(host, port, reuse_port=reuse_port)
    task_status.started([listener_address(scheme, listener) for listener in listeners])
    await accept_forever(listeners, handler, handler_nursery)


class ListenError(OSError):
    """A port could not be opened; says which (``host``, ``port``) and why, in one line."""

    def __init__(self, host: str, port: int, cause: OSError) -> None:
        super().__init__(cause.errno, cause.strerror or str(cause))
        self.host = host
        self.port = port

    def __str__(self) -> str:
        where = format_address(self.host, self.port)
        reason = self.strerror or "error"
        if self.errno == errno.EADDRINUSE:
            return f"address already in use: {where} (is another server running there?)"
        return f"cannot listen on {where}: {reason[:1].lower()}{reason[1:]}"


#: Whether the chat ports (TCP, WebSocket) of this process are opened with ``SO_REUSEPORT``:
#: set by a ``--workers`` worker (:mod:`trio_chat.workers`) before it starts its server, so
#: that the workers share the ports and the kernel spreads new connections among them.
SHARE_PORTS: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "trio_chat_share_ports", default=False
)


async def open_listeners(
    host: str, port: int, *, reuse_port: bool = False
) -> list[trio.SocketListener]:
    """``trio.open_tcp_listeners``, raising :class:`ListenError` (which names the port it
    was asked for) when the port cannot be opened.

    With ``reuse_port`` the sockets are opened with ``SO_REUSEPORT`` (Linux, BSDs), so that
    several processes of one user may listen on the same port at once.
    """
    try:
        if reuse_port:
            return await _open_shared_listeners(host, port)
        return await trio.open_tcp_listeners(port, host=host)
    except OSError as exc:
        raise ListenError(host, port, exc) from None


def share_port(sock: socket.socket | trio.socket.SocketType, family: int) -> None:
    """Set ``SO_REUSEPORT`` (and what goes with it) on a socket not yet bound, so that
    several sockets of this user may bind one port; ``OSError`` where the system cannot."""
    if not hasattr(socket, "SO_REUSEPORT"):
        raise OSError(errno.EOPNOTSUPP, "SO_REUSEPORT is not available on this system")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)


async def _open_shared_listeners(host: str, port: int) -> list[trio.SocketListener]:
    """``trio.open_tcp_listeners`` with ``SO_REUSEPORT`` on every socket."""
    addresses = await trio.socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    listeners: list[trio.SocketListener] = []
    try:
        for family, type_, proto, _, sockaddr in addresses:
            sock = trio.socket.socket(family, type_, proto)
            try:
                share_port(sock, family)
                await sock.bind(sockaddr)
                sock.listen(0xFFFF)  # as trio's: the system's maximum
            except BaseException:
                sock.close()
                raise
            listeners.append(trio.SocketListener(sock))
    except BaseException:
        for listener in listeners:
            listener.socket.close()
        raise
    return listeners


async def _accept_on(
    listener: trio.SocketListener,
    handler: Callable[[trio.SocketStream], Awaitable[object]],
    handler_nursery: trio.Nursery,
    plain: PlainHandler | None = None,
) -> None:
    """Accept on ``listener`` until cancelled: everything waiting at once (up to
    :data:`ACCEPT_BURST`), then wait until more comes.

    ``listener.accept()`` takes one connection per scheduling round (trio's accept is a
    checkpoint even when a connection waits), and a crowd reconnecting after a restart
    waits in the backlog meanwhile; so a second descriptor of the listening socket is
    read with plain non-blocking ``accept()`` calls (:func:`accept_waiting`): half the
    CPU per accepted connection when many wait (23 against 43 us here).
    """
    async with listener:
        raw = listener.socket
        listening = socket.fromfd(raw.fileno(), raw.family, raw.type)  # a duplicate
        try:
            listening.setblocking(False)
            while True:
                if plain is None:
                    streams, failed = accept_waiting(listening, ACCEPT_BURST)
                    for stream in streams:
                        handler_nursery.start_soon(handler, stream)
                    taken = len(streams)
                else:
                    arrived, failed = accept_plain_waiting(listening, ACCEPT_BURST)
                    for fd_stream, peer in arrived:
                        plain(fd_stream, peer)
                    taken = len(arrived)
                if failed is not None:
                    if failed.errno not in ACCEPT_CAPACITY_ERRNOS:
                        raise failed
                    log.error(
                        "accept failed: %s; retrying in %s s",
                        os.strerror(failed.errno),
                        ACCEPT_RETRY_SECONDS,
                    )
                    await trio.sleep(ACCEPT_RETRY_SECONDS)
                elif taken < ACCEPT_BURST:
                    await trio.lowlevel.wait_readable(listening)
                else:  # more may wait: let the accepted ones (and everyone else) run first
                    await trio.lowlevel.checkpoint()
        finally:
            trio.lowlevel.notify_closing(listening)
            listening.close()


def accept_waiting(
    listening: socket.socket, limit: int
) -> tuple[list[trio.SocketStream], OSError | None]:
    """Accept up to ``limit`` connections waiting on a non-blocking listening socket now,
    without waiting for more: the streams, and the error that stopped it early (``None``
    if it stopped for lack of connections or at ``limit``). A connection that went away
    while it waited is skipped (:data:`ACCEPT_SKIPPED_ERRNOS`)."""
    streams: list[trio.SocketStream] = []
    for _ in range(limit):
        try:
            accepted, _ = listening.accept()
        except BlockingIOError:
            break
        except OSError as exc:
            if exc.errno in ACCEPT_SKIPPED_ERRNOS:
                continue
            return streams, exc
        streams.append(trio.SocketStream(trio.socket.from_stdlib_socket(accepted)))
    return streams, None


def accept_plain_waiting(
    listening: socket.socket, limit: int
) -> tuple[list[tuple[FdStream, str]], OSError | None]:
    """:func:`accept_waiting`, each connection as its descriptor (an :class:`FdStream`,
    made non-blocking) and its peer's ``host:port``, for a listener whose connections
    inherit what trio's ``SocketStream`` would set on each (:func:`set_connection_defaults`).

    trio's accept makes three objects per connection (the standard library's socket,
    trio's socket around it, the ``SocketStream``: the socket's family and type made enum
    members on the way) and sets two options on it, and the peer's address takes one more
    system call; a logged-in connection then keeps the descriptor alone anyway
    (:func:`kept_stream`). Here the descriptor and the address ``accept`` returns are all
    there is, and making it non-blocking: about 6 against 18 us per connection (process
    time, a loop of 1,000 here, loaded), three system calls fewer."""
    accepted: list[tuple[FdStream, str]] = []
    for _ in range(limit):
        try:
            # The socket's own accept, before the standard library makes an object of it.
            fd, address = listening._accept()  # type: ignore[attr-defined]
        except BlockingIOError:
            break
        except OSError as exc:
            if exc.errno in ACCEPT_SKIPPED_ERRNOS:
                continue
            return accepted, exc
        try:
            os.set_blocking(fd, False)
        except OSError:  # (cannot happen to a socket just accepted)
            os.close(fd)
            continue
        host, port, *_ = address
        accepted.append((FdStream(fd), format_address(host, port)))
    return accepted, None


#: Bytes the kernel may hold unsent per connection before a write waits: trio's
#: ``SocketStream`` sets this on each socket it wraps (see :func:`set_connection_defaults`).
NOTSENT_LOWAT = 2**14


def set_connection_defaults(sock: socket.socket | trio.socket.SocketType) -> bool:
    """Set on a listening socket what trio's ``SocketStream`` sets on each connection
    (``TCP_NODELAY``; ``TCP_NOTSENT_LOWAT`` where there is one): Linux copies a listening
    socket's options into every connection it accepts, so
    :func:`accept_plain_waiting` need not set them again. Whether every option took."""
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if hasattr(socket, "TCP_NOTSENT_LOWAT"):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NOTSENT_LOWAT, NOTSENT_LOWAT)
    except OSError:
        return False
    return True


def listener_address(scheme: str, listener: trio.SocketListener) -> str:
    """``scheme://host:port`` of what a listener bound (IPv6 hosts in brackets)."""
    host, port, *_ = listener.socket.getsockname()
    return f"{scheme}://{format_address(host, port)}"


async def refuse(stream: trio.abc.Stream, message: bytes) -> None:
    """Say why a connection is refused and close it so the reason arrives: shut our side
    (where the stream can: not TLS), then discard what the peer already sent (closing on
    unread data would reset the connection and lose the message). Bounded to one second."""
    with trio.move_on_after(1):
        try:
            await stream.send_all(message)
            if isinstance(stream, trio.abc.HalfCloseableStream):
                await stream.send_eof()
            while await stream.receive_some(4096):
                pass
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
    await trio.aclose_forcefully(stream)


#: Bytes asked of the socket per read.
RECEIVE_SIZE = 64 * 1024


async def receive_or_end(stream: trio.abc.Stream) -> bytes | bytearray:
    """What arrives next on ``stream``; ``b""`` once the peer closed or the connection broke."""
    try:
        return await stream.receive_some(RECEIVE_SIZE)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        return b""


async def receive_on_fd(fd: int) -> bytes:
    """What arrives next on a plain socket, by its file descriptor; ``b""`` once the peer
    closed or the connection broke (as :func:`receive_or_end`).

    What ``SocketStream.receive_some`` does (a checkpoint before; after a read that got
    something at once, a checkpoint that cannot be cancelled, so cancelling never loses
    bytes; else a wait until readable), without its layers: a logged-in connection waits
    here nearly all its life, and each layer (the stream's conflict detector, the socket's
    ``recv``, its non-blocking helper and context manager) is memory held meanwhile, about
    1.3 KiB per connection in all (bench/README.md, "Memory per connection").
    """
    await trio.lowlevel.checkpoint_if_cancelled()
    try:
        data = os.read(fd, RECEIVE_SIZE)
    except BlockingIOError:
        pass
    except OSError:  # reset, or closed under us: the end either way
        await trio.lowlevel.cancel_shielded_checkpoint()
        return b""
    else:
        await trio.lowlevel.cancel_shielded_checkpoint()
        return data
    while True:
        try:
            await trio.lowlevel.wait_readable(fd)
        except trio.ClosedResourceError:  # the socket was closed while we waited
            return b""
        try:
            return os.read(fd, RECEIVE_SIZE)
        except BlockingIOError:
            continue
        except OSError:
            return b""


def read_nowait(fd: int) -> bytes | None:
    """What a plain non-blocking socket has for us now, by its file descriptor: ``None``
    if nothing yet, ``b""`` once the peer closed or the connection broke. (The parking
    lot's readers wait for input themselves; see
    :meth:`~trio_chat.transports.parking.ParkingLot.wait_readable`.)"""
    try:
        return os.read(fd, RECEIVE_SIZE)
    except BlockingIOError:
        return None
    except OSError:  # reset, or closed under us: the end either way
        return b""


async def read_line(
    stream: trio.abc.Stream, lines: LineBuffer, heard: Callable[[], None] | None = None
) -> bytes | LineTooLong | None:
    """The next line from ``stream`` (through ``lines``), a :class:`LineTooLong`, or ``None``
    once the peer closed or the connection broke. ``heard`` is called whenever bytes arrive.
    """
    while True:
        event = lines.next_event()
        if event is NEED_DATA:
            data = await receive_or_end(stream)
            if heard is not None and data:
                heard()
            lines.feed(data)
            continue
        if event is EOF:
            return None
        assert isinstance(event, bytes | LineTooLong)
        return event


async def read_proxy_header(stream: trio.abc.Stream) -> tuple[ProxyHeader, bytes] | None:
    """Read a PROXY protocol header (v1 or v2) from the start of ``stream``: the header and
    the bytes that came after it (the client's), or ``None`` if the peer left first.

    Raises :class:`~trio_chat.proxyproto.ProxyProtocolError` for anything but a valid header
    (the parser refuses as soon as the bytes cannot become one, and bounds their size).
    Bound the call with a timeout.
    """
    data = b""
    while True:
        chunk = await receive_or_end(stream)
        if not chunk:
            return None
        data += chunk
        header = parse_proxy_header(data)
        if isinstance(header, ProxyHeader):
            return header, data[header.length :]


def close_now(stream: trio.abc.Stream) -> None:
    """Close a socket stream's socket without waiting (nothing is sent; other streams are
    left alone: only plain sockets park, see :mod:`trio_chat.transports.parking`)."""
    if isinstance(stream, FdStream):
        stream.close()
    elif isinstance(stream, trio.SocketStream):
        stream.socket.close()


def closed_now(stream: trio.abc.Stream) -> bool:
    """Close a plain socket stream at once (nothing to send first, so nothing to wait
    for: no scope, no scheduling round); whether it was one. Any other stream (TLS,
    which says goodbye first) is left to its ``aclose``."""
    if isinstance(stream, FdStream):
        stream.close()
        return True
    return False


def socket_fd(stream: trio.abc.Stream) -> int | None:
    """The file descriptor of a plain socket stream (``None`` for TLS and other streams),
    for :func:`write_nowait`."""
    if isinstance(stream, FdStream):
        return stream.fileno()
    return stream.socket.fileno() if isinstance(stream, trio.SocketStream) else None


def kept_stream(stream: trio.abc.Stream) -> trio.abc.Stream:
    """The stream a logged-in connection keeps: a plain socket by its descriptor alone
    (:class:`~.fdstream.FdStream`, taken over from trio's), any other stream as it is."""
    return FdStream.take_over(stream) if isinstance(stream, trio.SocketStream) else stream


def idle_fd(stream: trio.abc.Stream) -> int | None:
    """The descriptor of a plain socket stream that no task is writing to now, for a
    write that must not wait (:func:`write_nowait`); ``None`` for any other stream, or
    while a write is under way (or once closed)."""
    if isinstance(stream, FdStream):
        fd = stream.fileno()
        return None if stream.sending or fd < 0 else fd
    return None


def write_all_nowait(fd: int, data: bytes) -> bytes:
    """``data`` written without waiting to ``fd``, a plain socket stream's descriptor that
    :func:`idle_fd` gave (no other write under way): what the kernel did not take
    (``b""``: all of it). ``trio.BrokenResourceError`` if the connection is broken."""
    try:
        return write_nowait(fd, data)
    except OSError as exc:
        raise trio.BrokenResourceError(f"socket connection broken: {exc}") from exc


def write_nowait(fd: int, data: bytes) -> bytes:
    """Write what the kernel takes at once to a non-blocking socket; return the rest.

    Only for a stream no task is writing to at the time: it bypasses trio's ``send_all``
    (which costs a scheduling round even when the data fits), so bytes must not interleave
    with another write in progress.
    """
    try:
        written = os.write(fd, data)
    except BlockingIOError:
        return data
    return data[written:] if written < len(data) else b""
