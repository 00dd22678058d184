"""The user's end: read typed lines, show server lines, for a person or for a script.

On a terminal, :class:`PromptTerminal` runs a prompt_toolkit prompt in a worker thread under
``patch_stdout(raw=True)``, so a line arriving from the server is printed *above* the prompt
and the half-typed line stays intact. With piped stdin (a test, a script),
:class:`PipeTerminal` reads lines from stdin with a trio stream and prints plain lines.
:func:`open_terminal` picks one and guarantees the prompt thread has ended when it returns.
"""

from __future__ import annotations

import contextlib
import enum
import os
import sys
import threading
import unicodedata
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Protocol

import trio

from ..framing import EOF, NEED_DATA, LineBuffer, LineTooLong

if TYPE_CHECKING:
    from prompt_toolkit import PromptSession
    from prompt_toolkit.completion import CompleteEvent, Completer
    from prompt_toolkit.document import Document

#: Longest line read from piped stdin; longer lines are dropped with a notice.
MAX_INPUT_BYTES = 64 * 1024


class InputEnd(enum.Enum):
    """Why :meth:`Terminal.read_line` returned no line."""

    #: stdin closed, or Ctrl-D at the prompt, or the terminal is being shut down.
    EOF = "eof"
    #: Ctrl-C at the prompt.
    INTERRUPT = "interrupt"


class Terminal(Protocol):
    """What the chat loop needs from the user's side."""

    #: True for a person at a prompt; False for piped input.
    interactive: bool

    async def read_line(self, prompt: Callable[[], str], *, secret: bool = False) -> str | InputEnd:
        """The next typed line (without newline), or why there is none; ``secret`` hides
        what is typed (a password)."""
        ...

    def show(self, text: str) -> None:
        """Print one line (``text`` may hold newlines only between lines)."""
        ...

    #: True when :meth:`set_status` shows something (a status line under the prompt).
    has_status: bool

    def set_status(self, text: str) -> None:
        """Show ``text`` in the status line (``""``: none), if there is one."""
        ...


