"""History and accounts on SQLite, end to end over real sockets."""

from __future__ import annotations

import inspect
import json
import logging
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from trio_chat.commands import CommandContext
from trio_chat.testing import is_prompt, local_config, open_client, open_test_server


async def test_joining_shows_recent_history_marked_as_history() -> None:
    async with open_test_server(config=local_config(history_on_join=3)) as chat:
        async with open_client(chat, "alice") as alice:
            for n in range(5):
                await alice.say(f"m{n}")
            for _ in range(5):
                await alice.expect("message")
        async with open_client(chat, "bob") as bob:
            history = await bob.expect("history")
            assert history.room == "#lobby"
            assert [m["text"] for m in history.messages] == ["m2", "m3", "m4"]
            assert history.more is True
            assert history.messages[0] == {
                "type": "message",
                "id": history.messages[0]["id"],
                "ts": history.messages[0]["ts"],
                "room": "#lobby",
                "nick": "alice",
                "text": "m2",
                "kind": "say",
            }
            # Paging back with /history goes further back each time ...
            await bob.command("/history 1")
            assert [m["text"] for m in (await bob.expect("history")).messages] == ["m1"]
            await bob.command("/history 1")
            page = await bob.expect("history")
            assert ([m["text"] for m in page.messages], page.more) == (["m0"], False)
            await bob.command("/history")
            empty = await bob.expect("history")
            assert (empty.messages, empty.more) == ([], False)
            # ... and a frame pages from any id.
            await bob.send(
                {"type": "history", "before": history.messages[0]["id"], "limit": 10, "ref": "p"}
            )
            page = await bob.expect("history")
            assert ([m["text"] for m in page.messages], page.more, page.ref) == (
                ["m0", "m1"],
                False,
                "p",
            )


async def test_a_join_waits_only_when_the_rooms_lines_must_be_read_first() -> None:
    """``/join`` of a room whose latest lines are in memory (any room with members) is a
    plain call: no awaitable, so no plugin-timeout scope around it. Only a room whose
    lines are not at hand is joined by a coroutine that reads them first."""
    async with open_test_server() as chat:
        server = chat.server
        async with open_client(chat, "alice") as alice, open_client(chat, "bob") as bob:
            await alice.command("/join #dev")
            await alice.expect("info", lambda e: e.data == {"room": "#dev", "topic": ""})
            session = server.hub.find("bob")
            assert session is not None
            spec = server.commands.get("join")
            assert spec is not None

            def join(room: str) -> object:
                return spec.handler(CommandContext(server, session, spec, room, "#lobby", None))

            assert join("#dev") is None  # joined at once: #dev's lines are at hand
            assert "#dev" in session.rooms
            await bob.expect("info", lambda e: e.data == {"room": "#dev", "topic": ""})
            with pytest.raises(trio.WouldBlock):
                server.join_room_nowait(session, "#new")
            assert server.hub.room("#new") is None and "#new" not in session.rooms
            later = join("#new")  # read first: the caller awaits it
            assert inspect.isawaitable(later) and "#new" not in session.rooms
            await later
            assert "#new" in session.rooms
            await bob.expect("info", lambda e: e.data == {"room": "#new", "topic": ""})


