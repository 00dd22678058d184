"""Read markers: the migration from the schema before it, the store, then real connections:
synced to a user's other connections, in the welcome and after a join, kept by the account
across restarts (a SIGKILL too), a guest's for its session, and every refusal."""

from __future__ import annotations

import contextlib
import json
import socket
import sqlite3
from pathlib import Path
from typing import Any

import trio
from test_devices import PASSWORD, device
from test_history import running_server, sigkill
from test_store import database_at

import trio_chat
from trio_chat.names import name_key
from trio_chat.store import Store
from trio_chat.store import schema as schema_module
from trio_chat.store.schema import SCHEMA_VERSION
from trio_chat.testing import (
    ChatClient,
    is_prompt,
    local_config,
    open_client,
    open_test_server,
)

TIMEOUT = 10.0


# --------------------------------------------------------------------- the store


async def test_the_schema_before_read_markers_gains_them_and_keeps_everything(
    tmp_path: Path,
) -> None:
    path = tmp_path / "chat.db"
    before = schema_module.MIGRATIONS.index(schema_module._read_markers)
    conn = database_at(path, before)
    conn.execute(
        "INSERT INTO messages (id, ts, room, sender, text, kind, conv)"
        " VALUES (7, 7.0, '#lobby', 'alice', 'kept', 'say', 'r:#lobby')"
    )
    conn.execute("INSERT INTO accounts VALUES (?, 'hash', 1.0, 1.0)", (name_key("alice"),))
    conn.close()
    with trio.fail_after(TIMEOUT):
        async with Store.open(path) as store:
            assert [m.text for m in await store.history("#lobby")] == ["kept"]
            assert await store.account_exists("alice")
            assert store.last_id == 7
            assert await store.read_markers("alice") == []
            await store.advance_read_marker("alice", "#dev", "#Dev", 5)
            await store.advance_read_marker("alice", "#dev", "#Dev", 3)  # never back
            await store.advance_read_marker("alice", "#lobby", "#lobby", 7)
            await store.advance_read_marker("bob", "#lobby", "#lobby", 2)
        async with Store.open(path) as store:
            assert await store.read_markers("alice") == [
                ("#dev", "#Dev", 5),
                ("#lobby", "#lobby", 7),
            ]
            assert await store.read_markers("bob") == [("#lobby", "#lobby", 2)]
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    finally:
        conn.close()


# ----------------------------------------------------------------- real connections


def reads(client: ChatClient) -> list[tuple[str, int]]:
    return [(e.room, e.message_id) for e in client.history if e.TYPE == "read"]


async def settled(client: ChatClient, ref: str = "s") -> None:
    """Every frame ``client`` sent before has been handled (a read marker saved too)."""
    await client.send({"type": "ping", "ref": ref})
    await client.expect("pong", lambda e: e.ref == ref)


async def message_ids(client: ChatClient, *texts: str) -> list[int]:
    ids = []
    for text in texts:
        await client.say(text)
        ids.append((await client.expect("message", lambda e, t=text: e.text == t)).id)
    return ids


