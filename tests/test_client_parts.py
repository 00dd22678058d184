"""The terminal client's parts that need no sockets: reconnect and gap-fill bookkeeping
(:mod:`trio_chat.client.resume`), typed lines (:mod:`~trio_chat.client.outbox`) and Tab
completion (:mod:`~trio_chat.client.completion`). Plain synchronous tests."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from trio.testing import memory_stream_pair

from trio_chat.client.completion import completions
from trio_chat.client.connection import TcpServerConnection
from trio_chat.client.outbox import MAX_QUEUED, Outbox, is_quit, new_room, parse_typed
from trio_chat.client.resume import (
    HOLD_TIMEOUT,
    Resume,
    RoomState,
    SeenIds,
    backoff_delay,
)
from trio_chat.client.shown import ShownMessages
from trio_chat.names import name_key
from trio_chat.protocol import (
    Command,
    History,
    Joined,
    Message,
    Ping,
    Quit,
    Say,
    ServerEvent,
)
from trio_chat.textmode import NICK_PROMPT

DEV = name_key("#dev")
LOBBY = name_key("#lobby")


def say(event_id: int, room: str = "#dev", nick: str = "bob") -> Message:
    return Message(id=event_id, ts=0.0, room=room, nick=nick, text=f"line {event_id}")


def page(room: str, *ids: int) -> History:
    return History(room=room, messages=[say(i, room).to_dict() for i in ids])


def ids(events: list[ServerEvent]) -> list[Any]:
    return [getattr(e, "id", type(e).__name__) for e in events]


# ------------------------------------------------------------------------------ back-off


def test_backoff_doubles_up_to_a_minute_with_jitter() -> None:
    rand = random.Random(7)
    for attempt in range(40):
        step = min(60.0, 2.0**attempt)
        assert step / 2 <= backoff_delay(attempt, rand) <= step
    assert backoff_delay(10_000, rand) <= 60.0  # no overflow however long it has been


# ------------------------------------------------------------------------- seen ids


def test_seen_ids_show_each_once_and_forget_the_oldest() -> None:
    seen = SeenIds(size=3)
    assert [seen.add(i) for i in (1, 2, 1, 3)] == [True, True, False, True]
    assert seen.add(4)  # 1 is forgotten now
    assert seen.add(1) and not seen.add(4)


# ---------------------------------------------------------------------------- resync


def rooms_with(**last_ids: int | None) -> dict[str, RoomState]:
    return {name_key("#" + n): RoomState("#" + n, last_id=i) for n, i in last_ids.items()}


def test_a_resync_holds_everything_then_shows_it_once_in_order_above_the_floor() -> None:
    resume = Resume()
    for i in (5, 6):
        resume.seen.add(i)
    rooms = rooms_with(lobby=None, dev=6)
    resume.start(rooms, "#dev", now=100.0)
    assert resume.deadline == 100.0 + HOLD_TIMEOUT
    assert resume.gaps(rooms, now=101.0) == [(DEV, 6)]
    live = [say(9), say(8)]
    join_history = page("#dev", 4, 5, 6, 7)  # overlaps what was shown, and the gap
    for event in [*live, join_history]:
        assert resume.holding(event)
        resume.held.append(event)
    resume.held += [say(7), say(8)]  # a gap page's messages, as the session adds them
    shown, ended = resume.release(f"gap:{DEV}", "alice")
    assert (shown, ended) == ([], False)  # the resync ping is still out
    shown, ended = resume.release("sync:resync", "alice")
    assert ended
    assert ids(shown) == [7, 8, 9]
    assert resume.missed == 3
    assert not resume.holds and not resume.floors and not resume.resyncing
    assert resume.deadline == float("inf")


def test_a_typed_join_holds_that_room_only_and_puts_its_history_after_the_join() -> None:
    resume = Resume()
    resume.hold(f"sync:{DEV}", now=0.0)
    assert not resume.holding(say(3, "#lobby"))
    join = Joined(id=10, ts=0.0, room="#dev", nick="alice")
    history = page("#dev", 2, 4)
    for event in (history, say(11), join):
        assert resume.holding(event)
        resume.held.append(event)
    shown, ended = resume.release(f"sync:{DEV}", "alice")
    assert not ended
    assert ids(shown) == [10, "History", 11]
    assert resume.missed == 0  # not a resync


def test_rejoins_go_current_last_and_leave_the_lobby_if_we_had() -> None:
    resume = Resume()
    rooms = rooms_with(dev=1, ops=2)
    resume.start(rooms, "#dev", now=0.0)
    assert resume.rejoins(rooms) == (True, [name_key("#ops"), DEV])
    resume.start(rooms_with(lobby=1, dev=2), "#lobby", now=0.0)
    assert resume.rejoins(rooms_with(lobby=1, dev=2)) == (False, [DEV, LOBBY])


def test_own_rejoin_lines_are_not_news_and_reset_forgets_the_holds() -> None:
    resume = Resume()
    resume.start(rooms_with(dev=1), "#dev", now=0.0)
    assert resume.is_own_rejoin(Joined(id=3, ts=0.0, room="#lobby", nick="al"), "al")
    assert not resume.is_own_rejoin(Joined(id=3, ts=0.0, room="#lobby", nick="bo"), "al")
    resume.held.append(say(2))
    resume.reset()
    assert not resume.holds and not resume.held and not resume.resyncing
    assert not resume.holding(say(4))


def test_flush_gives_up_waiting_and_shows_what_is_held() -> None:
    resume = Resume()
    resume.start(rooms_with(dev=1), "#dev", now=0.0)
    resume.held += [say(3), say(2), say(3)]
    shown, ended = resume.flush("alice")
    assert ended and ids(shown) == [2, 3]


# ---------------------------------------------------------------------------- outbox


def test_typed_lines_become_frames() -> None:
    assert parse_typed("hello", json_mode=False) == Say(text="hello")
    assert parse_typed('{"type":"quit"}', json_mode=True) == Quit()
    assert is_quit(Quit()) and is_quit(Command(name="quit"))
    assert not is_quit(Command(name="join", args="#dev"))
    assert new_room(Command(name="join", args="#Dev"), {LOBBY}) == DEV
    assert new_room(Command(name="join", args="#dev"), {DEV}) is None
    assert new_room(Command(name="join", args="#" + "x" * 40), set()) is None


def test_outbox_tags_account_commands_and_keeps_lines_while_offline() -> None:
    outbox = Outbox()
    tagged = outbox.tag(Command(name="login", args="ann s3cret"))
    assert isinstance(tagged, Command) and tagged.ref is not None
    assert outbox.pending_accounts[tagged.ref] == ("ann", "s3cret")
    assert outbox.tag(Command(name="who")) == Command(name="who")
    assert outbox.keep(Ping(token="x")) == "skipped"
    for _ in range(MAX_QUEUED):
        assert outbox.keep(Say(text="hi")) == "kept"
    assert outbox.keep(Say(text="one too many")) == "full"
    assert len(outbox.queued) == MAX_QUEUED


# ------------------------------------------------------------------------ completion


@dataclass
class Known:
    nick: str | None = "alice"
    room: str | None = "#dev"
    rooms: dict[str, RoomState] = field(default_factory=dict)
    commands: list[str] = field(default_factory=lambda: ["help", "join"])
    shown: ShownMessages = field(default_factory=ShownMessages)


def test_completion_needs_only_what_the_client_knows() -> None:
    known = Known(rooms={DEV: RoomState("#dev", members={"alice", "bob"})})
    assert completions(known, "/he") == (0, ["/help "])
    assert completions(known, "b") == (0, ["bob: "])
    assert completions(known, "x #") == (2, ["#dev "])
    assert completions(Known(room=None), "b") == (0, [])


async def test_the_text_prompt_before_a_late_opening_line_is_skipped() -> None:
    """Over a slow link the server may send the nickname prompt before the client's opening
    line arrived; it then serves JSON all the same, and the client reads past the prompt."""
    client_end, server_end = memory_stream_pair()
    connection = TcpServerConnection(client_end)
    await server_end.send_all(NICK_PROMPT.encode() + b"\n" + b'{"type":"pong","token":"t"}\n')
    event = await connection.receive()
    assert event is not None and event.TYPE == "pong"
