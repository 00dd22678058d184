"""The terminal client as a second connection of a user already connected elsewhere
(protocol section 4, "Several connections of one user"): its welcome lists the rooms the
user is in, and no ``join`` comes for them."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import trio
import trio.testing
from test_client import WAIT, RawClient, raw_client, running_client

from trio_chat.client.app import ChatClient
from trio_chat.client.completion import completions
from trio_chat.client.connection import Target
from trio_chat.client.terminal import PipeTerminal
from trio_chat.names import name_key
from trio_chat.protocol import Welcome
from trio_chat.server import ChatServer
from trio_chat.testing import local_config

PASSWORD = "s3cret-pass"


async def test_a_second_connection_knows_the_rooms_its_user_is_in(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    config = local_config(ws_port=None, db=str(tmp_path / "chat.db"))
    chat = ChatServer(config)
    chat_done = trio.Event()

    async def serve_chat(task_status: trio.TaskStatus[list[str]]) -> None:
        try:
            await chat.serve(task_status=task_status)
        finally:
            chat_done.set()

    (address,) = await nursery.start(serve_chat)
    host, port = address.removeprefix("tcp://").rsplit(":", 1)
    with trio.fail_after(WAIT):
        stream = await trio.open_tcp_stream(host, int(port))
    async with (
        stream,
        raw_client({"tcp": address}, "bob") as bob,
        running_client("127.0.0.1", "--port", port, "--nick", "alice") as alice,
    ):
        first = RawClient(stream)  # alice's first connection
        await first.send(type="hello", nick="alice", password=PASSWORD, register=True)
        await first.expect("welcome", nick="alice")
        for who, nick in ((first, "alice"), (bob, "bob")):
            await who.send(type="command", name="join", args="#dev")
            await who.expect("join", nick=nick, room="#dev")
        # The client's nick is an account's: it asks for the password, on stdin.
        await alice.expect("Password for alice")
        await alice.send_line(PASSWORD)
        welcome = await alice.expect("-- Hello alice")
        assert "you are in #lobby, #dev" in welcome
        assert "now on 2 connections" in welcome
        # #dev is current (the user's current room): its lines come without a prefix, the
        # other room's with one.
        await bob.send(type="say", room="#dev", text="hi in dev")
        assert (await alice.expect("hi in dev")).endswith("] <bob> hi in dev")
        await bob.send(type="say", room="#lobby", text="hi in lobby")
        assert (await alice.expect("hi in lobby")).endswith("] #lobby <bob> hi in lobby")

        # A restart ends both connections; the client comes back alone, in both rooms.
        chat.shutdown()
        with trio.fail_after(WAIT):
            await chat_done.wait()
        again = ChatServer(replace(config, port=int(port)))
        addresses = await nursery.start(again.serve)
        await alice.expect("-- back in #lobby, #dev")
        async with raw_client({"tcp": addresses[0]}, "bob") as bob_again:
            await bob_again.send(type="command", name="join", args="#dev")
            await bob_again.expect("join", nick="bob", room="#dev")
            await bob_again.send(type="say", room="#dev", text="after the restart")
            line = await alice.expect("after the restart")
            assert line.endswith("] <bob> after the restart")
            await alice.send_line("/part #dev")
            await alice.expect("left #dev")
            await bob_again.expect("leave", nick="alice", room="#dev")
        status, stderr = await alice.finish()
        again.shutdown()
    assert (status, stderr) == (0, "")


def test_the_rooms_of_a_second_connections_welcome_are_known() -> None:
    client = ChatClient(
        Target("tcp", "localhost", 1), PipeTerminal(trio.testing.MemoryReceiveStream()), "alice"
    )
    welcome = Welcome(
        nick="alice",
        room="#dev",
        server="trio-chat",
        version="0",
        account=True,
        rooms=["#lobby", "#dev"],
        connections=2,
    )
    client._follow(welcome)
    assert client.room == "#dev"
    assert [state.name for state in client.rooms.values()] == ["#lobby", "#dev"]
    assert name_key("#dev") in client.rooms
    assert completions(client, "/part #") == (6, ["#lobby ", "#dev "])
    # (A reconnect's resync then rejoins them, #dev last so that it stays current.)
    client.resume.start(client.rooms, client.room, now=0.0)
    assert client.resume.rejoins(client.rooms) == (False, [name_key("#lobby"), name_key("#dev")])
