"""Every server setting, declared once: its type, default, help, check and flags.

A setting is a field of :class:`ServerConfig` made with :func:`setting`, and that is all
there is to add one: :mod:`trio_chat.config_loading` reads it from the TOML file (the field
name as key) and from ``TRIO_CHAT_<NAME>`` (the name in capitals), checks it with its
``check``, writes it into ``trio-chat example-config`` under its ``help``, and gives
``trio-chat serve`` each :class:`Flag` it declares, whose ``--help`` is the same ``help``
with the real default. Nothing is written twice, so nothing can drift: cli.py used to
declare every flag again with defaults typed into its help texts.

Help texts are one sentence, in Markdown-ish backticks, and say `None` where the setting is
unset (the example file turns that into ``""`` or ``"none"``, ``--help`` into "none"). Some
settings have no flag on purpose: tuning knobs, and the ``/oper`` password, which does not
belong in a process list.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from .limits import (
    DEFAULT_FLOOD_BURST,
    DEFAULT_FLOOD_MAX_LAG,
    DEFAULT_FLOOD_RATE,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_CONNECTIONS_PER_HOST,
)
from .protocol import DEFAULT_MAX_FRAME_BYTES
from .redis_url import parse_url

DEFAULT_PORT = 12345
DEFAULT_WS_PORT = 12346

T = TypeVar("T")

#: A check returns what is wrong with a (well-typed, not ``None``) value, or ``None``.
Check = Callable[[Any], str | None]


# ---------------------------------------------------------------------------- checks


def port_number(value: int) -> str | None:
    return None if 0 <= value <= 65535 else "must be a port number from 0 to 65535"


def positive(value: float) -> str | None:
    return None if value > 0 else "must be greater than 0"  # also refuses nan


def non_negative(value: float) -> str | None:
    return None if value >= 0 else "must be 0 or more"


def not_empty(value: str) -> str | None:
    return None if value.strip() else "must not be empty"


def broker_url(value: str) -> str | None:
    """A Redis URL: ``redis://HOST[:PORT][/DB]``, ``rediss://...`` or ``unix:///PATH``
    (checked by the broker's own parser, so what passes here is what it connects to)."""
    try:
        parse_url(value)
    except ValueError as exc:
        return str(exc)
    return None


def workers_count(value: str) -> str | None:
    """``auto`` or a whole number from 1 (``workers``)."""
    text = value.strip().lower()
    if text == "auto" or (text.isdigit() and int(text) >= 1):
        return None
    return "must be a number of processes from 1, or auto (one per CPU core)"


def resolve_workers(value: str) -> int:
    """The number of worker processes ``workers`` asks for (``auto``: one per CPU core)."""
    import os

    text = value.strip().lower()
    return max(1, os.cpu_count() or 1) if text == "auto" else int(text)


#: Why ``workers`` above 1 needs ``broker`` (a one-line error).
WORKERS_NEED_A_BROKER = (
    "several workers need a broker (--broker redis://...) to share rooms, users and ids"
)


def config_problem(config: ServerConfig) -> str | None:
    """What is wrong with a combination of settings that are each fine alone, or ``None``."""
    if config.broker is None and resolve_workers(config.workers) > 1:
        return WORKERS_NEED_A_BROKER
    return None


def networks(value: list[str]) -> str | None:
    """Every entry an IP address or CIDR network (``trusted_proxies``)."""
    from .proxyproto import parse_network

    for entry in value:
        try:
            parse_network(entry)
        except ValueError as exc:
            return f"{exc} (e.g. 127.0.0.1, 10.0.0.0/8, ::1)"
    return None


# ---------------------------------------------------------------------------- the vocabulary


class _TakesValue:
    """The marker of a :class:`Flag` that is followed by a value (most are)."""

    def __repr__(self) -> str:
        return "TAKES_VALUE"


TAKES_VALUE: Any = _TakesValue()


@dataclasses.dataclass(frozen=True)
class Flag:
    """A ``trio-chat serve`` flag that sets one setting.

    By default the flag takes a value of the setting's type (``--port 80``), once per item
    for a list (``--admin a --admin b``), and its ``--help`` is the setting's help with the
    default. A flag with ``sets`` takes no value and sets that one (``--no-ws`` sets
    ``None``), described by its own ``help``, since it does one thing of the setting's many.
    """

    name: str
    metavar: str | None = None  # argparse's: the setting's name in capitals
    sets: Any = TAKES_VALUE
    help: str | None = None

    @property
    def takes_value(self) -> bool:
        return self.sets is TAKES_VALUE


@dataclasses.dataclass(frozen=True)
class Setting:
    """What a :class:`ServerConfig` field declares beyond its type and default."""

    help: str
    check: Check | None = None
    flags: tuple[Flag, ...] = ()
    #: Filled from the file's ``[TABLE.NAME]`` tables instead of a key of its own, and from
    #: nowhere else (no environment variable, no flag).
    table: str | None = None


_METADATA_KEY = "trio_chat.setting"


def setting(
    default: T,
    *,
    help: str,
    check: Check | None = None,
    flags: Sequence[Flag] = (),
    table: str | None = None,
) -> T:
    """A :class:`ServerConfig` field: ``port: int = setting(12345, help=..., ...)``.

    A mutable default (a list, a dict) is copied for each config, as with
    ``default_factory``, so that two configs never share one list.
    """
    metadata = {_METADATA_KEY: Setting(help, check, tuple(flags), table)}
    if type(default).__hash__ is None:  # what dataclasses refuses as a shared default
        factory = functools.partial(copy.deepcopy, default)
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def declaration(field: dataclasses.Field[Any]) -> Setting:
    """The :class:`Setting` of a field; every field must be made with :func:`setting`."""
    found = field.metadata.get(_METADATA_KEY)
    if not isinstance(found, Setting):
        raise TypeError(f"ServerConfig.{field.name} is not declared with config.setting()")
    return found


# ---------------------------------------------------------------------------- the settings


@dataclasses.dataclass
class ServerConfig:
    """Everything ``trio-chat serve`` can be told. Ports of 0 pick a free port."""

    host: str = setting(
        "127.0.0.1",
        help="Address to listen on; `0.0.0.0` for every interface.",
        check=not_empty,
        flags=[Flag("--host")],
    )
    port: int = setting(
        DEFAULT_PORT,
        help="TCP port, for JSON lines and plain text; 0 picks a free one.",
        check=port_number,
        flags=[Flag("--port")],
    )
    ws_port: int | None = setting(
        DEFAULT_WS_PORT,
        help="WebSocket and the browser page share this port; `None` turns them off.",
        check=port_number,
        flags=[Flag("--ws-port"), Flag("--no-ws", sets=None, help="serve TCP only")],
    )
    server_name: str = setting(
        "trio-chat",
        help="Server name shown to users.",
        flags=[Flag("--name", metavar="NAME")],
    )
    tls_cert: str | None = setting(
        None,
        help="PEM certificate chain: with `tls_key`, TCP speaks TLS and WebSocket wss://.",
        flags=[Flag("--tls-cert", metavar="PEM")],
    )
    tls_key: str | None = setting(
        None,
        help="PEM private key of `tls_cert`.",
        flags=[Flag("--tls-key", metavar="PEM")],
    )
    max_frame_bytes: int = setting(
        DEFAULT_MAX_FRAME_BYTES,
        help="Largest frame (JSON line, text line or WebSocket message) accepted, in bytes.",
        check=positive,
        flags=[Flag("--max-frame-bytes", metavar="BYTES")],
    )
    outbox_size: int = setting(
        1024,
        help="Events that may wait for one slow receiver before it is disconnected.",
        check=positive,
    )
    outbox_bytes: int = setting(
        1 << 20,
        help="Bytes that may wait for one slow receiver before it is disconnected.",
        check=positive,
    )
    max_batch: int = setting(
        256, help="Most events written to a socket in one write.", check=positive
    )
    send_timeout: float = setting(
        30.0, help="Seconds one write may take before the peer counts as gone.", check=positive
    )
    handshake_timeout: float = setting(
        30.0,
        help="Seconds a new connection has to choose a nickname "
        "(slow or silent clients are dropped).",
        check=positive,
    )
    idle_timeout: float = setting(
        60.0,
        help="Seconds without hearing from a client before it is pinged (JSON `ping`, "
        "WebSocket ping frame; text-mode users are watched by TCP keepalive instead).",
        check=positive,
    )
    ping_timeout: float = setting(
        30.0,
        help="Seconds a pinged client has to answer before it is disconnected.",
        check=positive,
    )
    park_after: float = setting(
        2.0,
        help="Seconds of quiet (nothing received, nothing waiting to be sent) after which a "
        "connection gives up its tasks and parks until it has something to do, so that idle "
        "users cost a few KiB each while messages still reach them at once (plain TCP and "
        "WebSocket on Linux; TLS connections keep their tasks).",
        check=positive,
    )
    sniff_delay: float = setting(
        0.3,
        help="Seconds to wait for a first byte before treating a TCP client as a text client.",
        check=non_negative,
    )
    flood_rate: float = setting(
        DEFAULT_FLOOD_RATE,
        help="Frames per second a connection may send on average; beyond, frames are delayed "
        "(the connection is read at that rate), and refused (`slow_down`) once they would be "
        "more than `flood_max_lag` seconds late; a client that keeps at it is dropped.",
        check=positive,
        flags=[Flag("--flood-rate", metavar="PER_S")],
    )
    flood_burst: int = setting(
        DEFAULT_FLOOD_BURST,
        help="Frames a connection may send at once after a quiet spell.",
        check=positive,
        flags=[Flag("--flood-burst", metavar="N")],
    )
    flood_max_lag: float = setting(
        DEFAULT_FLOOD_MAX_LAG,
        help="Seconds a frame may be held back by flood control before it is refused instead; "
        "0 refuses every frame over the rate at once.",
        check=non_negative,
        flags=[Flag("--flood-max-lag", metavar="SECONDS")],
    )
    max_connections_per_host: int = setting(
        DEFAULT_MAX_CONNECTIONS_PER_HOST,
        help="Open connections allowed from one address.",
        check=positive,
        flags=[Flag("--max-connections-per-host", metavar="N")],
    )
    max_connections: int = setting(
        DEFAULT_MAX_CONNECTIONS,
        help="Open connections allowed to the whole server.",
        check=positive,
        flags=[Flag("--max-connections", metavar="N")],
    )
    max_connections_per_account: int = setting(
        10,
        help="Connections one account may be logged in on at once (devices, tabs); one more "
        "is refused with `too_many_connections`.",
        check=positive,
        flags=[Flag("--max-connections-per-account", metavar="N")],
    )
    limit_loopback: bool = setting(
        False,
        help="Hold loopback clients (127.0.0.0/8, ::1) to `max_connections_per_host` too; by "
        "default they are exempt, as in ergo: local tools and tests, or a proxy on this "
        "machine.",
        flags=[Flag("--limit-loopback", sets=True)],
    )
    trusted_proxies: list[str] = setting(
        [],
        help="Reverse proxies (IP addresses or CIDR networks, IPv4 or IPv6) whose word is "
        "taken for the client's address: from them the TCP port requires a PROXY protocol "
        "header (v1 or v2) and the WebSocket port reads X-Forwarded-For or Forwarded "
        "(docs/protocol.md, 'Behind a reverse proxy'); empty: nobody's.",
        check=networks,
        flags=[Flag("--trusted-proxy", metavar="ADDR_OR_CIDR")],
    )
    quiet_room_size: int = setting(
        50,
        help="Rooms with more members than this tell only the user concerned about joins "
        "and leaves (announcing every join to everyone grows with the square of the room "
        "size).",
    )
    plugin_timeout: float = setting(
        10.0, help="Seconds an async command or listener plugin may run.", check=positive
    )
    shutdown_grace: float = setting(
        3.0,
        help="Seconds connections get to say goodbye when the server stops.",
        check=non_negative,
    )
    admins: list[str] = setting(
        [],
        help="Nicks that may become server administrators with `/oper PASSWORD`; the "
        "password is `admin_password`, best given as `TRIO_CHAT_ADMIN_PASSWORD`.",
        flags=[Flag("--admin", metavar="NICK")],
    )
    admin_password: str | None = setting(
        None,
        help="The `/oper` password (from `TRIO_CHAT_ADMIN_PASSWORD`); `None` disables `/oper`.",
    )
    db: str | None = setting(
        None,
        help='SQLite database for history and accounts, `":memory:"` for a throwaway one, '
        "or `None` for neither, and then fan-out waits for no disk.",
        flags=[
            Flag("--db", metavar="PATH"),
            Flag("--no-db", sets=None, help="keep no history and no accounts (no database)"),
        ],
    )
    history_on_join: int = setting(
        50,
        help="Messages a user is shown from a room's history on joining it.",
        check=non_negative,
        flags=[Flag("--history", metavar="N")],
    )
    db_sync_full: bool = setting(
        False,
        help="Wait for the disk itself on every commit (survives power loss), not only the OS "
        "(which survives a crash or kill of the server).",
    )
    keep_days: float | None = setting(
        None,
        help="Delete stored messages older than this many days (checked hourly); `None` keeps all.",
        check=positive,
        flags=[Flag("--keep-days", metavar="DAYS")],
    )
    require_accounts: bool = setting(
        False,
        help="Only registered users may chat: `hello` must carry a password.",
        flags=[Flag("--require-accounts", sets=True)],
    )
    always_on: bool = setting(
        False,
        help="A user logged in to an account stays in its rooms, shown away (`offline`), when "
        "its last connection ends (on `/quit` too), until it logs in again or the server "
        "stops; guests leave as ever.",
        flags=[Flag("--always-on", sets=True)],
    )
    irc_port: int | None = setting(
        None,
        help="Port for IRC clients (irssi, WeeChat, HexChat, bots; TLS like the TCP port "
        "when `tls_cert` is set, as 6697 conventionally is); `None` serves no IRC.",
        check=port_number,
        flags=[Flag("--irc-port", metavar="PORT")],
    )
    metrics_port: int | None = setting(
        None,
        help="Port answering Prometheus's `GET /metrics` (on `host`); `None` serves no metrics.",
        check=port_number,
        flags=[Flag("--metrics-port", metavar="PORT")],
    )
    broker: str | None = setting(
        None,
        help="Redis that several processes (workers, or servers on other machines) use to "
        "share one chat and its accounts (each keeps its own history in `db`): "
        "`redis://HOST:6379/0`, `rediss://` for TLS or `unix:///PATH`; "
        "`None`: this process alone holds the chat.",
        check=broker_url,
        flags=[Flag("--broker", metavar="URL")],
    )
    workers: str = setting(
        "1",
        help="Server processes to run on this machine, sharing the TCP and WebSocket ports: "
        "a number, or `auto` for one per CPU core; more than 1 needs `broker`.",
        check=workers_count,
        flags=[Flag("--workers", metavar="N")],
    )
    plugins: list[str] = setting(
        [],
        help="Plugins to load: a module (`pkg.mod`), an object in one (`pkg.mod:obj`) or a "
        "file (`path/to/file.py`).",
        flags=[Flag("--plugin", metavar="MODULE_OR_FILE")],
    )
    entry_points: bool = setting(
        True,
        help="Load plugins installed with an entry point in the `trio_chat` group.",
        flags=[
            Flag(
                "--no-entry-points",
                sets=False,
                help="do not load plugins installed in the 'trio_chat' entry-point group",
            )
        ],
    )
    plugin_settings: dict[str, dict[str, Any]] = setting(
        {},
        help="Plugins read their own settings from a table named after the plugin, e.g.:",
        table="plugin",
    )
