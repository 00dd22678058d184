"""``trio-chat connect``: chat from a terminal, or from a script through stdin and stdout.

:func:`run_client` connects (:mod:`.connection`), opens the user's end (:mod:`.terminal`),
logs in, then runs two tasks side by side in one nursery: one shows every server event, one
sends every typed line. Whichever ends first ends the other:

* the user types ``/quit``, presses Ctrl-D or closes stdin: a quit is sent and the client
  waits (bounded) for the server's ``bye``, then exits 0;
* the server sends ``bye`` (shutdown, kicked, timeout): it is shown, exit 1;
* the connection drops: ``trio-chat: connection to server lost`` on stderr, exit 1;
* Ctrl-C: exit 130, quietly.

Errors a user can meet before that (bad URL, unknown host, connection refused, a port where
no chat server answers, a certificate that is not trusted) print one line on stderr and exit
non-zero (2 for a bad HOST argument or CA file, 1 otherwise), never a traceback.
"""

from __future__ import annotations

import contextlib
import signal
import ssl
import sys
import threading
from collections.abc import AsyncIterator, Iterator

import trio

from .. import __version__
from ..protocol import (
    Bye,
    Command,
    Error,
    Hello,
    History,
    Info,
    NickChanged,
    Pong,
    PongReply,
    Quit,
    RemoteProtocolError,
    ServerEvent,
    ServerPing,
    Welcome,
)
from ..textmode import NICK_PROMPT, parse_command_line, render_text
from .connection import (
    BadTarget,
    ConnectError,
    ConnectionLost,
    ServerConnection,
    Target,
    open_connection,
    parse_target,
)
from .terminal import InputEnd, Terminal, open_terminal, printable, stdin_is_terminal
from .tls import TlsSetupError, client_ssl_context

#: Seconds to wait for the server's ``bye`` after we said we quit.
QUIT_TIMEOUT = 3.0
#: Error codes that refuse a nickname: the user is asked for another one.
NICK_ERRORS = frozenset({"nick_taken", "bad_nick"})
#: Seconds the server has to answer the opening ping before we give up on it.
ANSWER_TIMEOUT = 10.0
LOST = "connection to server lost"
INSECURE_WARNING = "warning: --insecure: the server's certificate is not checked"
#: Exit status after Ctrl-C, as a shell reports a process killed by SIGINT.
EXIT_INTERRUPTED = 130


def event_lines(event: ServerEvent) -> str:
    """What to print for a server event: ``render_text``, made safe for a terminal."""
    text = render_text(event)
    if isinstance(event, Info | History):
        # render_text puts one line of the reply (or of the history) per line; anything else
        # is one line, and a newline inside it came from another user: show it, not obey it.
        return "\n".join(printable(line) for line in text.split("\n"))
    return printable(text)


