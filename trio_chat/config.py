"""Server settings with their defaults, in one typed place."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .limits import (
    DEFAULT_FLOOD_BURST,
    DEFAULT_FLOOD_MAX_LAG,
    DEFAULT_FLOOD_RATE,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_CONNECTIONS_PER_HOST,
)
from .protocol import DEFAULT_MAX_FRAME_BYTES

DEFAULT_PORT = 12345
DEFAULT_WS_PORT = 12346


@dataclass
class ServerConfig:
    """Everything ``trio-chat serve`` can be told. Ports of 0 pick a free port."""

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    #: WebSocket and the browser page share this port; ``None`` turns them off.
    ws_port: int | None = DEFAULT_WS_PORT
    server_name: str = "trio-chat"
    #: PEM certificate chain and private key: with both, TCP speaks TLS and WebSocket wss://.
    tls_cert: str | None = None
    tls_key: str | None = None
    #: Largest frame (JSON line, text line or WebSocket message) accepted, in bytes.
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES
    #: Events that may wait for one slow receiver before it is disconnected.
    outbox_size: int = 1024
    #: Bytes that may wait for one slow receiver before it is disconnected.
    outbox_bytes: int = 1 << 20
    #: Most events written to a socket in one write.
    max_batch: int = 256
    #: Seconds one write may take before the peer counts as gone.
    send_timeout: float = 30.0
    #: Seconds a new connection has to choose a nickname (slow or silent clients are dropped).
    handshake_timeout: float = 30.0
    #: Seconds without hearing from a client before it is pinged (JSON ``ping``, WebSocket
    #: ping frame; text-mode users are watched by TCP keepalive instead).
    idle_timeout: float = 60.0
    #: Seconds a pinged client has to answer before it is disconnected.
    ping_timeout: float = 30.0
    #: Seconds of quiet (nothing received, nothing waiting to be sent) after which a
    #: connection gives up its tasks and parks until it has something to do: idle users
    #: then cost a few KiB each. Messages still reach them at once. Plain TCP and
    #: WebSocket on Linux; TLS connections keep their tasks.
    park_after: float = 2.0
    #: Seconds to wait for a first byte before treating a TCP client as a text client.
    sniff_delay: float = 0.3
    #: Frames per second a connection may send on average, and at once after a quiet spell;
    #: beyond, frames are delayed (the connection is read at that rate), and refused
    #: (``slow_down``) once they would be more than ``flood_max_lag`` seconds late; a client
    #: that keeps at it is dropped.
    flood_rate: float = DEFAULT_FLOOD_RATE
    flood_burst: int = DEFAULT_FLOOD_BURST
    #: Seconds a frame may be held back by flood control before it is refused instead
    #: (0 refuses every frame over the rate at once).
    flood_max_lag: float = DEFAULT_FLOOD_MAX_LAG
    #: Open connections allowed from one host, and to the whole server.
    max_connections_per_host: int = DEFAULT_MAX_CONNECTIONS_PER_HOST
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    #: Hold loopback clients (127.0.0.0/8, ::1) to ``max_connections_per_host`` too. By
    #: default they are exempt, as in ergo: local tools and tests, or a proxy on this machine.
    limit_loopback: bool = False
    #: Reverse proxies (IP addresses or CIDR networks, IPv4 or IPv6) whose word is taken for
    #: the client's address: from them the TCP port requires a PROXY protocol header (v1 or
    #: v2) and the WebSocket port reads X-Forwarded-For or Forwarded. Empty: nobody's.
    trusted_proxies: list[str] = field(default_factory=list)
    #: Rooms with more members than this tell only the user concerned about joins and leaves
    #: (announcing every join to everyone grows with the square of the room size).
    quiet_room_size: int = 50
    #: Seconds an async command or listener plugin may run.
    plugin_timeout: float = 10.0
    #: Seconds connections get to say goodbye when the server stops.
    shutdown_grace: float = 3.0
    #: Nicks that may become server administrators with ``/oper PASSWORD``.
    admins: list[str] = field(default_factory=list)
    #: The ``/oper`` password (from ``TRIO_CHAT_ADMIN_PASSWORD``); ``None`` disables ``/oper``.
    admin_password: str | None = None
    #: SQLite database for history and accounts; ``":memory:"`` for a throwaway one; ``None``
    #: for none (no history, no accounts; fan-out does not wait for a disk).
    db: str | None = None
    #: Messages a user is shown from a room's history on joining it.
    history_on_join: int = 50
    #: Wait for the disk itself on every commit (survives power loss), not only the OS.
    db_sync_full: bool = True
    #: Delete stored messages older than this many days (checked hourly); ``None`` keeps all.
    keep_days: float | None = None
    #: Only registered users may chat (``hello`` must carry a password).
    require_accounts: bool = False
    #: Port answering Prometheus's ``GET /metrics`` (on ``host``); ``None`` serves no metrics.
    metrics_port: int | None = None
    #: Plugins to load (``module.name`` or ``path/to/file.py``).
    plugins: list[str] = field(default_factory=list)
    #: Load plugins installed with an entry point in the ``trio_chat`` group.
    entry_points: bool = True
    #: Each plugin's own settings, by plugin name (``[plugin.NAME]`` in the config file).
    plugin_settings: dict[str, dict[str, Any]] = field(default_factory=dict)