async def test_reconnect_gap_fill_is_exact() -> None:
    async with (
        open_test_server(config=local_config(history_on_join=0)) as chat,
        open_client(chat, "alice") as alice,
    ):
        async with open_client(chat, "bob") as bob:
            await alice.say("seen by bob")
            last_seen = (await bob.expect("message")).id
        for n in range(7):  # bob is away
            await alice.say(f"missed {n}")
        await alice.expect("message", lambda e: e.text == "missed 6")  # all delivered
        async with trio.open_nursery() as nursery:
            # Messages keep flowing while bob logs in again and asks for the gap.
            async def chatter() -> None:
                for n in range(20):
                    await alice.say(f"live {n}")
                    await trio.sleep(0.001)

            async with open_client(chat, "bob") as bob:
                nursery.start_soon(chatter)
                got: list[str] = []
                after = last_seen
                while True:
                    await bob.send({"type": "history", "after": after, "limit": 3, "ref": "gap"})
                    page = await bob.expect("history", lambda e: e.ref == "gap")
                    got += [m["text"] for m in page.messages]
                    if not page.more:
                        break
                    after = page.messages[-1]["id"]

                # Live messages that came while paging are in bob.history; wait for the rest.
                def live() -> list[str]:
                    return [e.text for e in bob.history if e.TYPE == "message"]  # type: ignore[attr-defined]

                while len(got) + len(live()) < 27:
                    await bob.receive()
                assert got[:7] == [f"missed {n}" for n in range(7)]
                everything = got + live()
                expected = [f"missed {n}" for n in range(7)] + [f"live {n}" for n in range(20)]
                assert sorted(everything) == sorted(expected)  # nothing missing ...
                assert len(everything) == len(set(everything))  # ... nothing twice
                assert [t for t in everything if t.startswith("live")] == [
                    f"live {n}" for n in range(20)
                ]


async def test_private_history_is_for_the_two_logged_in_users_only() -> None:
    async with open_test_server() as chat:
        async with open_client(chat) as alice, open_client(chat) as bob:
            await alice.send(
                {"type": "hello", "nick": "alice", "password": "pw-a", "register": True}
            )
            welcome = await alice.expect("welcome")
            assert welcome.account is True
            await bob.send({"type": "hello", "nick": "bob", "password": "pw-b", "register": True})
            await bob.expect("welcome")
            await alice.command("/msg bob our secret")
            await bob.expect("private")
        async with open_client(chat, "carol") as carol:
            await carol.send({"type": "history", "with": "alice"})
            assert (await carol.expect("error")).code == "login_required"
            await carol.send({"type": "history", "ref": "lobby"})
            lobby = await carol.expect("history", lambda e: e.ref == "lobby")
            assert "our secret" not in json.dumps(lobby.messages)
        async with open_client(chat) as bob:
            await bob.send({"type": "hello", "nick": "bob", "password": "pw-b"})
            await bob.expect("welcome")
            await bob.send({"type": "history", "with": "ALICE", "ref": "pm"})
            page = await bob.expect("history", lambda e: e.ref == "pm")
            assert [(m["type"], m["nick"], m["to"], m["text"]) for m in page.messages] == [
                ("private", "alice", "bob", "our secret")
            ]


async def test_private_history_does_not_go_to_whoever_takes_the_nick_later() -> None:
    async with open_test_server() as chat:
        async with open_client(chat) as alice:
            await alice.login("alice", password="pw-a", register=True)
            async with open_client(chat, "dave") as dave:  # a guest
                await alice.command("/msg dave my bank PIN is 4242")
                assert (await dave.expect("private")).text == "my bank PIN is 4242"
            await alice.expect("leave", lambda e: e.nick == "dave")
            async with open_client(chat) as thief:
                await thief.send(
                    {"type": "hello", "nick": "dave", "password": "x", "register": True}
                )
                assert (await thief.expect("welcome")).account is True
                await thief.send({"type": "history", "with": "alice", "ref": "pm"})
                page = await thief.expect("history", lambda e: e.ref == "pm")
                assert page.messages == []
            # Nor does alice's own history keep it: a guest's messages end with the session.
            await alice.send({"type": "history", "with": "dave", "ref": "mine"})
            assert (await alice.expect("history", lambda e: e.ref == "mine")).messages == []