def printable(text: str) -> str:
    """``text`` made safe for a terminal: control characters shown, never obeyed.

    A chat line may hold anything but NUL; an ESC sequence would otherwise move the cursor
    or retitle the window, and a bare newline could forge a line from someone else.
    """
    if text.isprintable():
        return text
    out = []
    for ch in text:
        if ch == "\t" or ch.isprintable():
            out.append(ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append("^" + chr(ord(ch) ^ 0x40))
        elif unicodedata.category(ch) in ("Cc", "Zl", "Zp") or ch in _BIDI_CONTROLS:
            out.append(f"<U+{ord(ch):04X}>")
        else:
            out.append(ch)  # other unprintables (e.g. unassigned) do not drive the terminal
    return "".join(out)


#: Bidirectional overrides and isolates, which can make a line read as something else.
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


class PipeTerminal:
    """Lines from a byte stream (stdin), plain lines to stdout, flushed each time."""

    interactive = False
    #: Piped output has no status line: what would be there is not shown at all.
    has_status = False

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self.stream = stream
        self._lines = LineBuffer(MAX_INPUT_BYTES)
        self._output_closed = False

    async def read_line(self, prompt: Callable[[], str], *, secret: bool = False) -> str | InputEnd:
        while True:
            event = self._lines.next_event()
            if event is NEED_DATA:
                try:
                    data = await self.stream.receive_some(MAX_INPUT_BYTES)
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                    return InputEnd.EOF
                self._lines.feed(data)
                continue
            if event is EOF:
                return InputEnd.EOF
            if isinstance(event, LineTooLong):
                self.show(f"!! input line longer than {event.limit} bytes was dropped")
                continue
            assert isinstance(event, bytes)
            return event.decode("utf-8", errors="replace")

    def set_status(self, text: str) -> None:
        pass

    def show(self, text: str) -> None:
        if self._output_closed:
            return
        try:
            print(text, flush=True)
        except BrokenPipeError:
            # Whoever read our output is gone (`| head`): keep chatting, stop printing.
            self._output_closed = True
            _silence_stdout()


def _silence_stdout() -> None:
    # Python would report the broken pipe again when it flushes stdout at exit.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


class PromptTerminal:
    """A prompt_toolkit prompt, each ``prompt()`` call in a trio worker thread.

    The thread blocks in ``PromptSession.prompt`` until the user presses Enter. To end it
    early (the server went away, Ctrl-C, the session is over), :meth:`_stop` asks the
    prompt's own event loop to exit the application; ``pre_run`` closes the race where the
    stop request comes before that loop is running. Worker threads are never abandoned:
    every :meth:`read_line` returns only after its thread has returned. A cancelled read
    stops the terminal for good: later reads return :attr:`InputEnd.EOF` at once.
    """

    interactive = True
    has_status = True

    def __init__(
        self,
        session: PromptSession[str] | None = None,
        complete: Completions | None = None,
        page_up: Callable[[], None] | None = None,
        typed: Callable[[str], None] | None = None,
    ) -> None:
        from prompt_toolkit import PromptSession
        from prompt_toolkit.buffer import Buffer
        from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent

        bindings = KeyBindings()
        self._token: trio.lowlevel.TrioToken | None = None

        @bindings.add("pageup")
        def _(event: KeyPressEvent) -> None:
            # In the prompt's thread: hand it to trio; the line being typed stays.
            if page_up is not None and self._token is not None:
                with contextlib.suppress(trio.RunFinishedError):
                    trio.from_thread.run_sync(page_up, trio_token=self._token)

        #: Tests pass a session on a pipe input and a dummy output.
        self.session: PromptSession[str] = session or PromptSession(
            # The line goes away on Enter: the server's echo shows it, once.
            erase_when_done=True,
            completer=_Completer(complete) if complete is not None else None,
            complete_while_typing=False,  # Tab completes; typing stays quiet
            reserve_space_for_menu=0,
            key_bindings=bindings,
        )
        if typed is not None:

            def text_changed(buffer: Buffer) -> None:
                # In the prompt's thread, on every key: hand the text to trio without
                # waiting for it (typing must not lag).
                if self._token is not None:
                    with contextlib.suppress(trio.RunFinishedError):
                        self._token.run_sync_soon(typed, buffer.text)

            self.session.default_buffer.on_text_changed += text_changed
        self._status = ""
        self._lock = threading.Lock()
        self._stopped = False  # once set, no prompt runs any more
        self._running = False  # a prompt's application is running in the worker thread

    async def read_line(self, prompt: Callable[[], str], *, secret: bool = False) -> str | InputEnd:
        if self._stopped:
            return InputEnd.EOF
        self._token = trio.lowlevel.current_trio_token()
        finished = False

        async def stop_when_cancelled() -> None:
            try:
                await trio.sleep_forever()
            finally:
                if not finished:
                    self._stop()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(stop_when_cancelled)
            # Not abandon_on_cancel: a cancelled read waits for the prompt to exit (which
            # stop_when_cancelled makes it do at once), so no thread outlives trio.run.
            result = await trio.to_thread.run_sync(
                self._prompt_in_thread, prompt, secret, thread_name="trio-chat prompt"
            )
            finished = True
            nursery.cancel_scope.cancel()
        return result

    def _prompt_in_thread(self, prompt: Callable[[], str], secret: bool) -> str | InputEnd:
        def pre_run() -> None:
            with self._lock:
                self._running = True
                if self._stopped:
                    self._exit_app()

        try:
            return self.session.prompt(prompt, pre_run=pre_run, is_password=secret)
        except EOFError:
            return InputEnd.EOF
        except KeyboardInterrupt:
            return InputEnd.INTERRUPT
        finally:
            with self._lock:
                self._running = False

    def _stop(self) -> None:
        """From the trio thread: end the running prompt, if any, and every later one."""
        with self._lock:
            self._stopped = True
            loop = self.session.app.loop
            if not self._running or loop is None:
                return  # not started yet (pre_run will see _stopped) or already over
            # RuntimeError: the loop has just closed, so the prompt is returning anyway.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._exit_app)

    def _exit_app(self) -> None:
        """In the prompt's thread: make ``prompt()`` raise EOFError, unless it is done."""
        app = self.session.app
        if app.future is not None and not app.future.done():
            app.exit(exception=EOFError())

    def show(self, text: str) -> None:
        # sys.stdout is patch_stdout's proxy here: it prints above the prompt line.
        print(text, flush=True)

    def set_status(self, text: str) -> None:
        """A toolbar line under the prompt while ``text`` is not empty (prompt_toolkit
        shows a bottom toolbar whenever the session has one)."""
        if text == self._status:
            return
        self._status = text
        # The prompt's thread reads these when it redraws; each assignment is atomic.
        self.session.bottom_toolbar = self._status_line if text else None
        with self._lock:
            loop = self.session.app.loop
            if self._running and loop is not None:
                with contextlib.suppress(RuntimeError):  # the loop has just closed
                    loop.call_soon_threadsafe(self.session.app.invalidate)

    def _status_line(self) -> str:
        return " " + self._status

    def close(self) -> None:
        with self._lock:
            self._stopped = True


def stdin_is_terminal() -> bool:
    """Use the interactive prompt only when both ends are a terminal."""
    try:
        return sys.stdin.isatty() and sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False


def stdout_is_terminal() -> bool:
    """Whether stdout is a terminal (colour is for terminals only)."""
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False


def print_error(message: str) -> None:
    """One line of the program's own on stderr, ``trio-chat: ...``."""
    print(f"trio-chat: {message}", file=sys.stderr, flush=True)


#: Tab completion: given the text before the cursor, where the word being completed starts
#: and what it may become.
Completions = Callable[[str], tuple[int, list[str]]]


def _Completer(complete: Completions) -> Completer:
    """A prompt_toolkit completer that asks ``complete`` (from the prompt's thread)."""
    from prompt_toolkit.completion import Completer, Completion

    class ChatCompleter(Completer):
        def get_completions(
            self, document: Document, complete_event: CompleteEvent
        ) -> Iterator[Completion]:
            before = document.text_before_cursor
            start, words = complete(before)
            for word in words:
                yield Completion(word, start_position=start - len(before))

    return ChatCompleter()


@asynccontextmanager
async def open_terminal(
    interactive: bool,
    complete: Completions | None = None,
    page_up: Callable[[], None] | None = None,
    typed: Callable[[str], None] | None = None,
) -> AsyncIterator[Terminal]:
    """The prompt (``interactive``) or a stdin line reader, torn down when the block ends.

    ``complete`` gives the prompt's Tab completions; ``page_up`` is called (in trio) when
    PageUp is pressed, ``typed`` with the prompt's text each time it changes.
    """
    if interactive:
        from prompt_toolkit.patch_stdout import patch_stdout

        terminal = PromptTerminal(complete=complete, page_up=page_up, typed=typed)
        try:
            with patch_stdout(raw=True):
                yield terminal
        finally:
            terminal.close()
        return
    # A duplicate of fd 0, so closing the stream leaves sys.stdin alone; FdStream puts it in
    # non-blocking mode and restores the original mode when closed.
    async with trio.lowlevel.FdStream(os.dup(sys.stdin.fileno())) as stream:
        yield PipeTerminal(stream)