class TextUser:
    """A person on ``nc``: lines in, lines out."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.seen = b""

    async def send(self, line: str) -> None:
        await trio.to_thread.run_sync(self.sock.sendall, line.encode() + b"\n")

    async def wait_for(self, needle: bytes) -> bytes:
        with trio.fail_after(TIMEOUT):
            while needle not in self.seen:
                chunk = await trio.to_thread.run_sync(self.sock.recv, 65536)
                assert chunk, "the server closed the connection"
                self.seen += chunk
        return self.seen


async def test_a_marker_syncs_to_the_users_other_connections_only() -> None:
    async with open_test_server() as chat, contextlib.AsyncExitStack() as stack:
        laptop = await stack.enter_async_context(device(chat, register=True))
        phone = await stack.enter_async_context(device(chat, websocket=True))
        bob = await stack.enter_async_context(open_client(chat, "bob"))
        first, second = await message_ids(bob, "one", "two")
        await laptop.send({"type": "read", "id": first})
        event = await phone.expect("read")
        assert (event.room, event.message_id) == ("#lobby", first)
        await laptop.send({"type": "read", "room": "#lobby", "id": second})
        await phone.expect("read", lambda e: e.message_id == second)
        await phone.send({"type": "read", "id": first})  # backwards: nothing happens
        await settled(phone)
        await laptop.send({"type": "read", "id": second})  # the same: nothing either
        await settled(laptop)
        await message_ids(bob, "three")
        for client in (laptop, phone):
            await client.expect("message", lambda e: e.text == "three")
        assert reads(laptop) == [] and reads(phone) == [("#lobby", first), ("#lobby", second)]
        assert reads(bob) == []
        assert chat.server.read_marker(chat.server.hub.find("alice"), "#LOBBY") == second


async def test_three_connections_see_each_other_and_sync_markers_and_typing() -> None:
    """The multi-device case: JSON lines, WebSocket and a text-mode /login of one account."""
    async with open_test_server() as chat, contextlib.AsyncExitStack() as stack:
        tcp = await stack.enter_async_context(device(chat, register=True))
        ws = await stack.enter_async_context(open_client(chat, websocket=True))
        await ws.login("alice", password=PASSWORD, typing=True)
        bob = await stack.enter_async_context(open_client(chat))
        await bob.login("bob", typing=True)
        sock = stack.enter_context(socket.create_connection(chat.address("tcp")))
        sock.settimeout(TIMEOUT)
        nc = TextUser(sock)
        await nc.send(f"/login alice {PASSWORD}")
        await nc.wait_for(b"now on 3 connections")
        assert len(chat.server.hub.find("alice").devices) == 3

        # Each sees the others' lines.
        await tcp.say("from json lines")
        await ws.say("from the browser")
        await nc.send("from nc")
        for client in (tcp, ws, bob):
            for text in ("from json lines", "from the browser", "from nc"):
                await client.expect("message", lambda e, t=text: e.text == t)
        await nc.wait_for(b"<alice> from the browser")
        last = max(e.id for e in bob.history if e.TYPE == "message")

        # A marker moved on one reaches the other two (text mode shows nothing for it).
        await tcp.send({"type": "read", "id": last})
        await ws.expect("read", lambda e: e.message_id == last)
        await bob.say("more")
        await nc.wait_for(b"<bob> more")
        await nc.send("/read")  # everything delivered so far, from text mode
        await nc.wait_for(b"-- #lobby marked read up to")
        later = chat.server.read_marker(chat.server.hub.find("alice"), "#lobby")
        assert later is not None and later > last
        for client in (tcp, ws):
            await client.expect("read", lambda e: e.message_id == later)
        # (Before the render of read events was "", they showed as "-- read" lines.)
        assert b"-- read\n" not in nc.seen and b"\n\n" not in nc.seen

        # bob's typing reaches the connection that asked, not the others.
        await bob.send({"type": "typing", "active": True})
        await ws.expect("typing", lambda e: e.nick == "bob" and e.active)
        await bob.say("typed")
        for client in (tcp, ws):
            await client.expect("message", lambda e: e.text == "typed")
        await nc.wait_for(b"<bob> typed")
        assert [e for e in tcp.history if e.TYPE == "typing"] == []
        assert b"typing" not in nc.seen

        # The user leaves only with the last connection.
        await tcp.send({"type": "quit"})
        await tcp.expect("bye")
        await ws.aclose()
        await bob.say("still two?")
        await nc.wait_for(b"<bob> still two?")
        assert [e for e in bob.history if e.TYPE == "leave"] == []
        await nc.send("/quit")
        leave = await bob.expect("leave")
        assert leave.nick == "alice"


async def test_welcome_and_join_carry_the_markers_and_they_survive_a_restart(
    tmp_path: Path,
) -> None:
    config = local_config(db=str(tmp_path / "chat.db"))
    async with open_test_server(config=config) as chat:
        async with device(chat, register=True) as alice, open_client(chat, "bob") as bob:
            (lobby_id,) = await message_ids(bob, "in the lobby")
            await bob.command("/join #dev")
            await alice.command("/join #dev")
            await alice.expect("join", lambda e: e.nick == "alice" and e.room == "#dev")
            (dev_id,) = await message_ids(bob, "in dev")
            await alice.send({"type": "read", "room": "#lobby", "id": lobby_id})
            await alice.send({"type": "read", "room": "#dev", "id": dev_id})
            await settled(alice)
            # A further connection: the welcome has both, and a read event follows for each.
            async with device(chat, websocket=True) as phone:
                welcome = phone.history[-1]
                assert welcome.read == {"#lobby": lobby_id, "#dev": dev_id}
                got = []
                for _ in range(2):
                    got.append((await phone.expect("read")).message_id)
                assert sorted(got) == [lobby_id, dev_id]
    async with open_test_server(config=config) as chat:
        async with device(chat) as alice:
            # A new session: its welcome has #lobby's (it joins it next), and a read comes
            # after the join and the history.
            assert alice.history[-1].read == {"#lobby": lobby_id}
            kinds = []
            while not kinds or kinds[-1] != "read":
                kinds.append((await alice.receive()).TYPE)
            assert kinds == ["join", "history", "read"]
            assert reads(alice) == [("#lobby", lobby_id)]
            await alice.send({"type": "command", "name": "join", "args": "#dev"})
            await alice.expect("join", lambda e: e.room == "#dev")
            read = await alice.expect("read", lambda e: e.room == "#dev")
            assert read.message_id == dev_id


async def test_guests_keep_markers_for_their_session_and_refusals_are_clear() -> None:
    async with open_test_server() as chat:
        async with open_client(chat, "gus") as gus:
            (said,) = await message_ids(gus, "hello")
            assert gus.history[0].read is None  # a guest starts with none
            await gus.send({"type": "read", "id": said})
            await gus.command("/join #dev")
            await gus.expect("join", lambda e: e.room == "#dev")
            await gus.send({"type": "command", "name": "part", "args": "#lobby"})
            await gus.expect("leave", lambda e: e.room == "#lobby")
            await gus.command("/join #lobby")
            await gus.expect("join", lambda e: e.room == "#lobby" and e.nick == "gus")
            read = await gus.expect("read")
            assert (read.room, read.message_id) == ("#lobby", said)

            async def refused(frame: dict[str, Any], ref: str) -> Any:
                await gus.send({**frame, "ref": ref})
                return await gus.expect("error", lambda e: e.ref == ref)

            error = await refused({"type": "read", "room": "#nowhere", "id": said}, "a")
            assert (error.code, error.text) == ("not_in_room", "you are not in #nowhere")
            error = await refused({"type": "read", "id": 10**9}, "b")
            assert (error.code, error.text) == ("bad_field", "there is no message 1000000000 yet")
            assert (await refused({"type": "read"}, "c")).code == "missing_field"
            assert (await refused({"type": "read", "id": -1}, "d")).code == "bad_field"
            assert (await refused({"type": "read", "id": "5"}, "e")).code == "bad_field"
            await gus.send({"type": "command", "name": "read", "args": "soon", "ref": "f"})
            assert (await gus.expect("error", lambda e: e.ref == "f")).code == "bad_arguments"
            await gus.send({"type": "command", "name": "read", "args": str(said), "ref": "g"})
            reply = await gus.expect("info", lambda e: e.ref == "g")
            assert reply.text == f"#lobby was read up to {said} already"
            assert reply.data == {"room": "#lobby", "read": said}
        async with open_client(chat, "gus") as again:  # a new guest session: nothing kept
            assert again.history[0].read is None
            await again.expect("join")
            await settled(again)
            assert reads(again) == []


async def json_lines(stream: trio.abc.Stream, buffer: list[bytes], wanted: str) -> dict[str, Any]:
    """The next event of type ``wanted`` on ``stream`` (``buffer`` keeps what came after)."""
    with trio.fail_after(15):
        while True:
            while b"\n" in buffer[0]:
                line, buffer[0] = buffer[0].split(b"\n", 1)
                if is_prompt(line):
                    continue  # our hello came after the sniff delay
                event = json.loads(line)
                if event["type"] == wanted:
                    return dict(event)
            chunk = await stream.receive_some(65536)
            assert chunk, "the server closed the connection"
            buffer[0] += chunk


async def test_a_marker_survives_sigkill(tmp_path: Path) -> None:
    db = tmp_path / "chat.db"
    async with running_server(db) as (process, port):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            buffer = [b""]
            hello = {"type": "hello", "nick": "alice", "password": PASSWORD, "register": True}
            await stream.send_all(json.dumps(hello).encode() + b"\n")
            await json_lines(stream, buffer, "welcome")
            await stream.send_all(b'{"type":"say","text":"read me"}\n')
            said = await json_lines(stream, buffer, "message")
            await stream.send_all(b'{"type":"read","id":%d}\n' % said["id"])
            # Frames are handled in order, each to its end: the pong says it was saved.
            await stream.send_all(b'{"type":"ping","ref":"p"}\n')
            await json_lines(stream, buffer, "pong")
            await sigkill(process)  # no goodbye, no flush
    async with running_server(db) as (process, port):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            buffer = [b""]
            hello = {"type": "hello", "nick": "alice", "password": PASSWORD}
            await stream.send_all(json.dumps(hello).encode() + b"\n")
            welcome = await json_lines(stream, buffer, "welcome")
            assert welcome["read"] == {"#lobby": said["id"]}
            assert await json_lines(stream, buffer, "read") == {
                "type": "read",
                "room": "#lobby",
                "id": said["id"],
            }


async def test_an_irc_connection_of_the_user_skips_read_and_typing_events() -> None:
    async with open_test_server(config=local_config(irc_port=0)) as chat:
        async with device(chat, register=True) as laptop, open_client(chat) as bob:
            await bob.login("bob", typing=True)
            host, port = chat.address("irc")
            stream = await trio.open_tcp_stream(host, port)
            async with stream:
                seen = b""

                async def irc_until(needle: bytes) -> None:
                    nonlocal seen
                    with trio.fail_after(TIMEOUT):
                        while needle not in seen:
                            chunk = await stream.receive_some(65536)
                            assert chunk, f"the IRC connection closed; saw {seen[-300:]!r}"
                            seen += chunk

                await stream.send_all(
                    f"PASS {PASSWORD}\r\nNICK alice\r\nUSER alice 0 * :Alice\r\n".encode()
                )
                await irc_until(b" 001 alice ")
                assert len(chat.server.hub.find("alice").devices) == 2
                (said,) = await message_ids(bob, "mark me")
                await irc_until(b"PRIVMSG #lobby :mark me")
                await laptop.send({"type": "read", "id": said})
                await laptop.send({"type": "typing", "active": True})
                await bob.expect("typing", lambda e: e.nick == "alice")
                await bob.send({"type": "typing", "active": True})
                await bob.say("after typing")
                await irc_until(b"PRIVMSG #lobby :after typing")
                tail = seen.split(b"PRIVMSG #lobby :mark me", 1)[1]
                assert tail.count(b"\r\n") == 2  # the line it was in, and "after": nothing else
                await stream.send_all(b"PING :still-there\r\n")
                await irc_until(b"still-there")


async def test_markers_and_typing_with_a_broker(broker_url: str) -> None:
    """With ``--broker`` the events go through the node's shared log order (read markers
    of a user's connections on one node; typing, to the users of that node and of the
    others, before the line that ends it)."""
    config = local_config(broker=broker_url)
    async with (
        open_test_server(config=config) as a,
        open_test_server(config=config) as b,
        contextlib.AsyncExitStack() as stack,
    ):
        laptop = await stack.enter_async_context(device(a, register=True))
        phone = await stack.enter_async_context(device(a, websocket=True))
        near = await stack.enter_async_context(open_client(a))
        await near.login("near", typing=True)
        far = await stack.enter_async_context(open_client(b))
        await far.login("far", typing=True)
        await laptop.expect("join", lambda e: e.nick == "far")
        (said,) = await message_ids(far, "from the other node")
        await laptop.expect("message", lambda e: e.id == said)
        await laptop.send({"type": "read", "id": said})
        assert (await phone.expect("read")).message_id == said
        await laptop.send({"type": "typing", "active": True})
        typing = await near.expect("typing")
        assert (typing.nick, typing.active) == ("alice", True)
        (last,) = await message_ids(laptop, "after typing")
        await far.expect("message", lambda e: e.id == last)
        kinds = [e.TYPE for e in far.history if e.TYPE in ("typing", "message")]
        assert kinds[-2:] == ["typing", "message"]
        assert reads(laptop) == [] and reads(far) == []


class UsersFile:
    """An auth backend (a plugin): ``alice`` with :data:`PASSWORD`, on a server without a
    database, whose accounts' read markers then live in memory for the server's run."""

    @trio_chat.hookimpl
    def authenticate(self, server: Any, nick: str, password: str, address: str) -> bool | None:
        return password == PASSWORD if nick == "alice" else None

    @trio_chat.hookimpl
    def is_account(self, server: Any, nick: str) -> bool | None:
        return True if nick == "alice" else None


async def test_without_a_database_an_accounts_markers_last_for_the_run() -> None:
    async with open_test_server(UsersFile(), config=local_config(db=None)) as chat:
        async with device(chat) as alice, open_client(chat, "bob") as bob:
            (said,) = await message_ids(bob, "remember me")
            await alice.expect("message", lambda e: e.id == said)
            await alice.send({"type": "read", "id": said})
            await settled(alice)
        async with device(chat) as again:  # a new session of the account, same run
            assert again.history[-1].read == {"#lobby": said}
            assert (await again.expect("read")).message_id == said
