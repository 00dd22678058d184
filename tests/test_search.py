"""Search: the ``search`` frame and ``/search`` over the full-text index of room lines, over
real sockets (JSON lines, WebSocket, text mode), and the index itself (the migration from
the schema before it, its triggers, pruning, a SIGKILL)."""

from __future__ import annotations

import json
import signal
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import trio
from test_chat import open_text_client
from test_history import running_server, sigkill
from test_store import database_at

from trio_chat.search import search_words
from trio_chat.store import Store, StoredMessage
from trio_chat.store.schema import MIGRATIONS, SCHEMA_VERSION, _search_index
from trio_chat.store.search import match_all, phrase
from trio_chat.store.writer import WriteItem
from trio_chat.testing import ChatClient, local_config, open_client, open_test_server


async def search(client: ChatClient, query: str, **fields: Any) -> Any:
    """Send a ``search`` frame; return its ``search`` answer."""
    reply = await answer(client, {"type": "search", "query": query, **fields})
    assert reply.TYPE == "search", reply
    return reply


async def answer(client: ChatClient, frame: dict[str, Any]) -> Any:
    """Send ``frame`` with a fresh ``ref``; return the reply carrying it."""
    ref = f"r{len(client.history)}"
    await client.send({**frame, "ref": ref})
    while True:
        event = await client.receive()
        if getattr(event, "ref", None) == ref:
            return event


def texts(event: Any) -> list[str]:
    return [m["text"] for m in event.messages]


# ----------------------------------------------------------------------- pure parts


def test_a_users_words_are_never_query_syntax() -> None:
    assert phrase('say "hi"') == '"say ""hi"""'
    assert match_all(["AND", "NEAR(", "x*"]) == '"AND" "NEAR(" "x*"'
    assert search_words("  deploy   Friday ") == ["deploy", "Friday"]
    assert search_words('" deploy *') == ["deploy"]  # no letter or digit: nothing to find
    for nothing in ['"', "*", "-- ()", "   "]:
        with pytest.raises(Exception, match="letters or digits"):
            search_words(nothing)
    with pytest.raises(Exception, match="at most 16 words"):
        search_words(" ".join(f"w{n}" for n in range(17)))


# --------------------------------------------------------------------- over sockets


async def test_search_finds_every_word_newest_first_in_your_rooms_only() -> None:
    async with (
        open_test_server() as chat,
        open_client(chat, "alice") as alice,
        open_client(chat, "bob") as bob,
    ):
        await alice.join("#dev")
        await bob.join("#secret")
        await alice.say("Deploy on Friday?", room="#lobby")
        await alice.say("the deploy is at 3", room="#dev")
        await alice.say("café at noon", room="#dev")
        await alice.expect("message", lambda e: e.text == "café at noon")
        await bob.say("deploy passwords here", room="#secret")
        await bob.expect("message", lambda e: e.text == "deploy passwords here")
        await bob.command("/msg alice deploy privately")
        await alice.expect("private")

        found = await search(alice, "DEPLOY")
        assert texts(found) == ["the deploy is at 3", "Deploy on Friday?"]  # newest first
        assert [m["room"] for m in found.messages] == ["#dev", "#lobby"]
        assert found.more is False and found.query == "DEPLOY"
        assert found.messages[0] == {
            "type": "message",
            "id": found.messages[0]["id"],
            "ts": found.messages[0]["ts"],
            "room": "#dev",
            "nick": "alice",
            "text": "the deploy is at 3",
            "kind": "say",
        }
        # Every word must be there; case and accents do not count; a word is whole.
        assert texts(await search(alice, "deploy friday")) == ["Deploy on Friday?"]
        assert texts(await search(alice, "cafe")) == ["café at noon"]
        assert texts(await search(alice, "dep")) == []
        # One room of yours; a room you are not in is refused, never searched.
        assert texts(await search(alice, "deploy", room="#dev")) == ["the deploy is at 3"]
        refused = await answer(alice, {"type": "search", "query": "deploy", "room": "#secret"})
        assert (refused.TYPE, refused.code) == ("error", "not_in_room")
        # bob is in #secret and #lobby: his search has his room's line, not #dev's.
        assert texts(await search(bob, "deploy")) == [
            "deploy passwords here",
            "Deploy on Friday?",
        ]
        # A room you left is no longer searched.
        await alice.command("/part #dev")
        await alice.expect("leave", lambda e: e.room == "#dev")
        assert texts(await search(alice, "deploy")) == ["Deploy on Friday?"]