async def test_private_history_follows_the_accounts_at_send_time() -> None:
    async with open_test_server() as chat:
        async with open_client(chat) as alice, open_client(chat, "erin") as erin:
            await alice.login("alice", password="pw-a", register=True)
            await alice.command("/msg erin while you are a guest")
            await erin.expect("private")
            await erin.command("/register pw-e")  # an account from now on
            await erin.expect("info")
            await alice.command("/msg erin now you have an account")
            await erin.expect("private", lambda e: e.text == "now you have an account")
            await alice.command("/nick alicia")  # the account, not the nick, counts
            await alice.expect("nick")
            await erin.command("/msg alicia renamed")
            await alice.expect("private", lambda e: e.text == "renamed")
            await erin.send({"type": "history", "with": "alice", "ref": "pm"})
            page = await erin.expect("history", lambda e: e.ref == "pm")
            assert [(m["nick"], m["to"], m["text"]) for m in page.messages] == [
                ("alice", "erin", "now you have an account"),
                ("erin", "alicia", "renamed"),
            ]


async def test_accounts_register_login_taken_nick_wrong_password_and_throttling() -> None:
    async with open_test_server() as chat:
        async with open_client(chat, "alice") as alice:
            await alice.command("/register hunter2")
            assert "registered" in (await alice.expect("info")).text
            await alice.command("/password wrong new-pass")
            assert (await alice.expect("error")).code == "login_failed"
            await alice.command("/password hunter2 s3cret")
            assert (await alice.expect("info")).text == "password changed"
        async with open_client(chat) as guest:
            await guest.send({"type": "hello", "nick": "Alice"})
            error = await guest.expect("error")
            assert error.code == "nick_registered"
            await guest.send({"type": "hello", "nick": "alice", "password": "hunter2"})
            wrong = await guest.expect("error")
            await guest.send({"type": "hello", "nick": "nobody-here", "password": "x"})
            unknown = await guest.expect("error")
            # The same answer whether or not the nick exists...
            assert (wrong.code, wrong.text) == ("login_failed", "wrong nickname or password")
            # ...and after failures from this address, the next tries must wait.
            assert unknown.code in ("login_failed", "login_throttled")
            await guest.send({"type": "hello", "nick": "alice", "password": "s3cret"})
            throttled = await guest.expect("error")
            assert throttled.code == "login_throttled"
            assert "try again in" in throttled.text
            await guest.login("guesty")
            await guest.command("/nick alice")
            assert (await guest.expect("error")).code == "nick_registered"
        # No password ever reaches the log or another user.
        assert all("s3cret" not in str(e) and "hunter2" not in str(e) for e in guest.history)


async def test_text_mode_login_at_the_nickname_prompt() -> None:
    async with open_test_server() as chat:
        async with open_client(chat, "dora") as dora:
            await dora.command("/register opensesame")
            await dora.expect("info")
        host, port = chat.address("tcp")
        stream = await trio.open_tcp_stream(host, port)
        async with stream:
            buffer = b""

            async def read_until(needle: bytes) -> bytes:
                nonlocal buffer
                with trio.fail_after(5):
                    while needle not in buffer:
                        buffer += await stream.receive_some(4096)
                return buffer

            await read_until(b"nickname?")
            await stream.send_all(b"dora\n")
            assert b"is registered; log in" in await read_until(b"log in with its password")
            await stream.send_all(b"/login dora opensesame\n")
            await read_until(b"dora joined #lobby")


async def test_server_without_a_database_says_so() -> None:
    async with open_test_server(config=local_config(db=None)) as chat:
        async with open_client(chat, "alice") as alice:
            await alice.send({"type": "history"})
            assert (await alice.expect("error")).code == "no_store"
            await alice.command("/register pw")
            assert (await alice.expect("error")).code == "no_store"


CLI = [sys.executable, "-m", "trio_chat.cli"]


