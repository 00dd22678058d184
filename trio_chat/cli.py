"""The ``trio-chat`` command: ``serve``, ``connect``, ``plugins`` and ``new-plugin``.

Errors a user can meet (port in use, bad arguments, a plugin that will not load, connection
refused) end with one clear line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import trio

from . import __version__
from .config import DEFAULT_PORT, ServerConfig, resolve_workers
from .config_loading import (
    ConfigError,
    add_setting_flags,
    flag_type,
    load_config,
    overrides_from_args,
    render_example_config,
)
from .plugins import PluginLoadError
from .program import run_until_signal
from .server import ChatServer, ServerSetupError
from .store import Store, StoreError
from .transports.streams import SHARE_PORTS, ListenError
from .workers import (
    STOP_MARGIN,
    GaveUp,
    Supervisor,
    reserve_port,
    worker_command,
    worker_config,
    worker_db_path,
    worker_number,
    worker_slot,
)

E = TypeVar("E", bound=BaseException)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trio-chat", description="A multi-user chat server and client built on trio."
    )
    parser.add_argument("--version", action="version", version=f"trio-chat {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser(
        "serve",
        help="run a chat server",
        description="Run a chat server: TCP (JSON lines and plain text, "
        "for nc) and WebSocket plus the browser page on a second port. Settings come from "
        "--config FILE (TOML), then TRIO_CHAT_<SETTING> environment variables, then flags.",
        # A flag the user did not give leaves no attribute, so it cannot hide a setting
        # from the config file or the environment (see config_loading.overrides_from_args).
        argument_default=argparse.SUPPRESS,
    )
    serve.add_argument(
        "--config",
        default=None,
        metavar="FILE",
        help="TOML settings file (trio-chat example-config prints one with every setting)",
    )
    # Every setting's flags, help and checks come from its declaration in config.py.
    add_setting_flags(serve, program_defaults())
    serve.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="default %(default)s",
    )

    connect = sub.add_parser(
        "connect",
        help="chat from this terminal",
        description="Connect to a trio-chat server. HOST may be a ws:// URL to use WebSocket, "
        "or tls://HOST:PORT or wss:// for TLS, which checks the server's certificate.",
    )
    connect.add_argument(
        "host",
        nargs="?",
        default="localhost",
        help="server host, tls://host:port, or ws:// or wss:// URL (default localhost)",
    )
    connect.add_argument(
        "--port",
        type=flag_type("port"),  # a port number, checked as serve's --port
        default=DEFAULT_PORT,
        help="TCP port (default %(default)s)",
    )
    connect.add_argument("--nick", help="nickname (asked for if not given)")
    connect.add_argument("--tls", action="store_true", help="connect to the TCP port with TLS")
    connect.add_argument(
        "--json",
        action="store_true",
        help="for scripts: print the server's events as JSON, one object per line (a typed "
        "line starting with { is sent as a JSON frame); needs --nick",
    )
    connect.add_argument(
        "--no-reconnect",
        dest="reconnect",
        action="store_false",
        help="exit when the connection is lost (by default the client reconnects, rejoins "
        "its rooms and shows what was said meanwhile)",
    )
    trust = connect.add_mutually_exclusive_group()
    trust.add_argument(
        "--ca", metavar="FILE", help="also trust this CA certificate (PEM), e.g. a private CA"
    )
    trust.add_argument(
        "--insecure", action="store_true", help="do not check the server's certificate (unsafe)"
    )

    history = sub.add_parser("history", help="export the stored history")
    history_sub = history.add_subparsers(dest="history_command", required=True, metavar="ACTION")
    export = history_sub.add_parser(
        "export", help="write a room's messages as JSON lines to standard output"
    )
    export.add_argument("--room", required=True, help="the room, e.g. '#lobby'")
    export.add_argument(
        "--db", default=default_db_path(), metavar="PATH", help="database (default %(default)s)"
    )

    sub.add_parser(
        "example-config",
        help="print a TOML settings file with every setting at its default",
    )

    plugins = sub.add_parser("plugins", help="list plugins and their commands")
    plugins.add_argument(
        "--plugin",
        action="append",
        default=[],
        metavar="MODULE_OR_FILE",
        help="also load this plugin, as serve would",
    )

    new_plugin = sub.add_parser(
        "new-plugin",
        help="write a new plugin package, ./trio-chat-NAME/, that passes its test",
        description="Write ./trio-chat-NAME/: an installable plugin package (pyproject.toml "
        "with the trio_chat entry point, a module with the command /NAME, a test using "
        "trio_chat.testing, a README). An existing folder is never overwritten.",
    )
    new_plugin.add_argument(
        "name", metavar="NAME", help="the plugin's name, also its command's (e.g. weather)"
    )
    return parser


def first_error(exc: BaseException, kind: type[E]) -> E | None:
    """The first ``kind`` exception in ``exc`` or the exception groups trio wraps it in."""
    if isinstance(exc, kind):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = first_error(inner, kind)
            if found is not None:
                return found
    return None


def default_db_path() -> str:
    """``$XDG_DATA_HOME/trio-chat/chat.db`` (``~/.local/share/trio-chat/chat.db``)."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "share"
    )
    return os.path.join(base, "trio-chat", "chat.db")


