"""Post what a webhook sends to a room, as a bot: ``POST /hooks/webhook`` on the web port.

The example of an HTTP route (``register_routes``) and a bot user (``server.add_bot``):

* ``curl -H "X-Trio-Chat-Secret: $SECRET" -d 'deploy finished' http://HOST:12346/hooks/webhook``
  posts ``deploy finished`` to the default room as the bot ``hooks``; a JSON body
  ``{"text": "...", "room": "#dev"}`` (or ``?room=%23dev``) picks one of the allowed rooms;
* a GitHub (or Gitea, Forgejo) webhook pointed at the same URL, with the same secret,
  is recognised by its ``X-GitHub-Event`` header and its signature, and posts one line per
  event (``[owner/repo] alice pushed 2 commits to main: Fix the thing``).

Settings, in ``[plugin.webhook]`` of the server's config file: ``secret`` (required; or
the environment variable ``TRIO_CHAT_WEBHOOK_SECRET``; without one no route is added, and
the log says so), ``nick`` (default ``hooks``), ``room`` (default ``#lobby``), ``rooms``
(the rooms a request may name besides it; default none).

The plugin is a :class:`Webhook` instance; the module itself is a plugin too (what the
``trio_chat`` entry point and ``--plugin trio_chat_webhook`` load), delegating to
:data:`default_webhook`.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

import trio

from trio_chat import ChatError, hookimpl
from trio_chat.names import name_key, normalize_room
from trio_chat.routes import HTTPError, RegisterRoute, Request

if TYPE_CHECKING:
    from trio_chat.api import ServerAPI
    from trio_chat.bots import Bot

log = logging.getLogger("trio_chat_webhook")

#: The settings table (``[plugin.webhook]``) and the environment variable of the secret.
SETTINGS = "webhook"
SECRET_VARIABLE = "TRIO_CHAT_WEBHOOK_SECRET"
PATH = "/hooks/webhook"
#: Most lines one request may post (each is a message; the bot's rate applies too).
MAX_LINES = 10


class Webhook:
    """The route and its bot. ``ready`` is set once the bot is in its room (the first
    time: after a restart, requests are refused until the new bot is in, see :meth:`post`)."""

    def __init__(self) -> None:
        self.bot: Bot | None = None
        self.ready = trio.Event()
        self.room = "#lobby"
        self.rooms: set[str] = set()
        #: Whether the route was added (not without a secret: then no bot either).
        self.serving = False

    @hookimpl
    def register_routes(self, server: ServerAPI, register: RegisterRoute) -> None:
        settings = server.plugin_settings(SETTINGS)
        secret = settings.get("secret") or os.environ.get(SECRET_VARIABLE)
        if not secret:
            log.warning(
                "webhook: no secret (set secret in [plugin.webhook] or %s): %s is not served",
                SECRET_VARIABLE,
                PATH,
            )
            return
        self.room = normalize_room(settings.get("room", "#lobby"))
        self.rooms = {name_key(r) for r in [self.room, *settings.get("rooms", [])]}

        async def post(request: Request) -> dict[str, Any]:
            return await self.post(server, request)

        register("POST", PATH, post, secret=str(secret))
        self.serving = True

    @hookimpl
    async def server_started(self, server: ServerAPI) -> None:
        """Add the bot (again at every start: bots end with the server) and join its room."""
        if not self.serving:
            return
        nick = server.plugin_settings(SETTINGS).get("nick", "hooks")
        self.bot = await server.add_bot(nick, plugin=SETTINGS)
        await self.bot.join(self.room)
        self.ready.set()

    async def post(self, server: ServerAPI, request: Request) -> dict[str, Any]:
        """Post the request's line(s); the answer says where and how many."""
        bot = self.bot
        if bot is None or bot.removed or not self.ready.is_set():
            raise HTTPError(503, "the bot is not in the chat yet")
        text, room = self.read(request)
        if name_key(room) not in self.rooms:
            raise HTTPError(403, f"posting to {room} is not allowed")
        lines = [line for line in text.splitlines() if line.strip()]
        if not lines:
            return {"room": room, "posted": 0}
        if len(lines) > MAX_LINES:
            raise HTTPError(413, f"at most {MAX_LINES} lines per request")
        try:
            if name_key(room) not in {name_key(r) for r in bot.rooms}:
                await bot.join(room)
            bot.say(room, "\n".join(lines))
        except ChatError as exc:  # too fast, refused by a filter, a bad line...
            raise HTTPError(429 if exc.code == "flood" else 422, exc.text) from None
        return {"room": room, "posted": len(lines)}

    def read(self, request: Request) -> tuple[str, str]:
        """The text to post and the room, from a GitHub event, JSON or plain text."""
        room = request.query.get("room", self.room)
        event = request.headers.get("x-github-event")
        if event is not None:
            return github_line(event, request.json()), room
        if request.headers.get("content-type", "").startswith("application/json"):
            body = request.json()
            if not isinstance(body, dict) or not isinstance(body.get("text"), str):
                raise HTTPError(400, 'a JSON body is {"text": "...", "room": "#optional"}')
            room = body.get("room", room)
            if not isinstance(room, str):
                raise HTTPError(400, "room is a string")
            return body["text"], room
        return request.text, room


def github_line(event: str, payload: Any) -> str:
    """One line saying what a GitHub webhook event is about."""
    if not isinstance(payload, dict):
        raise HTTPError(400, "a GitHub event's body is a JSON object")
    repo = _get(payload, "repository", "full_name") or "?"
    who = _get(payload, "sender", "login") or "someone"
    if event == "ping":
        return f"[{repo}] webhook set up: {payload.get('zen', 'hello')}"
    if event == "push":
        commits = payload.get("commits") or []
        branch = str(payload.get("ref", "")).removeprefix("refs/heads/")
        first = _first_line(_get(payload, "head_commit", "message"))
        count = f"{len(commits)} commit{'s' if len(commits) != 1 else ''}"
        return f"[{repo}] {who} pushed {count} to {branch}" + (f": {first}" if first else "")
    for kind, noun in (("issues", "issue"), ("pull_request", "pull request")):
        if event == kind:
            item = payload.get("issue" if kind == "issues" else "pull_request") or {}
            action = payload.get("action", "updated")
            return (
                f"[{repo}] {who} {action} {noun} #{item.get('number', '?')}: "
                f"{_first_line(item.get('title'))} {item.get('html_url', '')}".rstrip()
            )
    return f"[{repo}] {who}: {event}"


def _get(payload: dict[str, Any], *keys: str) -> str | None:
    value: Any = payload
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    return value if isinstance(value, str) else None


def _first_line(text: object) -> str:
    return text.strip().splitlines()[0] if isinstance(text, str) and text.strip() else ""


#: The instance the module's own hooks use (entry point, ``--plugin trio_chat_webhook``).
default_webhook = Webhook()


@hookimpl
def register_routes(server: ServerAPI, register: RegisterRoute) -> None:
    default_webhook.register_routes(server, register)


@hookimpl
async def server_started(server: ServerAPI) -> None:
    await default_webhook.server_started(server)