async def test_search_pages_back_with_before_and_limit() -> None:
    async with open_test_server() as chat, open_client(chat, "alice") as alice:
        for n in range(25):
            await alice.say(f"line {n} of the log")
        await alice.expect("message", lambda e: e.text == "line 24 of the log")
        first = await search(alice, "log")  # the default page is 20
        assert texts(first) == [f"line {n} of the log" for n in range(24, 4, -1)]
        assert first.more is True
        rest = await search(alice, "log", before=first.messages[-1]["id"])
        assert texts(rest) == [f"line {n} of the log" for n in range(4, -1, -1)]
        assert rest.more is False
        three = await search(alice, "log", limit=3)
        assert (texts(three), three.more) == (
            ["line 24 of the log", "line 23 of the log", "line 22 of the log"],
            True,
        )
        big = await search(alice, "log", limit=1000)  # at most 100: all 25 here
        assert len(big.messages) == 25 and big.more is False
        for bad in (-1, 1.5, "3"):
            refused = await answer(alice, {"type": "search", "query": "log", "limit": bad})
            assert (refused.TYPE, refused.code) == ("error", "bad_field")
        missing = await answer(alice, {"type": "search"})
        assert (missing.TYPE, missing.code) == ("error", "missing_field")


#: A query, and what it finds in the line "log AND text" (``None``: refused, no words).
ABUSE = [
    ('"', None),
    ("*", None),
    ("-- ()", None),
    ("AND", ["log AND text"]),
    ("OR OR", []),  # "or" is not in the line
    ('"unterminated', []),
    ('"log', ["log AND text"]),
    ("NEAR(log", []),  # the words "near" and "log", one after the other
    ("text:log", []),  # no column filter: the words "text" then "log", one after the other
    ("and:text", ["log AND text"]),
    ("^log", ["log AND text"]),
    ("log*", ["log AND text"]),
    ("-log and", ["log AND text"]),
]


@pytest.mark.parametrize(("query", "finds"), ABUSE)
async def test_search_syntax_abuse_is_words_or_a_clear_refusal(
    query: str, finds: list[str] | None
) -> None:
    async with (
        open_test_server() as chat,
        open_client(chat, "alice") as alice,
        open_client(chat, "bob") as bob,
    ):
        await alice.say("log AND text")
        await alice.expect("message")
        reply = await answer(alice, {"type": "search", "query": query})
        if finds is None:
            assert (reply.TYPE, reply.code) == ("error", "bad_arguments")
            assert reply.text == "search for words: letters or digits"
        else:
            assert reply.TYPE == "search"
            assert texts(reply) == finds
        # Nobody else noticed anything, and the server goes on.
        await bob.say("still here")
        assert (await alice.expect("message")).text == "still here"


async def test_search_over_websocket_and_text_mode() -> None:
    async with (
        open_test_server() as chat,
        open_client(chat, "wes", websocket=True, batch=True) as wes,
    ):
        for n in range(22):
            await wes.say(f"deploy number {n}")
        await wes.expect("message", lambda e: e.text == "deploy number 21")
        found = await search(wes, "deploy number", limit=2)
        assert texts(found) == ["deploy number 21", "deploy number 20"]

        text = await open_text_client(chat)
        async with text.stream:
            await text.read_until("nickname?")
            await text.send_line("tina")
            await text.read_until("tina joined #lobby")
            await text.send_line("/search deploy")
            shown = await text.read_until("(older ones: the same /search again)")
            lines = shown[shown.index("-- 20 lines holding 'deploy':") :].splitlines()
            assert lines[0] == "-- 20 lines holding 'deploy':"
            assert lines[1].endswith("#lobby <wes> deploy number 2")  # oldest first
            assert lines[20].endswith("#lobby <wes> deploy number 21")
            # The same search again: the older ones.
            await text.send_line("/search  deploy")
            shown = await text.read_until("deploy number 0")
            assert "-- 2 lines holding 'deploy':" in shown
            assert "older ones" not in shown
            await text.send_line('/search "')
            assert "!! search for words: letters or digits" in await text.read_until("!!")
            await text.send_line("/search #nowhere deploy")
            assert "!! you are not in #nowhere" in await text.read_until("!!")