def program_defaults() -> dict[str, object]:
    """Defaults of the ``trio-chat`` program that the dataclass cannot know: a database in
    the user's data folder (a library user gets none unless asked)."""
    return {"db": default_db_path()}


def check_db_folder(db: str, *, default: str) -> str | None:
    """Make the folder of the default database if need be; for any other database, say
    (one line) if its folder is missing. ``None`` when the database can be opened there.

    The default location (``~/.local/share/trio-chat``) is the program's own and is made
    on first use. A path someone chose (``--db``, the config file, the environment) in a
    folder that does not exist is more likely a typo than a wish for new folders: making
    them silently put the history somewhere nobody would look.
    """
    if db == ":memory:":
        return None
    folder = os.path.dirname(os.path.abspath(db))
    if os.path.abspath(db) == os.path.abspath(default):
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as exc:
            return f"cannot create the database folder {folder}: {exc.strerror}"
        return None
    if not os.path.isdir(folder):
        return f"the database folder {folder} does not exist (create it, or choose another --db)"
    return None


def cmd_history(args: argparse.Namespace) -> int:
    if args.db != ":memory:" and not os.path.exists(args.db):
        return fail(f"no database at {args.db}")

    async def export() -> None:
        async with Store.open(args.db) as store:
            async for message in store.export_room(args.room):
                sys.stdout.write(json.dumps(message.to_dict(), ensure_ascii=False) + "\n")

    try:
        trio.run(export)
    except (StoreError, BaseExceptionGroup) as exc:
        error = first_error(exc, StoreError)
        if error is None:
            raise
        return fail(str(error))
    return 0


def fail(message: str) -> int:
    print(f"trio-chat: error: {message}", file=sys.stderr)
    return 2


