"""A gap-fill (``history`` ``after`` an id) answered from a room's latest lines in memory
(``RecentLines.after``) when they hold the whole gap, and from the store when they do not:
the same exact pages either way, over real sockets; and the pure rules of when the lines
can tell.
"""

from __future__ import annotations

from typing import Any

import trio

from trio_chat.protocol import Message
from trio_chat.recent import RecentLines
from trio_chat.testing import ChatClient, TestServer, local_config, open_client, open_test_server


def line(n: int) -> Message:
    return Message(id=n, ts=float(n), room="#r", nick="a", text=f"m{n}")


def ids(page: list[dict[str, Any]] | None) -> list[int] | None:
    return None if page is None else [m["id"] for m in page]


def test_lines_answer_a_gap_that_starts_within_them_and_only_then() -> None:
    lines = RecentLines(4)
    assert lines.after(0, 100, 10) is None  # not primed yet
    lines.prime([line(n).to_dict() for n in (5, 6, 7, 8)])  # as many as fit: maybe more stored
    lines.add(line(9))  # 5 drops out: 6 to 9 kept
    assert ids(lines.after(5, 100, 10)) == [6, 7, 8, 9]
    assert ids(lines.after(6, 100, 10)) == [7, 8, 9]
    assert ids(lines.after(9, 100, 10)) == []
    assert ids(lines.after(5, 9, 10)) == [6, 7, 8]  # stops below ``before``
    assert ids(lines.after(5, 100, 2)) == [6, 7]  # ``limit``
    assert lines.after(4, 100, 10) is None  # 5 is no longer here: the store must say
    assert lines.after(0, 100, 10) is None


def test_lines_holding_a_rooms_whole_history_answer_any_gap_until_they_drop_one() -> None:
    lines = RecentLines(4)
    lines.prime([line(n).to_dict() for n in (3, 7)])  # fewer than fit: all there is
    assert ids(lines.after(0, 100, 10)) == [3, 7]
    lines.add(line(8))
    assert ids(lines.after(0, 100, 10)) == [3, 7, 8]
    lines.add(line(9))  # full now: whether anything dropped out is not known any more
    assert lines.after(0, 100, 10) is None
    assert ids(lines.after(3, 100, 10)) == [7, 8, 9]
    empty = RecentLines(4)
    empty.prime([])
    assert empty.after(0, 100, 10) == []


def test_lines_are_turned_into_wire_form_once_and_new_ones_join_them() -> None:
    lines = RecentLines(4)
    lines.prime([line(1).to_dict()])
    lines.add(line(2))
    first = lines.page()
    assert first == [line(1).to_dict(), line(2).to_dict()]
    again = lines.page()
    assert again == first and again[1] is first[1]  # made once, not per joiner
    lines.extend([line(3), line(4), line(5)])
    assert ids(lines.page()) == [2, 3, 4, 5]
    assert lines.page()[1:3] == lines.after(2, 5, 10) == [line(3).to_dict(), line(4).to_dict()]


async def gap(client: ChatClient, after: int, limit: int, room: str = "#lobby") -> Any:
    await client.send(
        {"type": "history", "room": room, "after": after, "limit": limit, "ref": "gap"}
    )
    return await client.expect("history", lambda e: e.ref == "gap")


def reads(chat: TestServer) -> int:
    service = chat.server.history_service
    assert service is not None
    return service.store._reads.reads


async def test_a_gap_is_the_same_page_from_the_latest_lines_or_from_the_store() -> None:
    with trio.fail_after(20):
        async with (
            open_test_server(config=local_config(history_on_join=4)) as chat,
            open_client(chat, "alice") as alice,
        ):
            for n in range(10):
                await alice.say(f"m{n}")
            said = [(await alice.expect("message", lambda e, n=n: e.text == f"m{n}")).id
                    for n in range(10)]  # fmt: skip
            async with open_client(chat, "bob") as bob:
                await bob.expect("history")
                await alice.say("live")
                await bob.expect("message", lambda e: e.text == "live")

                # Within the latest 5 lines (m6 to m9, live): no read, and not the live line.
                before = reads(chat)
                page = await gap(bob, said[7], 50)
                assert ([m["text"] for m in page.messages], page.more) == (["m8", "m9"], False)
                page = await gap(bob, said[5], 2)
                assert ([m["text"] for m in page.messages], page.more) == (["m6", "m7"], True)
                page = await gap(bob, said[7], 2)
                assert ([m["text"] for m in page.messages], page.more) == (["m8", "m9"], False)
                assert reads(chat) == before

                # Reaching below them: the store, with the same pages.
                page = await gap(bob, said[1], 50)
                assert [m["text"] for m in page.messages] == [f"m{n}" for n in range(2, 10)]
                assert page.more is False
                page = await gap(bob, said[1], 3)
                assert ([m["text"] for m in page.messages], page.more) == (["m2", "m3", "m4"], True)
                assert reads(chat) == before + 2
                first = page.messages[0]
                assert first == {
                    "type": "message",
                    "id": said[2],
                    "ts": first["ts"],
                    "room": "#lobby",
                    "nick": "alice",
                    "text": "m2",
                    "kind": "say",
                }

                # A new room with two lines: its latest lines are its whole history.
                await alice.command("/join #small")
                await alice.say("s0", "#small")
                await alice.say("s1", "#small")
                await alice.expect("message", lambda e: e.text == "s1")
                await bob.command("/join #small")
                await bob.expect("history", lambda e: e.room == "#small")
                before = reads(chat)
                page = await gap(bob, 0, 50, "#small")
                assert ([m["text"] for m in page.messages], page.more) == (["s0", "s1"], False)
                assert reads(chat) == before