async def test_search_without_a_database_is_no_store() -> None:
    async with open_test_server(config=local_config(db=None)) as chat:
        async with open_client(chat, "alice") as alice:
            reply = await answer(alice, {"type": "search", "query": "x"})
            assert (reply.TYPE, reply.code) == ("error", "no_store")
            await alice.command("/search x")
            assert (await alice.expect("error")).code == "no_store"


# ------------------------------------------------------------------------- the index


def message(n: int, text: str, room: str | None = "#lobby") -> StoredMessage:
    if room is None:
        return StoredMessage(
            id=n,
            ts=1000.0 + n,
            room=None,
            sender="alice",
            text=text,
            kind="private",
            recipient="bob",
            sender_account="alice",
            recipient_account="bob",
        )
    return StoredMessage(id=n, ts=1000.0 + n, room=room, sender="alice", text=text)


def index_ok(path: Path) -> None:
    """FTS5's own check of the index against the room lines it indexes."""
    with sqlite3.connect(path) as conn:
        conn.execute(
            "INSERT INTO message_words (message_words, rank) VALUES ('integrity-check', 1)"
        )


async def test_edits_deletes_and_pruning_keep_the_index_right(tmp_path: Path) -> None:
    path = tmp_path / "chat.db"
    async with Store.open(path) as store:
        await store.append_many(
            [
                message(1, "old deploy notes"),
                message(2, "the deploy is at 3"),
                message(3, "deploy secrets", room=None),
                message(4, "deploy again", room="#dev"),
            ]
        )

        async def found(*rooms: str) -> list[int]:
            lines = await store.search(rooms or ["#lobby", "#dev"], '"deploy"', before=99, limit=10)
            return [m.id for m in lines]

        assert await found() == [4, 2, 1]  # the private line is not in the index
        assert await found("#dev") == [4]

        def edit(conn: sqlite3.Connection) -> None:  # as an edit and a delete would
            conn.execute("UPDATE messages SET text = 'the release is at 3' WHERE id = 2")
            conn.execute("UPDATE messages SET text = '' WHERE id = 4")

        await store._writes.submit(WriteItem(job=edit))
        assert await found() == [1]
        assert [m.id for m in await store.search(["#lobby"], '"release"', before=99, limit=5)] == [
            2
        ]
        assert await store.prune(1003.5) == 3  # ids 1, 2, 3 (4 is newer)
        assert await found() == []
        assert await store.search(["#lobby"], '"release"', before=99, limit=5) == []
    index_ok(path)