def cmd_serve(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """``trio-chat serve``: one server; the supervisor of ``--workers N``; or one of its
    workers (``TRIO_CHAT_WORKER`` set, see :mod:`trio_chat.workers`)."""
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if args.log_level != "debug":
        # coredis logs each of its own retries at info; the broker says once per attempt
        # what failed and what it does next.
        logging.getLogger("coredis").setLevel(logging.WARNING)
    try:
        config = load_config(
            config_file=args.config,
            environ=os.environ,
            overrides=overrides_from_args(args),
            defaults=program_defaults(),
        )
    except ConfigError as exc:
        return fail(str(exc))
    number = worker_number(os.environ)
    default_db = default_db_path()
    if number is not None:
        config = worker_config(config, number)
        default_db = worker_db_path(default_db, number)
        SHARE_PORTS.set(True)  # the ports are shared with the other workers
    try:
        server = ChatServer(
            config, broker_slot=None if number is None else worker_slot(os.environ, number)
        )
    except (PluginLoadError, ServerSetupError) as exc:
        return fail(str(exc))
    if config.db is not None:
        db_error = check_db_folder(config.db, default=default_db)
        if db_error is not None:
            return fail(db_error)
    count = resolve_workers(config.workers)
    if number is None and count > 1:
        return supervise(config, count, argv)

    def announce(addresses: list[str]) -> None:
        print("trio-chat serving on " + "  ".join(addresses), flush=True)
        print("Stop with Ctrl-C.", flush=True)

    try:
        if number is None:
            trio.run(run_until_signal, server, announce)
        else:
            trio.run(run_worker, server, announce)
    except (OSError, StoreError, BaseExceptionGroup) as exc:
        store_error = first_error(exc, StoreError)
        if store_error is not None:
            return fail(str(store_error))
        error = first_error(exc, OSError)
        if error is None:
            raise
        if isinstance(error, ListenError):
            return fail(str(error))
        return fail(f"cannot listen on {config.host}: {error.strerror or error}")
    print("trio-chat stopped.", flush=True)
    return 0


async def run_worker(server: ChatServer, announce: Callable[[list[str]], None]) -> None:
    """:func:`run_until_signal` for a ``--workers`` worker, which also stops when its
    standard input (a pipe from the supervising parent) ends: when the parent is gone."""
    async with trio.open_nursery() as nursery:
        nursery.start_soon(stop_when_parent_goes, server)
        await run_until_signal(server, announce)
        nursery.cancel_scope.cancel()


async def stop_when_parent_goes(server: ChatServer) -> None:
    try:
        stream = trio.lowlevel.FdStream(os.dup(0))
    except OSError:
        return  # no standard input to watch
    async with stream:
        try:
            while await stream.receive_some(4096):
                pass
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
    logging.getLogger("trio_chat.workers").warning("the supervising process is gone; shutting down")
    server.shutdown()


def supervise(config: ServerConfig, count: int, argv: Sequence[str]) -> int:
    """Run ``count`` workers of this command line on shared ports (``--workers``)."""
    reserved = []
    try:
        try:
            reserved.append(reserve_port(config.host, config.port))
            if config.ws_port is not None:
                reserved.append(reserve_port(config.host, config.ws_port))
        except ListenError as exc:
            return fail(str(exc))
        ports = {"--port": reserved[0].getsockname()[1]}
        if config.ws_port is not None:
            ports["--ws-port"] = reserved[1].getsockname()[1]

        def announce(addresses: list[str]) -> None:
            print("trio-chat serving on " + "  ".join(addresses), flush=True)
            print(f"{count} workers. Stop with Ctrl-C.", flush=True)

        supervisor = Supervisor(
            worker_command(argv, ports),
            count,
            environ=os.environ,
            stop_timeout=config.shutdown_grace + STOP_MARGIN,
            announce=announce,
        )
        try:
            trio.run(supervisor.run)
        except GaveUp as exc:
            print(f"trio-chat: error: {exc}", file=sys.stderr)
            return 1
    finally:
        for sock in reserved:
            sock.close()
    print("trio-chat stopped.", flush=True)
    return 0


def cmd_plugins(args: argparse.Namespace) -> int:
    from .plugins import plugin_version

    try:
        server = ChatServer(ServerConfig(plugins=args.plugin))
    except PluginLoadError as exc:
        return fail(str(exc))
    for name, plugin in sorted(server.pm.list_name_plugin()):
        commands = [f"/{s.name}" for s in server.commands if s.plugin == name]
        print(
            f"{name} {plugin_version(server.pm, plugin)}: "
            + (" ".join(commands) if commands else "(no commands)")
        )
    return 0


def cmd_new_plugin(args: argparse.Namespace) -> int:
    from .scaffold import ScaffoldError, write_plugin

    try:
        folder = write_plugin(args.name, Path.cwd())
    except ScaffoldError as exc:
        return fail(str(exc))
    shown = f"./{folder.name}"
    print(f"wrote {shown}/, a trio-chat plugin with the command /{args.name}:")
    for path in sorted(p.relative_to(folder) for p in folder.rglob("*") if p.is_file()):
        print(f"  {path}")
    print(f"next: pip install '{shown}[test]' && python -m pytest {shown}")
    return 0


def cmd_connect(args: argparse.Namespace) -> int:
    from .client.main import run_client

    return run_client(
        args.host,
        args.port,
        args.nick,
        tls=args.tls,
        ca_file=args.ca,
        insecure=args.insecure,
        json_mode=args.json,
        reconnect=args.reconnect,
    )


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    try:
        if args.command == "serve":
            return cmd_serve(args, argv)
        if args.command == "plugins":
            return cmd_plugins(args)
        if args.command == "history":
            return cmd_history(args)
        if args.command == "example-config":
            sys.stdout.write(render_example_config(program_defaults()))
            return 0
        if args.command == "new-plugin":
            return cmd_new_plugin(args)
        return cmd_connect(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
