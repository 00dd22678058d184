"""``/remind 10m take the pizza out``: a reminder, told to you alone when it is due.

An example of a plugin that keeps data and works in the background: each reminder is a
value in the plugin's storage (``server.storage("remind")``, in the server's database), so
it survives a restart; a periodic job (the ``start_jobs`` hook) delivers the ones that are
due. Nothing is held in memory between the two, which is what makes a restart harmless.

Whose a reminder is, and so who may receive it:

* a user logged in to an account: the account's, wherever and whenever it is next online
  (a reminder due while its owner is away waits for them, up to :data:`KEEP_OVERDUE`);
* a guest: that session's alone. A guest's nick proves nothing after it disconnects (anyone
  may take it), so a guest's reminder is dropped if the session is gone when it is due,
  and every guest reminder is dropped after a restart.

Reminders are stored under keys that sort by due time (``due:<ms>:<id>``), so each pass
reads only the first few keys and stops at the first one not due yet.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from trio_chat import CommandContext, CommandError, hookimpl
from trio_chat.commands import RegisterCommand
from trio_chat.protocol import Info

if TYPE_CHECKING:
    from trio_chat.api import ServerAPI
    from trio_chat.hub import Session
    from trio_chat.jobs import Jobs

log = logging.getLogger("trio_chat_remind")

#: The storage namespace (also the plugin's entry-point name).
NAMESPACE = "remind"
USAGE = "DURATION TEXT"
#: Shortest and longest delay.
MIN_DELAY = 1
MAX_DELAY = 365 * 86400
MAX_TEXT = 400
#: Reminders one owner may have waiting, and the whole server.
MAX_PER_OWNER = 20
MAX_TOTAL = 10_000
#: How long a due reminder waits for its owner (an account away) before it is dropped.
KEEP_OVERDUE = 30 * 86400
#: Reminders read from storage at a time.
BATCH = 200

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"(?:[0-9]{1,6}[smhdw])+")
_PART = re.compile(r"([0-9]+)([smhdw])")


def parse_duration(text: str) -> int:
    """Seconds in ``10m``, ``1h30m``, ``2d``, ``90s`` (units s, m, h, d, w, any order and
    repeated: ``1h1h`` is two hours). :class:`ValueError` says why one is refused."""
    spec = text.strip().lower()
    if not _DURATION.fullmatch(spec):
        raise ValueError(f"{text!r} is not a duration: write it like 10m, 1h30m, 2d or 45s")
    seconds = sum(int(n) * _UNITS[unit] for n, unit in _PART.findall(spec))
    if not MIN_DELAY <= seconds <= MAX_DELAY:
        raise ValueError(f"a reminder is due in {MIN_DELAY} second to 365 days, not {text}")
    return seconds


def describe(seconds: float) -> str:
    """``3725`` -> ``1h2m``; whole seconds, largest units first."""
    left, parts = round(seconds), []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if left >= size:
            parts.append(f"{left // size}{unit}")
            left %= size
    return "".join(parts) or "0s"


def due_key(due: float, reminder_id: str) -> str:
    """A storage key that sorts by due time (milliseconds, zero-padded)."""
    return f"due:{round(due * 1000):015d}:{reminder_id}"


class Reminders:
    """The plugin: ``/remind``, and a job that delivers what is due.

    ``check_every`` is the job's period (seconds); ``clock`` the wall clock (seconds since
    the epoch: due times must mean the same after a restart), replaceable in tests.
    """

    def __init__(self, *, check_every: float = 1.0, clock: Callable[[], float] = time.time) -> None:
        self.check_every = check_every
        self.clock = clock
        #: Tells this run's guest reminders from an earlier run's (see the module's docs).
        self.run_id = uuid.uuid4().hex

    @hookimpl
    def register_commands(self, register: RegisterCommand) -> None:
        register(
            "remind",
            self.remind,
            help="Remind me of TEXT after DURATION (10m, 1h30m, 2d); kept across restarts",
            usage=USAGE,
        )

    @hookimpl
    def start_jobs(self, server: ServerAPI, jobs: Jobs) -> None:
        jobs.every(self.check_every, self.deliver_due, server, immediately=True)

    async def remind(self, ctx: CommandContext) -> str:
        when, _, text = ctx.args.partition(" ")
        text = text.strip()
        if not when or not text:
            raise ctx.usage_error()
        try:
            delay = parse_duration(when)
        except ValueError as exc:
            raise CommandError(str(exc), "bad_arguments") from None
        if len(text) > MAX_TEXT:
            raise CommandError(
                f"a reminder has at most {MAX_TEXT} characters, not {len(text)}", "bad_arguments"
            )
        owner = self.owner_of(ctx.session)
        storage = ctx.server.storage(NAMESPACE)
        waiting = await storage.items("due:", limit=MAX_TOTAL)
        if len(waiting) >= MAX_TOTAL:
            raise CommandError("this server holds too many reminders; try later")
        if sum(1 for _, r in waiting if _same_owner(r, owner)) >= MAX_PER_OWNER:
            raise CommandError(f"you have {MAX_PER_OWNER} reminders waiting already")
        now = self.clock()
        reminder = {"text": text, "room": ctx.room, "set_at": now, "due": now + delay, **owner}
        await storage.set(due_key(now + delay, uuid.uuid4().hex), reminder)
        return f"I will remind you in {describe(delay)}: {text}"

    def owner_of(self, session: Session) -> dict[str, Any]:
        """Who may receive a reminder ``session`` sets (see the module's docs)."""
        if session.account is not None:
            return {"account": session.account}
        return {"guest": session.nick, "run": self.run_id, "session": session.id}

    def recipient(self, server: ServerAPI, reminder: dict[str, Any]) -> Session | None:
        """The connected session that should receive ``reminder``, if any."""
        if "account" not in reminder and reminder.get("run") != self.run_id:
            return None  # a guest's from before a restart: session ids are counted anew
        for session in list(server.hub.sessions.values()):
            # With several processes (--broker) the hub lists other nodes' users too; what
            # is sent to them here would be lost, and the reminder deleted with it.
            if session.closed or not session.mailbox.delivers_here:
                continue
            if "account" in reminder:
                if session.account == reminder["account"]:
                    return session
            elif session.id == reminder.get("session") and session.account is None:
                return session
        return None

    async def deliver_due(self, server: ServerAPI) -> None:
        """One pass: tell each due reminder to its owner, or drop it if it can never be."""
        storage = server.storage(NAMESPACE)
        now = self.clock()
        after = None
        while True:
            page = await storage.items("due:", after=after, limit=BATCH)
            for key, reminder in page:
                if reminder["due"] > now:
                    return  # keys sort by due time: the rest are later still
                await self.deliver(server, key, reminder, now)
            if len(page) < BATCH:
                return
            after = page[-1][0]

    async def deliver(
        self, server: ServerAPI, key: str, reminder: dict[str, Any], now: float
    ) -> None:
        storage = server.storage(NAMESPACE)
        session = self.recipient(server, reminder)
        if session is None:
            if not self.may_wait(reminder, now):
                await storage.delete(key)
                log.info("reminder %s dropped: its owner is gone", key)
            return
        # Deleted first, told only by whoever deleted it: two passes at once (or a pass
        # cancelled at shutdown) never tell a reminder twice.
        if await storage.delete(key):
            server.hub.send_to(session, self.message(reminder, now))

    def may_wait(self, reminder: dict[str, Any], now: float) -> bool:
        """Whether a due reminder whose owner is not online now should be kept."""
        if "account" not in reminder:
            return False  # a guest's session is gone, or it is from an earlier run
        return bool(now - reminder["due"] < KEEP_OVERDUE)

    def message(self, reminder: dict[str, Any], now: float) -> Info:
        ago = describe(now - reminder["set_at"])
        return Info(
            text=f"reminder, set {ago} ago in {reminder['room']}: {reminder['text']}",
            data={"event": "reminder", "text": reminder["text"], "room": reminder["room"]},
        )


def _same_owner(reminder: dict[str, Any], owner: dict[str, Any]) -> bool:
    if "account" in owner:
        return bool(reminder.get("account") == owner["account"])
    return bool(reminder.get("session") == owner["session"] and reminder.get("run") == owner["run"])


#: The reminders the module-level hooks use (the entry point and ``--plugin``).
default_reminders = Reminders()


@hookimpl
def register_commands(register: RegisterCommand) -> None:
    """The module as a plugin: :data:`default_reminders` provides ``/remind``."""
    default_reminders.register_commands(register)


@hookimpl
def start_jobs(server: ServerAPI, jobs: Jobs) -> None:
    """The module as a plugin: :data:`default_reminders` delivers."""
    default_reminders.start_jobs(server, jobs)


__all__ = [
    "Reminders",
    "default_reminders",
    "describe",
    "parse_duration",
    "register_commands",
    "start_jobs",
]