async def test_the_migration_indexes_the_lines_stored_before_it(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with database_at(path, MIGRATIONS.index(_search_index)) as conn:
        conn.execute("BEGIN")
        rows = [message(1, "Deploy on Friday"), message(2, "deploy secrets", room=None)]
        rows.append(message(3, "lunch?", room="#dev"))
        for row in rows:
            conn.execute(
                "INSERT INTO messages (id, ts, room, sender, text, kind, recipient, conv,"
                " sender_account, recipient_account) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                row.row()[:10],  # (the columns of that version)
            )
        conn.execute("COMMIT")
    conn.close()
    async with open_test_server(config=local_config(db=str(path))) as chat:
        async with open_client(chat, "alice") as alice:
            old = await search(alice, "deploy")
            assert texts(old) == ["Deploy on Friday"]  # and not the private line
            await alice.say("deploy done")
            await alice.expect("message", lambda e: e.text == "deploy done")
            assert texts(await search(alice, "deploy")) == ["deploy done", "Deploy on Friday"]
            await alice.send({"type": "history", "room": "#lobby", "ref": "h"})
            history = await alice.expect("history", lambda e: e.ref == "h")
            assert "Deploy on Friday" in texts(history)
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    conn.close()
    index_ok(path)


async def test_what_was_searchable_survives_sigkill(tmp_path: Path) -> None:
    db = tmp_path / "chat.db"
    async with running_server(db) as (process, port):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            await stream.send_all(b'{"type":"hello","nick":"alice"}\n')
            await stream.send_all(
                b"".join(b'{"type":"say","text":"needle %d"}\n' % n for n in range(50))
            )
            seen = b""
            with trio.fail_after(15):
                while seen.count(b'"type":"message"') < 50:
                    seen += await stream.receive_some(65536)
            await sigkill(process)
    async with running_server(db) as (process, port):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            await stream.send_all(b'{"type":"hello","nick":"bob"}\n')
            await stream.send_all(b'{"type":"search","query":"needle","limit":100}\n')
            got = b""
            with trio.fail_after(15):
                while b'"type":"search"' not in got:
                    got += await stream.receive_some(65536)
        reply = next(json.loads(x) for x in got.splitlines() if b'"type":"search"' in x)
        assert [m["text"] for m in reply["messages"]] == [f"needle {n}" for n in range(49, -1, -1)]
    index_ok(db)


async def test_a_search_that_reads_too_much_is_stopped_and_said_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import trio_chat.store.search as search_sql

    async with (
        open_test_server() as chat,
        open_client(chat, "alice") as alice,
        open_client(chat, "bob") as bob,
    ):
        await bob.join("#quiet")
        for n in range(300):
            await alice.say(f"common word {n}")
        await alice.expect("message", lambda e: e.text == "common word 299")
        await bob.say("common in quiet", room="#quiet")
        await bob.expect("message", lambda e: e.text == "common in quiet")
        # Under the budget: #quiet's one line, found past #lobby's 300.
        assert texts(await search(bob, "common", room="#quiet")) == ["common in quiet"]
        monkeypatch.setattr(search_sql, "READ_BUDGET", 0.0)
        monkeypatch.setattr(search_sql, "_STEPS", 50)
        refused = await answer(bob, {"type": "search", "query": "common", "room": "#quiet"})
        assert (refused.TYPE, refused.code) == ("error", "bad_arguments")
        assert refused.text == "that search reads too much: add a word, or name one of your rooms"
        # /mentions reads under the same budget, and answers with what it found by then.
        await bob.command("/mentions")
        assert (await bob.expect("info")).data == {"mentions": []}
        # Nothing else is held up.
        await alice.say("still fine")
        assert (await bob.expect("message", lambda e: e.text == "still fine")).nick == "alice"


async def test_an_irc_user_searches_with_quote_and_reads_notices() -> None:
    from test_irc import open_irc

    async with (
        open_test_server(config=local_config(irc_port=0)) as chat,
        open_client(chat, "alice") as alice,
        open_irc(chat, "ivy") as ivy,
    ):
        await alice.say("deploy at 3")
        await alice.expect("message")
        await ivy.send("SEARCH deploy")
        heading = await ivy.expect("NOTICE")
        assert heading.params == ("ivy", "-- 1 line holding 'deploy':")
        line = await ivy.expect("NOTICE")
        assert line.params[1].endswith("#lobby <alice> deploy at 3")


# ------------------------------------------------- the index off the commit path (its mark)


def marked_db(path: Path, rows: list[StoredMessage]) -> sqlite3.Connection:
    """A database at the current schema holding ``rows``, committed as the store commits
    them (no indexing), in autocommit mode."""
    from trio_chat.store.schema import prepare
    from trio_chat.store.sqlite import insert_statements

    conn = sqlite3.connect(path, isolation_level=None)
    prepare(conn, path)
    conn.execute("BEGIN")
    for sql, params in insert_statements([row.row() for row in rows]):
        conn.execute(sql, params)
    conn.execute("COMMIT")
    return conn


def indexed(conn: sqlite3.Connection, word: str) -> list[int]:
    rows = conn.execute(
        "SELECT rowid FROM message_words WHERE message_words MATCH ? ORDER BY rowid",
        (phrase(word),),
    )
    return [row[0] for row in rows]


def test_the_mark_moves_past_indexed_batches_and_private_lines(tmp_path: Path) -> None:
    from trio_chat.store.sqlite import index_waiting_lines, words_indexed_to

    rows = [message(n, f"tea {n}") for n in range(1, 8)]
    rows.append(message(8, "tea in private", room=None))
    conn = marked_db(tmp_path / "chat.db", rows)
    try:
        assert words_indexed_to(conn) == 0  # a new file: nothing indexed, everything waits
        assert indexed(conn, "tea") == []
        conn.execute("BEGIN")
        assert index_waiting_lines(conn, limit=3) == (3, False)  # a bounded batch
        conn.execute("COMMIT")
        assert indexed(conn, "tea") == [1, 2, 3]
        assert words_indexed_to(conn) == 3
        conn.execute("BEGIN")
        # Rows 4..8: five rows, limit 5, so not known to be caught up yet.
        assert index_waiting_lines(conn, limit=5) == (8, False)
        assert index_waiting_lines(conn, limit=5) == (8, True)  # nothing above 8
        conn.execute("COMMIT")
        assert indexed(conn, "tea") == [1, 2, 3, 4, 5, 6, 7]  # never the private line
        conn.execute(
            "INSERT INTO message_words (message_words, rank) VALUES ('integrity-check', 1)"
        )
    finally:
        conn.close()


def test_edits_and_deletes_above_and_below_the_mark(tmp_path: Path) -> None:
    from trio_chat.store.sqlite import index_waiting_lines

    rows = [message(1, "alpha one"), message(2, "alpha two")]
    rows += [message(3, "alpha three"), message(4, "alpha four")]
    conn = marked_db(tmp_path / "chat.db", rows)
    try:
        conn.execute("BEGIN")
        index_waiting_lines(conn, limit=2)  # 1 and 2 indexed; 3 and 4 wait
        conn.execute("COMMIT")
        # An edit and a delete of an indexed line, and of a waiting one: the triggers take
        # out the indexed ones' old words and leave the waiting ones alone.
        conn.execute("UPDATE messages SET text = 'beta one' WHERE id = 1")
        conn.execute("UPDATE messages SET text = 'beta three' WHERE id = 3")
        conn.execute("DELETE FROM messages WHERE id = 2")
        conn.execute("DELETE FROM messages WHERE id = 4")
        assert indexed(conn, "alpha") == []
        assert indexed(conn, "beta") == [1]
        conn.execute(
            "INSERT INTO message_words (message_words, rank) VALUES ('integrity-check', 0)"
        )
        conn.execute("BEGIN")
        assert index_waiting_lines(conn) == (3, True)
        conn.execute("COMMIT")
        assert indexed(conn, "beta") == [1, 3]  # the waiting line, with its new words
        assert indexed(conn, "three") == [3]
        conn.execute(
            "INSERT INTO message_words (message_words, rank) VALUES ('integrity-check', 1)"
        )
    finally:
        conn.close()


async def test_commits_wait_unindexed_and_a_search_indexes_them_first(tmp_path: Path) -> None:
    path = tmp_path / "chat.db"
    async with Store.open(path, index_every=None) as store:
        await store.append_many([message(n, f"kettle {n}") for n in range(1, 4)])
        await store.append(message(4, "kettle private", room=None))
        assert store._writes.indexed_to == 0  # committed, not indexed: off the commit path
        found = await store.search(["#lobby"], '"kettle"', before=99, limit=10)
        assert [m.id for m in found] == [3, 2, 1]
        assert store._writes.indexed_to == 4 and not store._writes.unindexed
        # An edit of an indexed line and of a waiting one, a delete of each, then search.
        await store.append_many([message(n, f"kettle {n}") for n in range(5, 9)])

        def change(conn: sqlite3.Connection) -> None:
            conn.execute("UPDATE messages SET text = 'teapot 2' WHERE id = 2")
            conn.execute("UPDATE messages SET text = 'teapot 6' WHERE id = 6")
            conn.execute("UPDATE messages SET text = '' WHERE id IN (3, 7)")

        await store._writes.submit(WriteItem(job=change))
        found = await store.search(["#lobby"], '"kettle"', before=99, limit=10)
        assert [m.id for m in found] == [8, 5, 1]
        found = await store.search(["#lobby"], '"teapot"', before=99, limit=10)
        assert [m.id for m in found] == [6, 2]
        # A line committed below the mark (ids out of order) is indexed by its commit.
        await store.append(message(4000, "kettle late"))
        await store.index_now()
        await store.append(message(3000, "kettle later, lower"))
        assert store._writes.indexed_to == 4000
        found = await store.search(["#lobby"], '"kettle"', before=9999, limit=2)
        assert [m.id for m in found] == [4000, 3000]
    index_ok(path)


async def test_pruning_above_and_below_the_mark(tmp_path: Path) -> None:
    path = tmp_path / "chat.db"
    async with Store.open(path, index_every=None) as store:
        await store.append_many([message(n, f"scone {n}") for n in range(1, 5)])
        await store.index_now()
        await store.append_many([message(n, f"scone {n}") for n in range(5, 9)])
        assert store._writes.indexed_to == 4
        # 1..6 are old: four indexed rows (the trigger takes them out), two waiting ones.
        assert await store.prune(1006.5) == 6
        assert store._writes.unindexed
        found = await store.search(["#lobby"], '"scone"', before=99, limit=10)
        assert [m.id for m in found] == [8, 7]
    index_ok(path)


def watch_index_jobs(store: Store) -> trio.MemoryReceiveChannel[WriteItem]:
    """The indexing jobs ``store`` makes from now on, as they are made."""
    send, receive = trio.open_memory_channel[WriteItem](100)
    make_job = store._writes.index_item

    def watched_job() -> WriteItem:
        job = make_job()
        send.send_nowait(job)
        return job

    store._writes.index_item = watched_job  # type: ignore[method-assign]
    return receive


@pytest.mark.parametrize("every, waiting", [(0.05, 2000), (3600.0, 3)])
async def test_the_store_indexes_by_itself_after_a_tick_or_many_commits(
    tmp_path: Path, every: float, waiting: int
) -> None:
    async with Store.open(tmp_path / "chat.db", index_every=every) as store:
        writes = store._writes
        writes.INDEX_WHEN_WAITING = waiting  # type: ignore[misc]
        jobs = watch_index_jobs(store)
        await store.append_many([message(n, "muffin") for n in range(1, 5)])
        with trio.fail_after(5):  # its indexing task asks for the job, not a search
            while writes.indexed_to < 4:
                await (await jobs.receive()).done.wait()
        assert not writes.unindexed


ROOT = str(Path(__file__).resolve().parents[1])
_CRASHING_WRITER = """
import sys, trio
from trio_chat.store import Store, StoredMessage

async def main():
    async with Store.open(sys.argv[1], index_every=None) as store:
        await store.append_many(
            [StoredMessage(id=n, ts=1000.0 + n, room="#lobby", sender="alice", text=f"crumpet {n}")
             for n in range(1, 21)]
        )
        print("committed", store._writes.indexed_to, flush=True)
        await trio.sleep_forever()

trio.run(main)
"""


async def test_sigkill_between_commit_and_indexing_loses_nothing(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    path = tmp_path / "chat.db"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")])}
    process = await trio.lowlevel.open_process(
        [sys.executable, "-c", _CRASHING_WRITER, str(path)], stdout=subprocess.PIPE, env=env
    )
    assert process.stdout is not None
    try:
        said = b""
        with trio.fail_after(20):
            while b"\n" not in said:
                said += await process.stdout.receive_some(1024)
        assert said.split() == [b"committed", b"0"]  # committed, not one line indexed
    finally:
        process.send_signal(signal.SIGKILL)
        with trio.fail_after(10):
            await process.wait()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM messages").fetchone()[0] == 20
        assert (
            conn.execute("SELECT value FROM meta WHERE key = 'words_indexed_to'").fetchone()[0] == 0
        )
    conn.close()
    async with Store.open(path, index_every=None) as store:
        found = await store.search(["#lobby"], '"crumpet"', before=99, limit=50)
        assert [m.id for m in found] == list(range(20, 0, -1))
    index_ok(path)
