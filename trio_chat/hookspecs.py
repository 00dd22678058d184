"""The plugin API of trio-chat: every hook a plugin can implement.

This module is the reference for plugin authors. A plugin is any module or object with
functions marked ``@trio_chat.hookimpl`` whose names match the hooks below; pluggy checks the
names and arguments when the plugin is loaded. The built-in commands (``/nick``, ``/who``,
``/help``, ...) are plugins on exactly these hooks (see :mod:`trio_chat.builtins`).

Plugins are found three ways: installed packages with an entry point in the ``trio_chat``
group, ``trio-chat serve --plugin module.name`` (or a path to a ``.py`` file), and
``ChatServer.add_plugin(obj)`` at run time.

Every hook is called through pluggy's caller (``pm.hook.NAME(...)``), so the markers pluggy
documents work: ``@hookimpl(tryfirst=True)``, ``trylast`` and ``wrapper=True`` (a generator
that runs around the other implementations: ``result = yield`` gives their results, and
what it returns replaces them). ``register_commands`` is historic, so it takes no wrappers.

Hooks are called synchronously. Where a hook's docs say so, an implementation may instead be
``async def`` (or return an awaitable): the server then awaits it, bounded by the server's
plugin timeout, without holding up other users.

How errors are contained. pluggy stops a hook call at the first exception; one broken
plugin must not silence the others, nor stop the server, so the plugin manager (see
:class:`trio_chat.plugins.ChatPluginManager`) calls each plain implementation of
``register_commands``, ``server_started``, ``user_joined``, ``user_left``, ``start_jobs``,
``message_posted``, ``bot_messaged`` and ``register_routes`` on its own terms: whatever it
raises is logged with the plugin's name and counts as ``None``, and the others still run.
An exception from a ``wrapper=True`` implementation of those hooks is logged too.
``filter_message`` is the exception to the rule: a filter that raises refuses the message
(a broken filter fails closed, never lets through what it should have stopped); so are the
auth backends (``authenticate``, ``is_account``): one that fails refuses the login.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from .api import ServerAPI
    from .bots import Bot
    from .commands import RegisterCommand
    from .hub import Session
    from .jobs import Jobs
    from .protocol import Message, Private
    from .routes import RegisterRoute

#: The project name pluggy uses to match hook implementations to these specs.
PROJECT_NAME = "trio_chat"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec(historic=True)
def register_commands(register: RegisterCommand) -> None:
    """Add slash-commands.

    Call ``register(name, handler, help="one line", usage="ARGS")`` once per command.
    ``name`` is the command without the slash (lower case letters, digits, ``-`` and ``_``);
    ``help`` is the one line ``/help`` shows; ``usage`` describes the arguments.

    ``handler(ctx)`` receives a :class:`trio_chat.commands.CommandContext` (``ctx.args``,
    ``ctx.nick``, ``ctx.room``, ``ctx.reply(text)``, ``ctx.say(text)``, ``ctx.action(text)``,
    ``ctx.fail(text)``). It may be a plain function or ``async def``; if it returns a string,
    that string is sent back to the caller as a reply. Whatever it raises is turned into an
    error for the caller alone, and the server log names the plugin.

    Two rules may follow, checked by the server before the handler runs (and shown by
    ``/help``): ``allowed="operators"`` (of the room the command is run in) or
    ``allowed="admins"`` (server administrators; default ``"everyone"``), refusing others
    with ``not_allowed``; and ``rate=(count, seconds)``, at most ``count`` uses by one user
    (an account, or a guest's address) in any ``seconds``, refusing the next with
    ``rate_limited``.

    Registering a name that another plugin already took is refused with a logged error, so
    two plugins can never silently shadow each other. Historic (pluggy's ``call_historic``):
    called once per plugin, when the plugin is added, whether before the server starts or
    while it runs; so it cannot have a ``wrapper=True`` implementation. It must be a plain
    function: an ``async def`` one is refused with a logged error (nothing could await it).
    """


@hookspec
def filter_message(session: Session, room: str, text: str) -> str | None:
    """Inspect, change or refuse a chat line before it is fanned out.

    Called for every ``say`` (and ``/me``, a reply, and the new text of an ``edit``) with
    the sender's session, the room and the text.
    Return ``None`` to leave the text unchanged, a new string to replace it, or raise
    :class:`trio_chat.commands.CommandError` to refuse it: the sender gets that error and
    nobody sees the line. Filters run in order (last registered first), each seeing the text
    the previous one returned. Must be synchronous: it is on the path of every message.

    A ``wrapper=True`` filter gets the text before the others run and, from ``yield``, the
    list of texts they returned (the final text last; empty if none changed it); it returns
    that list, or one with another text appended to change the message. Any other exception
    than ``CommandError`` refuses the message too, with ``plugin_error``, and is logged.
    """


@hookspec
def user_joined(server: ServerAPI, session: Session, room: str) -> Any:
    """Called after ``session`` joined ``room`` and the room was told.

    For greeters, logs and bots. May be ``async def``; it then runs in the background, bounded
    by the plugin timeout, and never delays the join itself. Errors are logged, not raised.
    """


@hookspec
def user_left(server: ServerAPI, session: Session, room: str, reason: str | None) -> Any:
    """Called after ``session`` left ``room`` (parted, quit, was disconnected or vanished).

    Same rules as :func:`user_joined`.
    """


@hookspec
def server_started(server: ServerAPI, addresses: list[str]) -> None:
    """Called once the server listens, with the addresses it bound (``tcp://``, ``ws://``).

    Errors are logged, not raised: a plugin cannot stop the server from serving.
    """


@hookspec
def start_jobs(server: ServerAPI, jobs: Jobs) -> None:
    """Start background work that lives as long as the server: ``jobs.every(60, check)``
    runs ``check()`` every minute, ``jobs.start_soon(follow_feed, server)`` runs a task of
    the plugin's own until the server stops.

    Called once the server is serving, before it accepts connections (for a plugin added
    while it serves: when it is added), with the server's :class:`trio_chat.jobs.Jobs`.
    Job functions may be plain or ``async def``; they get the arguments given after the
    function. A periodic run is bounded by the plugin timeout (``timeout=`` to change it)
    and cancelled past it; one that raises or times out is logged (once a minute while it
    keeps failing), and the job keeps its schedule (runs never overlap; times missed are
    skipped). A ``start_soon`` task that raises is logged and ends alone.
    ``every(..., immediately=True)`` runs the first time at once instead of after one
    period.

    At shutdown (and when the plugin is removed) every job is cancelled, before users are
    told goodbye and before storage closes; write jobs ``async`` so that cancellation can
    reach them: blocking work belongs in ``trio.to_thread.run_sync(...,
    abandon_on_cancel=True)``. Must be a plain ``def`` (it only starts things: an
    ``async def`` one is refused, and logged); errors are logged, not raised.
    """


@hookspec
def message_posted(server: ServerAPI, message: Message, session: Session) -> Any:
    """Called for every chat line said in a room of this server, once it was delivered.

    ``message`` is the ``message`` event everyone in ``message.room`` got (``id``, ``ts``,
    ``room``, ``nick``, ``text``, ``kind``: ``"say"``, ``"action"`` or ``"notice"``), after
    the message filters (``@on_message`` triggers skip notices; a listener here sees them);
    ``session`` is who said it (a person, or a plugin's bot: ``session.bot``).
    Private messages and lines refused by a filter are not posted. With several
    processes (``--broker``), a line is posted on the process where it was said, so a
    plugin running on every process answers it once.

    For loggers, bots and triggers (see :func:`trio_chat.on_message`, which is built on
    this hook). It is called after the line went out, from a task of its own, in the order
    of the lines: it never delays delivery, and a listener that falls more than a thousand
    lines behind misses lines (logged). A plain function runs on the server's thread:
    keep it quick. ``async def`` (or returning an awaitable) runs in the background,
    bounded by the plugin timeout; at most a hundred such calls run at once, and past that
    the newest are skipped (logged). Errors are logged, not raised. A listener that answers
    with a bot sees that answer posted too (``session.bot`` is true): mind the loop.
    """


@hookspec
def bot_messaged(server: ServerAPI, bot: Bot, message: Private, session: Session) -> Any:
    """Called for every private message someone sends to a plugin's bot (``/msg robot hi``).

    ``bot`` is the :class:`~trio_chat.bots.Bot` it was sent to (``bot.plugin`` says whose;
    answer with ``bot.tell(session.nick, text)``), ``message`` the ``private`` event
    (``nick``: the sender, ``to``: the bot, ``text``) and ``session`` the sender. The
    bot's own messages are not. With several processes (``--broker``), it is called on
    the process whose plugin added the bot. Triggers hear these with
    ``on_message(..., bot=NICK, private=True)``.

    Called as :func:`message_posted` is: after delivery, from a task of its own, in order;
    ``async def`` runs in the background, bounded by the plugin timeout; errors are
    logged, not raised.
    """


@hookspec(historic=True)
def register_routes(server: ServerAPI, register: RegisterRoute) -> None:
    """Add HTTP routes to the web port (the WebSocket port, beside the browser page).

    Call ``register(method, path, handler, secret=SECRET)`` once per route: ``method`` is
    ``GET``, ``POST``, ``PUT``, ``PATCH`` or ``DELETE`` (a ``GET`` route answers ``HEAD``
    too); ``path`` is exact, ``/`` and segments of letters, digits and ``-._~``
    (``/hooks/github``); the page's own paths cannot be taken. ``secret`` is required:
    a string the caller must prove it knows, or ``None`` for a public route.
    ``max_body`` (bytes, default 65536, at most 1 MiB) limits the request body: past it
    the caller gets 413 and the handler is not called.

    A caller proves the secret with ``X-Hub-Signature-256: sha256=HEX`` (the HMAC-SHA256
    of the body keyed with the secret, as GitHub, Gitea and Forgejo send it) or with the
    secret itself in ``X-Trio-Chat-Secret`` (for ``curl``); otherwise 403.

    ``handler(request)`` gets a :class:`trio_chat.routes.Request` (``method``, ``path``,
    ``query``, ``headers`` with lower-case names, ``body``, ``text``, ``json()``,
    ``client``) and returns a :class:`trio_chat.routes.Response`, a ``str`` (200, plain
    text), a ``dict`` or ``list`` (200, JSON) or ``None`` (204). It may be ``async def``,
    bounded by the plugin timeout (then 504). ``raise trio_chat.routes.HTTPError(400,
    "why")`` answers with that status and text; anything else it raises, or returns, is a
    500 with a plain body, and the server log names the plugin. It runs in the request's
    own task: a slow handler delays nobody else.

    ``server`` is the :class:`trio_chat.api.ServerAPI` (read the secret from
    ``server.plugin_settings(name)``). A bad route (path, method, a path or method another
    plugin took, an empty secret) is refused with a logged error. Historic, like
    :func:`register_commands`.
    """


@hookspec(firstresult=True)
def authenticate(server: ServerAPI, nick: str, password: str, address: str) -> Any:
    """Check a login (``hello`` with a password, ``/login NICK PASSWORD``): an auth backend.

    Return ``True`` to let ``nick`` in (logged in to the account ``nick``, as if it were
    registered here), ``False`` to refuse (``login_failed``), or ``None`` to leave it to
    the next backend and then to the built-in accounts: return ``None`` for every nick
    that is not yours. The first ``True`` or ``False`` wins. Backends are asked before the
    built-in accounts, and work without a database too. ``address`` is the client's
    ``host:port``.

    May be ``async def`` (the place for a network call, or ``trio.to_thread`` for a slow
    hash), bounded by the plugin timeout. A backend that raises, times out or returns
    something else than ``True``, ``False`` or ``None`` refuses the login with
    ``store_error`` and is logged: a broken backend lets nobody in. Guesses are throttled
    as for the built-in accounts. Cannot be ``wrapper=True``.

    Pair it with :func:`is_account`, so that guests cannot take your users' nicks.
    """


@hookspec(firstresult=True)
def is_account(server: ServerAPI, nick: str) -> Any:
    """Say whether ``nick`` is one of your backend's users: ``True`` (guests may not take
    it, ``/nick`` to it is refused, and nobody may ``/register`` it), ``False`` (not an
    account, whatever the built-in accounts say), or ``None`` (not yours: ask the next
    backend, then the built-in accounts).

    Same rules as :func:`authenticate`: may be ``async def``, bounded by the plugin
    timeout; a failure refuses what was asked with ``store_error``.
    """