class ChatClient:
    """One session over an open connection and terminal: log in, then chat.

    ``server`` names the server in messages (``host:port`` or the URL).
    """

    def __init__(
        self, connection: ServerConnection, terminal: Terminal, nick: str | None, server: str
    ) -> None:
        self.connection = connection
        self.terminal = terminal
        self.nick = nick
        #: The room plain lines go to (shown in the prompt).
        self.room: str | None = None
        self.server = server
        #: The user asked to leave (``/quit``, end of input, Ctrl-C).
        self.quitting = False
        self.interrupted = False
        #: The server's goodbye, if it sent one.
        self.bye: Bye | None = None
        #: Why the session failed, for one line on stderr (``None``: it did not fail).
        self.error: str | None = None
        self._welcomed = False
        self._receiver_done = trio.Event()
        # The receiver hands the input task each answer to a hello: Welcome or a nick error.
        self._answers_in, self._answers_out = trio.open_memory_channel[ServerEvent](4)

    async def run(self) -> int:
        """Chat until someone leaves; return the exit status."""
        async with trio.open_nursery() as nursery:

            async def receive_then_stop() -> None:
                await self._receive_events()
                nursery.cancel_scope.cancel()

            nursery.start_soon(receive_then_stop)
            try:
                await self._send_lines()
            except ConnectionLost:
                if self.bye is None and not self.quitting:
                    self.error = LOST
            else:
                # We said we quit: the server answers with bye and closes. Bounded wait.
                with trio.move_on_after(QUIT_TIMEOUT):
                    await self._receiver_done.wait()
            nursery.cancel_scope.cancel()
        if self.interrupted:
            return EXIT_INTERRUPTED
        if self.quitting and self.error is None:
            return 0
        return 1

    # ------------------------------------------------------------------------- input

    def _prompt(self) -> str:
        """``nick #room> ``: who you are and where plain lines go."""
        return f"{self.nick} {self.room}> " if self.room else f"{self.nick}> "

    async def _send_lines(self) -> None:
        """Log in, then send every typed line until the user quits."""
        if not await self._log_in():
            return
        while True:
            line = await self.terminal.read_line(self._prompt)
            if isinstance(line, InputEnd):
                await self._quit(line)
                return
            try:
                frame = parse_command_line(line)
            except RemoteProtocolError as exc:
                self.terminal.show(f"!! {exc.message}")
                continue
            if frame is None:
                continue
            if isinstance(frame, Command) and frame.name == "quit":
                self.quitting = True
            await self.connection.send(frame)
            if self.quitting:
                return

    async def _log_in(self) -> bool:
        """Send hello until the server welcomes us; ``False`` if the user gave up."""
        while True:
            if self.nick is None:
                if not self.terminal.interactive:
                    self.terminal.show(NICK_PROMPT)
                answer = await self.terminal.read_line(lambda: "Nickname: ")
                if isinstance(answer, InputEnd):
                    await self._quit(answer)
                    return False
                if not answer.strip():
                    continue
                self.nick = answer.strip()
            await self.connection.send(Hello(nick=self.nick, client=f"trio-chat/{__version__}"))
            reply = await self._answers_out.receive()
            if isinstance(reply, Welcome):
                self.nick = reply.nick
                return True
            self.nick = None  # refused; the receiver has shown why

    async def _quit(self, why: InputEnd) -> None:
        self.quitting = True
        self.interrupted = why is InputEnd.INTERRUPT
        await self.connection.send(Quit(reason="interrupted" if self.interrupted else None))

    # ------------------------------------------------------------------------ output

    async def _receive_events(self) -> None:
        """Show every server event until ``bye`` or the end of the connection."""
        try:
            # open_connection opened with a ping: a chat server answers at once.
            with trio.move_on_after(ANSWER_TIMEOUT) as waiting:
                event = await self.connection.receive()
            if waiting.cancelled_caught:
                self.error = f"no answer from {self.server} (is it a trio-chat server?)"
                return
            if isinstance(event, RemoteProtocolError):
                if event.code == "tls_required":
                    self.error = f"{self.server} speaks TLS: connect with --tls"
                else:
                    self.error = f"{self.server} does not speak the trio-chat protocol"
                return
            while True:
                if isinstance(event, ServerPing):
                    # The server checks that we are still here; this is not for the screen.
                    with contextlib.suppress(ConnectionLost):
                        await self.connection.send(PongReply(token=event.token))
                elif not self._handle(event):
                    break
                event = await self.connection.receive()
        finally:
            self._receiver_done.set()

    def _handle(self, event: ServerEvent | RemoteProtocolError | None) -> bool:
        """Show one event; ``False`` once the session is over."""
        if event is None:
            if not self.quitting:
                self.error = LOST
            return False
        if isinstance(event, RemoteProtocolError):
            self.terminal.show(printable(f"!! {event.message}"))
            return True
        if not self._welcomed and isinstance(event, Pong):
            return True  # the answer to the opening ping
        if isinstance(event, NickChanged) and event.old == self.nick:
            self.nick = event.new
        elif isinstance(event, Welcome):
            self.room = event.room
        elif (
            isinstance(event, Info)
            and isinstance(event.data, dict)
            and ("topic" in event.data or "left" in event.data)
        ):
            # /join answers {"room", "topic"}, /part {"room", "left"}: "room" is now current.
            self.room = str(event.data.get("room") or "") or None
        self.terminal.show(event_lines(event))
        if isinstance(event, Bye):
            self.bye = event
            return False
        if not self._welcomed and (
            isinstance(event, Welcome) or (isinstance(event, Error) and event.code in NICK_ERRORS)
        ):
            # Handed over after being shown, so "nick taken" comes before the next prompt.
            self._welcomed = isinstance(event, Welcome)
            with contextlib.suppress(trio.WouldBlock):  # only a broken server sends a flood
                self._answers_in.send_nowait(event)
        return True


async def connect_and_chat(
    target: Target,
    nick: str | None,
    interactive: bool,
    ssl_context: ssl.SSLContext | None = None,
) -> int:
    """Connect, chat, clean up; print any error as one line on stderr. Return exit status."""
    try:
        async with open_connection(target, ssl_context) as connection:
            async with open_terminal(interactive) as terminal:
                client = ChatClient(connection, terminal, nick, target.display)
                code = await client.run()
            error = client.error
    except ConnectError as exc:
        code, error = 1, str(exc)
    except ConnectionLost:
        code, error = 1, LOST
    # Printed only now, after the prompt is gone, so it lands on the real stderr.
    if error is not None:
        _print_error(error)
    return code


def _print_error(message: str) -> None:
    print(f"trio-chat: {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def _sigint_receiver() -> Iterator[AsyncIterator[int] | None]:
    # Trio can only listen for signals from the main thread; elsewhere leave SIGINT alone.
    if threading.current_thread() is not threading.main_thread():
        yield None
        return
    with trio.open_signal_receiver(signal.SIGINT) as signals:
        yield signals


async def _main(
    target: Target, nick: str | None, interactive: bool, ssl_context: ssl.SSLContext | None
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
            code = await connect_and_chat(target, nick, interactive, ssl_context)
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
) -> int:
    """Run the terminal client (``trio-chat connect HOST --port PORT --nick NICK``).

    ``host`` is a host name (TCP, JSON lines on ``port``; over TLS if ``tls``), a
    ``tls://host:port`` URL, or a ``ws://``/``wss://`` URL. TLS certificates are checked
    against the system's CAs plus ``ca_file``; ``insecure`` checks nothing (with a warning).
    ``nick`` ``None`` means: ask. Returns the process exit status.
    """
    try:
        target = parse_target(host, port, tls=tls)
        if (ca_file is not None or insecure) and not target.secure:
            option = "--insecure" if insecure else "--ca"
            raise BadTarget(f"{option} is for TLS: add --tls (or use tls:// or wss://)")
        context = client_ssl_context(ca_file, insecure) if target.secure else None
    except (BadTarget, TlsSetupError) as exc:
        _print_error(str(exc))
        return 2
    if insecure:
        _print_error(INSECURE_WARNING)
    try:
        return trio.run(_main, target, nick, stdin_is_terminal(), context)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BaseExceptionGroup as group:
        _, rest = group.split(KeyboardInterrupt)
        if rest is None:
            return EXIT_INTERRUPTED
        raise
