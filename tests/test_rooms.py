"""Rooms, private messages, presence and moderation, over TCP and WebSocket."""

from __future__ import annotations

from trio_chat.testing import ChatClient, TestServer, local_config, open_client, open_test_server


async def roster(client: ChatClient, room: str = "") -> dict[str, dict[str, object]]:
    await client.command(f"/who {room}".strip())
    info = await client.expect("info", lambda e: e.data and "members" in e.data)
    return {m["nick"]: m for m in info.data["members"]}


async def test_three_users_across_transports_in_several_rooms(chat_server: TestServer) -> None:
    async with (
        open_client(chat_server, "alice") as alice,
        open_client(chat_server, "bob", websocket=True) as bob,
        open_client(chat_server, "carol") as carol,
    ):
        await alice.command("/join #dev")
        await alice.expect("info", lambda e: e.data == {"room": "#dev", "topic": ""})
        await bob.command("/join dev")  # the '#' is optional
        for client in (alice, bob):
            event = await client.expect("join", lambda e: e.nick == "bob" and e.room == "#dev")
        await alice.say("in dev")  # alice's current room is now #dev
        for client in (alice, bob):
            event = await client.expect("message")
            assert (event.room, event.text) == ("#dev", "in dev")
        await bob.say("in lobby", room="#lobby")
        event = await carol.expect("message")
        assert (event.room, event.text) == ("#lobby", "in lobby")
        assert [e.text for e in carol.history if e.TYPE == "message"] == ["in lobby"]
        assert not [e for e in carol.history if getattr(e, "room", None) == "#dev"]

        assert set(await roster(carol, "#dev")) == {"alice", "bob"}
        await carol.command("/rooms")
        info = await carol.expect("info", lambda e: e.data and "rooms" in e.data)
        assert {r["name"]: r["members"] for r in info.data["rooms"]} == {"#dev": 2, "#lobby": 3}

        await bob.command("/part #dev")
        await bob.expect("info", lambda e: e.data == {"room": "#lobby", "left": "#dev"})
        event = await alice.expect("leave", lambda e: e.room == "#dev")
        assert (event.nick, event.reason) == ("bob", "parted")
        await bob.command("/part #dev")
        assert (await bob.expect("error")).code == "not_in_room"


async def test_private_messages_reach_only_the_two(chat_server: TestServer) -> None:
    async with (
        open_client(chat_server, "alice") as alice,
        open_client(chat_server, "bob", websocket=True) as bob,
        open_client(chat_server, "carol") as carol,
    ):
        await alice.command("/msg BOB psst, secret")
        for client in (bob, alice):
            event = await client.expect("private")
            assert (event.nick, event.to, event.text) == ("alice", "bob", "psst, secret")
        await alice.say("public")
        await carol.expect("message", lambda e: e.text == "public")
        assert not [e for e in carol.history if "secret" in str(e)]

        await alice.command("/msg nobody hi")
        assert (await alice.expect("error")).code == "no_such_nick"
        await alice.command("/msg bob")
        assert (await alice.expect("error")).code == "bad_arguments"

        await bob.command("/away lunch")
        await bob.expect("info", lambda e: e.data == {"away": "lunch"})
        assert (await roster(carol))["bob"]["away"] == "lunch"
        await carol.command("/msg bob are you there?")
        # The echo waits for the store; the away notice does not: either may come first.
        replies = {e.TYPE: e for e in [await carol.receive(), await carol.receive()]}
        assert replies["private"].text == "are you there?"
        assert replies["info"].text == "bob is away: lunch"
        await bob.command("/away")
        await bob.expect("info", lambda e: e.data == {"away": None})
        assert (await roster(carol))["bob"]["away"] is None


async def test_topic(chat_server: TestServer) -> None:
    async with open_client(chat_server, "alice") as alice, open_client(chat_server, "bob") as bob:
        await alice.join("#dev")  # first in: the operator
        await bob.command("/join #dev")
        await alice.expect("join", lambda e: e.nick == "bob")
        await bob.command("/topic hijack")
        error = await bob.expect("error")
        assert error.code == "not_allowed"
        await alice.command("/topic Release on Friday")
        for client in (alice, bob):
            event = await client.expect("topic")
            assert (event.room, event.nick, event.topic) == ("#dev", "alice", "Release on Friday")
        await bob.command("/topic")
        assert (await bob.expect("info")).data == {"room": "#dev", "topic": "Release on Friday"}


