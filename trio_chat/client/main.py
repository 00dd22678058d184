"""The ``trio-chat connect`` program around a :class:`~.app.ChatClient`.

:func:`run_client` checks what the user asked for (HOST, TLS options) before anything
runs, then runs trio: the terminal is opened once (:mod:`.terminal`), Ctrl-C that arrives
as SIGINT cancels everything, and whatever made the client fail is printed as one line on
stderr after the prompt is gone, never as a traceback.
"""

from __future__ import annotations

import contextlib
import signal
import ssl
import threading
from collections.abc import AsyncIterator, Iterator

import trio

from .app import EXIT_INTERRUPTED, ChatClient
from .completion import completions
from .connection import BadTarget, Target, parse_target
from .render import colour_wanted
from .terminal import open_terminal, print_error, stdin_is_terminal, stdout_is_terminal
from .tls import TlsSetupError, client_ssl_context

INSECURE_WARNING = "warning: --insecure: the server's certificate is not checked"


async def connect_and_chat(
    target: Target,
    nick: str | None,
    interactive: bool,
    ssl_context: ssl.SSLContext | None = None,
    *,
    json_mode: bool = False,
    reconnect: bool = True,
) -> int:
    """Chat (reconnecting as needed); print any error as one line on stderr. Return exit
    status."""
    colour = colour_wanted(stdout_is_terminal())
    client: ChatClient | None = None

    def complete(text: str) -> tuple[int, list[str]]:
        return completions(client, text) if client is not None else (len(text), [])

    def page_up() -> None:
        if client is not None:
            client.older_history()

    def typed(text: str) -> None:
        if client is not None:
            client.typed(text)

    async with open_terminal(interactive and not json_mode, complete, page_up, typed) as terminal:
        client = ChatClient(
            target,
            terminal,
            nick,
            ssl_context=ssl_context,
            json_mode=json_mode,
            reconnect=reconnect,
            colour=colour,
        )
        code = await client.run()
    # Printed only now, after the prompt is gone, so it lands on the real stderr.
    if client.error is not None:
        print_error(client.error)
    return code


@contextlib.contextmanager
def _sigint_receiver() -> Iterator[AsyncIterator[int] | None]:
    # Trio can only listen for signals from the main thread; elsewhere leave SIGINT alone.
    if threading.current_thread() is not threading.main_thread():
        yield None
        return
    with trio.open_signal_receiver(signal.SIGINT) as signals:
        yield signals


async def _main(
    target: Target,
    nick: str | None,
    interactive: bool,
    ssl_context: ssl.SSLContext | None,
    json_mode: bool,
    reconnect: bool,
) -> int:
    code = EXIT_INTERRUPTED
    with _sigint_receiver() as signals:
        async with trio.open_nursery() as nursery:
            if signals is not None:
                # Ctrl-C while no prompt owns the terminal (connecting, piped input) arrives
                # as SIGINT: cancel everything, which closes the connection and the prompt.
                async def cancel_on_sigint() -> None:
                    async for _ in signals:
                        nursery.cancel_scope.cancel()
                        return

                nursery.start_soon(cancel_on_sigint)
            code = await connect_and_chat(
                target, nick, interactive, ssl_context, json_mode=json_mode, reconnect=reconnect
            )
            nursery.cancel_scope.cancel()
    return code


def run_client(
    host: str,
    port: int,
    nick: str | None,
    *,
    tls: bool = False,
    ca_file: str | None = None,
    insecure: bool = False,
    json_mode: bool = False,
    reconnect: bool = True,
) -> int:
    """Run the terminal client (``trio-chat connect HOST --port PORT --nick NICK``).

    ``host`` is a host name (TCP, JSON lines on ``port``; over TLS if ``tls``), a
    ``tls://host:port`` URL, or a ``ws://``/``wss://`` URL. TLS certificates are checked
    against the system's CAs plus ``ca_file``; ``insecure`` checks nothing (with a warning).
    ``nick`` ``None`` means: ask. ``json_mode`` prints the server's events as JSON lines;
    ``reconnect`` ``False`` ends the client with its connection. Returns the exit status.
    """
    try:
        target = parse_target(host, port, tls=tls)
        if (ca_file is not None or insecure) and not target.secure:
            option = "--insecure" if insecure else "--ca"
            raise BadTarget(f"{option} is for TLS: add --tls (or use tls:// or wss://)")
        if json_mode and nick is None:
            raise BadTarget("--json needs --nick")
        context = client_ssl_context(ca_file, insecure) if target.secure else None
    except (BadTarget, TlsSetupError) as exc:
        print_error(str(exc))
        return 2
    if insecure:
        print_error(INSECURE_WARNING)
    try:
        return trio.run(_main, target, nick, stdin_is_terminal(), context, json_mode, reconnect)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BaseExceptionGroup as group:
        _, rest = group.split(KeyboardInterrupt)
        if rest is None:
            return EXIT_INTERRUPTED
        raise