async def start_server(db: Path) -> tuple[trio.Process, int]:
    process = await trio.lowlevel.open_process(
        [*CLI, "serve", "--port", "0", "--no-ws", "--no-entry-points", "--db", str(db)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        # 200 lines at once is a flood by the defaults.
        env={**os.environ, "PYTHONUNBUFFERED": "1", "TRIO_CHAT_FLOOD_BURST": "1000"},
    )
    assert process.stdout is not None
    banner = b""
    with trio.fail_after(15):
        while b"\n" not in banner:
            banner += await process.stdout.receive_some(4096)
    port = int(banner.decode().split()[3].rsplit(":", 1)[1])
    return process, port


@asynccontextmanager
async def running_server(db: Path) -> AsyncIterator[tuple[trio.Process, int]]:
    """:func:`start_server`, stopped on the way out if it still runs (SIGTERM: a graceful
    stop, within 10 s); a test that crashed it with :func:`sigkill` leaves nothing to stop."""
    process, port = await start_server(db)
    try:
        yield process, port
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            with trio.fail_after(10):
                await process.wait()


async def sigkill(process: trio.Process) -> None:
    """End the server as a crash would: no goodbye, no flush."""
    process.send_signal(signal.SIGKILL)
    await process.wait()


async def test_every_message_anyone_saw_survives_sigkill(tmp_path: Path) -> None:
    db = tmp_path / "chat.db"
    async with running_server(db) as (process, port):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            await stream.send_all(b'{"type":"hello","nick":"alice"}\n')
            await stream.send_all(
                b"".join(b'{"type":"say","text":"msg %d"}\n' % n for n in range(200))
            )
            seen = b""
            with trio.fail_after(15):
                while seen.count(b'"type":"message"') < 200:
                    seen += await stream.receive_some(65536)
                # Events that are numbered but not stored come after the last message.
                carol = await trio.open_tcp_stream("127.0.0.1", port)
                await carol.send_all(b'{"type":"hello","nick":"carol"}\n')
                while b'"nick":"carol"' not in seen:
                    seen += await stream.receive_some(65536)
            ids_seen = [
                json.loads(x).get("id", 0)
                for x in seen.splitlines()
                if x.strip() and not is_prompt(x)
            ]
            await sigkill(process)  # no goodbye, no flush
    async with running_server(db) as (process, port):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            await stream.send_all(b'{"type":"hello","nick":"bob"}\n')
            await stream.send_all(b'{"type":"history","limit":500}\n')
            got = b""
            with trio.fail_after(15):
                while got.count(b'"type":"history"') < 2:
                    got += await stream.receive_some(65536)
        pages = [json.loads(x) for x in got.splitlines() if b'"type":"history"' in x]
        texts = [m["text"] for m in pages[1]["messages"]]
        assert texts == [f"msg {n}" for n in range(200)]
        # Numbering goes on above every id anyone saw, joins included: a client asking for
        # what came "after" the last id it saw misses nothing.
        bob_joined = next(json.loads(x) for x in got.splitlines() if b'"type":"join"' in x)
        assert bob_joined["id"] > max(ids_seen)
    with trio.fail_after(30):
        export = await trio.run_process(
            [*CLI, "history", "export", "--room", "#lobby", "--db", str(db)],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    assert export.returncode == 0, export.stderr
    lines = [json.loads(x) for x in export.stdout.decode().splitlines()]
    assert [x["text"] for x in lines] == [f"msg {n}" for n in range(200)]
    assert lines[0]["room"] == "#lobby" and lines[0]["sender"] == "alice"


def test_bad_database_files_are_one_clear_line_and_untouched(tmp_path: Path) -> None:
    bad = tmp_path / "not-a-db.sqlite"
    bad.write_bytes(b"this is not a database" * 100)
    before = bad.read_bytes()
    result = subprocess.run(
        [*CLI, "serve", "--port", "0", "--no-ws", "--no-entry-points", "--db", str(bad)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"trio-chat: error: {bad} is not a trio-chat database (not an SQLite file)"
    )
    assert "Traceback" not in result.stderr
    assert bad.read_bytes() == before


async def test_a_message_that_cannot_be_saved_is_not_sent_and_the_sender_is_told() -> None:
    async with open_test_server() as chat:
        store = chat.server.history_service.store  # type: ignore[union-attr]
        # SQLite itself refuses the line, as a full disk would: every path a message takes
        # into the database (batched, or retried alone) meets the same refusal.
        store._writer.execute(
            "CREATE TEMP TRIGGER refuse_disk_full BEFORE INSERT ON messages"
            " WHEN NEW.text LIKE '%disk full%'"
            " BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END"
        )
        async with open_client(chat, "alice") as alice, open_client(chat, "bob") as bob:
            await alice.say("disk full now")
            error = await alice.expect("error")
            assert (error.code, error.text) == (
                "not_saved",
                "your message could not be saved; not sent",
            )
            await alice.say("fine again")
            assert (await bob.expect("message")).text == "fine again"
            assert not [e for e in bob.history if "disk full" in str(e)]


async def test_ids_stop_rather_than_pass_a_reservation_that_cannot_be_written(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import trio_chat.publisher

    monkeypatch.setattr(trio_chat.publisher, "ID_RESERVE", 40)  # so a few lines reach it
    monkeypatch.setattr(trio_chat.publisher, "ID_RESERVE_RETRY", 0.05)
    async with open_test_server() as chat:
        store = chat.server.history_service.store  # type: ignore[union-attr]
        hub = chat.server.hub
        assert store.last_id == 40  # the reservation written at start: ids up to 40
        async with open_client(chat, "alice") as alice:
            # The reservation can no longer be written, as on a full disk; messages can.
            store._writer.execute(
                "CREATE TEMP TRIGGER refuse_reservation BEFORE UPDATE ON meta"
                " BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END"
            )
            seen: list[int] = []
            for n in range(100):
                await alice.say(f"line {n}")
                event = await alice.receive()
                while event.TYPE not in ("message", "error"):
                    event = await alice.receive()
                if event.TYPE == "error":
                    break
                seen.append(event.id)
            assert event.TYPE == "error", f"ids went on to {seen[-1]}, past the reservation"
            assert (event.code, event.text) == (
                "not_saved",
                "your message could not be saved; not sent",
            )
            # Nothing numbered beyond what a restart after a crash would continue above.
            assert store.last_id == 40
            assert max(seen) <= hub.last_id <= 40
            async with open_client(chat, "bob") as bob:  # joins still work, below the bound
                await bob.expect("join", lambda e: e.nick == "bob")
                assert hub.last_id <= 40
                store._writer.execute("DROP TRIGGER temp.refuse_reservation")
                # Numbering resumes once a reservation is written again (retried meanwhile).
                publisher = chat.server.publisher
                assert publisher is not None
                with trio.fail_after(5):
                    await publisher.wait_reserved_beyond(40)
                await alice.say("back")
                event = await alice.expect("message")
                assert event.id > max(seen) and store.last_id > 40
                assert (await bob.expect("message", lambda e: e.text == "back")).id == event.id


async def test_logs_hold_no_passwords_and_no_private_text(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.DEBUG):
        async with open_test_server() as chat:
            async with open_client(chat) as alice, open_client(chat, "bob") as bob:
                await alice.send(
                    {"type": "hello", "nick": "alice", "password": "pw-SECRET-1", "register": True}
                )
                await alice.expect("welcome")
                await alice.command("/password pw-SECRET-1 pw-SECRET-2")
                await alice.expect("info")
                await alice.command("/msg bob the-PRIVATE-text")
                await bob.expect("private")
                await bob.command("/login alice wrong-SECRET-3")
                await bob.expect("error")
    logged = caplog.text
    assert "connect nick=alice" in logged and "disconnect nick=bob" in logged
    for secret in ("pw-SECRET-1", "pw-SECRET-2", "wrong-SECRET-3", "the-PRIVATE-text"):
        assert secret not in logged