async def test_moderation_allowed_for_operators_refused_for_others(
    chat_server: TestServer,
) -> None:
    async with (
        open_client(chat_server, "owner") as owner,
        open_client(chat_server, "bob") as bob,
        open_client(chat_server, "carol", websocket=True) as carol,
    ):
        await owner.join("#club")  # the creator is the operator
        for client in (bob, carol):
            await client.join("#club")
        assert (await roster(owner, "#club"))["owner"]["op"] is True

        for attempt in ("/kick owner", "/ban owner", "/mute owner", "/op bob", "/unban x"):
            await bob.command(attempt)
            error = await bob.expect("error")
            assert error.code == "not_allowed", attempt
        assert set(await roster(owner, "#club")) == {"owner", "bob", "carol"}

        # mute / unmute
        await owner.command("/mute carol")
        await owner.expect("info", lambda e: "muted" in e.text)
        await carol.say("can I talk?", room="#club")
        assert (await carol.expect("error")).code == "not_allowed"
        await owner.command("/unmute carol")
        await carol.expect("info", lambda e: "unmuted" in e.text)
        await carol.say("thanks", room="#club")
        assert (await bob.expect("message", lambda e: e.room == "#club")).text == "thanks"

        # op: bob becomes an operator and can kick
        await owner.command("/op bob")
        await bob.expect("info", lambda e: "operator" in e.text)
        await bob.command("/kick carol spamming")
        for client in (owner, bob, carol):
            event = await client.expect("leave", lambda e: e.nick == "carol")
            assert event.reason == "kicked by bob: spamming"
        await carol.join("#club")  # a kick is not a ban

        # ban / unban
        await owner.command("/ban carol")
        event = await carol.expect("leave", lambda e: e.nick == "carol")
        assert event.reason == "banned by owner"
        await carol.command("/join #club")
        error = await carol.expect("error")
        assert (error.code, error.text) == ("not_allowed", "you are banned from #club")
        await owner.command("/unban carol")
        await owner.expect("info", lambda e: "may join" in e.text)
        await carol.join("#club")


async def test_server_admins_are_operators_everywhere() -> None:
    config = local_config(admins=["root"], admin_password="hunter2")
    async with open_test_server(config=config) as chat:
        async with open_client(chat, "root") as root, open_client(chat, "bob") as bob:
            await bob.command("/oper hunter2")  # right password, but bob is no admin
            assert (await bob.expect("error")).code == "not_allowed"
            await root.command("/oper wrong")
            assert (await root.expect("error")).code == "not_allowed"
            await root.command("/kick bob")
            assert (await root.expect("error")).code == "not_allowed"
            await root.command("/oper hunter2")
            await root.expect("info", lambda e: "administrator" in e.text)
            await root.command("/kick bob rules")
            event = await bob.expect("leave")
            assert (event.room, event.reason) == ("#lobby", "kicked by root: rules")


async def test_big_rooms_announce_joins_and_leaves_to_the_user_concerned_only() -> None:
    config = local_config(quiet_room_size=2)
    async with open_test_server(config=config) as chat:
        async with open_client(chat, "alice") as alice, open_client(chat, "bob") as bob:
            await alice.expect("join", lambda e: e.nick == "bob")  # 2 members: announced
            async with open_client(chat, "carol") as carol:
                await carol.expect("join", lambda e: e.nick == "carol")  # told about itself
                assert set((await roster(alice)).keys()) == {"alice", "bob", "carol"}
            await bob.say("after carol left")
            await alice.expect("message", lambda e: e.text == "after carol left")
            quiet = [e for e in alice.history if getattr(e, "nick", None) == "carol"]
            assert quiet == []  # neither carol's join nor her leave reached alice
