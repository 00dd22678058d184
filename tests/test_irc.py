"""IRC clients in the chat, over real sockets: raw IRC lines in and out, beside JSON,
WebSocket and text (nc) users of the same rooms."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio
import trustme

from trio_chat.hookspecs import hookimpl
from trio_chat.irc import numerics as n
from trio_chat.irc.message import IrcMessage, parse_line
from trio_chat.testing import (
    DEFAULT_TIMEOUT,
    TestServer,
    local_config,
    open_client,
    open_test_server,
)


class IrcClient:
    """Raw IRC lines over a socket, and a reader that waits for the line it wants."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.buffer = b""
        self.seen: list[IrcMessage] = []

    async def send(self, *lines: str | bytes) -> None:
        data = b"".join((x.encode() if isinstance(x, str) else x) + b"\r\n" for x in lines)
        await self.stream.send_all(data)

    async def next_line(self) -> IrcMessage | None:
        """The next line, or ``None`` once the server closed the connection."""
        with trio.fail_after(DEFAULT_TIMEOUT):
            while b"\r\n" not in self.buffer:
                data = await self.stream.receive_some(65536)
                if not data:
                    return None
                self.buffer += data
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        assert len(line.partition(b" ")[2] if line.startswith(b"@") else line) <= 510
        message = parse_line(line)
        self.seen.append(message)
        return message

    async def expect(
        self, command: str, predicate: Callable[[IrcMessage], bool] | None = None
    ) -> IrcMessage:
        """Skip lines until one with ``command`` (and ``predicate``) arrives."""
        while True:
            message = await self.next_line()
            assert message is not None, f"closed before {command}; saw {self.seen[-5:]}"
            if message.command == command and (predicate is None or predicate(message)):
                return message

    async def register(self, nick: str, *before: str) -> IrcMessage:
        await self.send(*before, f"NICK {nick}", f"USER {nick} 0 * :{nick} here")
        welcome = await self.expect(n.RPL_WELCOME)
        await self.expect(n.RPL_ENDOFNAMES)  # the join of #lobby, with its names
        return welcome


@asynccontextmanager
async def open_irc(
    chat: TestServer, nick: str | None = None, *before: str
) -> AsyncIterator[IrcClient]:
    host, port = chat.address("irc")
    stream = await trio.open_tcp_stream(host, port)
    async with stream:
        client = IrcClient(stream)
        if nick is not None:
            await client.register(nick, *before)
        yield client


@pytest.fixture
async def chat() -> AsyncIterator[TestServer]:
    async with open_test_server(config=local_config(irc_port=0)) as server:
        yield server


async def test_registration_welcome_isupport_and_lobby(chat: TestServer) -> None:
    async with open_irc(chat) as irc:
        await irc.send("NICK alice", "USER alice 0 * :Alice Liddell")
        welcome = await irc.expect(n.RPL_WELCOME)
        assert welcome.params[0] == "alice"
        tokens = [t for m in [await irc.expect(n.RPL_ISUPPORT)] for t in m.params[1:-1]]
        assert "NICKLEN=24" in tokens and "CHANTYPES=#" in tokens
        await irc.expect(n.RPL_ENDOFMOTD)
        join = await irc.expect("JOIN")
        assert (join.source, join.params) == ("alice!alice@trio-chat", ("#lobby",))
        names = await irc.expect(n.RPL_NAMREPLY)
        assert names.params[-1] == "alice"
        await irc.send("PING :are-you-there")
        pong = await irc.expect("PONG")
        assert pong.params[-1] == "are-you-there"


async def test_commands_before_registration_and_taken_nicks(chat: TestServer) -> None:
    async with open_client(chat, "bob"), open_irc(chat) as irc:
        await irc.send("JOIN #a")
        assert (await irc.expect(n.ERR_NOTREGISTERED)).params[0] == "*"
        await irc.send("NICK BOB")
        taken = await irc.expect(n.ERR_NICKNAMEINUSE)
        assert taken.params[1] == "BOB"
        await irc.send("NICK 1abc")
        assert "digit" in (await irc.expect(n.ERR_ERRONEUSNICKNAME)).params[-1]
        await irc.send("USER x 0 * :")
        assert (await irc.expect(n.ERR_NEEDMOREPARAMS)).params[1] == "USER"
        await irc.send("NICK bob2", "USER x 0 * :x")
        assert (await irc.expect(n.RPL_WELCOME)).params[0] == "bob2"


async def test_irc_json_websocket_and_text_users_talk_in_one_room(chat: TestServer) -> None:
    host, port = chat.address("tcp")
    text = await trio.open_tcp_stream(host, port)
    async with (
        text,
        open_client(chat, "jay") as jay,
        open_client(chat, "wes", websocket=True) as wes,
        open_irc(chat, "ivy") as ivy,
    ):
        await text.send_all(b"tex\n")
        await ivy.expect("JOIN", lambda m: m.source == "tex!tex@trio-chat")

        await ivy.send("PRIVMSG #lobby :hello from irc", "PRIVMSG #lobby :\x01ACTION waves\x01")
        for client in (jay, wes):
            said = await client.expect("message", lambda e: e.nick == "ivy")
            assert (said.room, said.text, said.kind) == ("#lobby", "hello from irc", "say")
            acted = await client.expect("message", lambda e: e.nick == "ivy")
            assert (acted.text, acted.kind) == ("waves", "action")
        seen = b""
        with trio.fail_after(DEFAULT_TIMEOUT):
            while b"* ivy waves" not in seen:
                seen += await text.receive_some(4096)
        assert b"<ivy> hello from irc" in seen

        # Three senders on three sockets: each line is awaited before the next is sent,
        # since nothing orders lines of different connections sent at once.
        await jay.say("from json")
        got = await ivy.expect("PRIVMSG")
        assert (got.source, got.params) == ("jay!jay@trio-chat", ("#lobby", "from json"))
        await wes.command("/me nods")
        got = await ivy.expect("PRIVMSG")
        assert (got.source, got.params) == ("wes!wes@trio-chat", ("#lobby", "\x01ACTION nods\x01"))
        await text.send_all(b"from nc\n")
        got = await ivy.expect("PRIVMSG")
        assert (got.source, got.params) == ("tex!tex@trio-chat", ("#lobby", "from nc"))


async def test_private_messages_both_ways(chat: TestServer) -> None:
    async with open_client(chat, "jay") as jay, open_irc(chat, "ivy") as ivy:
        await ivy.send("PRIVMSG jay :psst")
        private = await jay.expect("private")
        assert (private.nick, private.to, private.text) == ("ivy", "jay", "psst")
        await jay.command("/msg ivy hush")
        got = await ivy.expect("PRIVMSG")
        assert (got.source, got.params) == ("jay!jay@trio-chat", ("ivy", "hush"))
        await ivy.send("PRIVMSG ghost :anyone?")
        assert (await ivy.expect(n.ERR_NOSUCHNICK)).params[1] == "ghost"


async def test_a_long_json_line_is_split_for_irc_never_cut(chat: TestServer) -> None:
    async with open_client(chat, "jay") as jay, open_irc(chat, "ivy") as ivy:
        words = [f"w{i:04d}é" for i in range(400)]
        await jay.say(" ".join(words))
        pieces: list[str] = []
        while len(" ".join(pieces)) < len(" ".join(words)):
            pieces.append((await ivy.expect("PRIVMSG")).params[1])
        assert len(pieces) > 3
        assert " ".join(pieces) == " ".join(words)


async def test_nick_change_topic_away_and_queries(chat: TestServer) -> None:
    async with open_client(chat, "jay") as jay, open_irc(chat, "ivy") as ivy:
        await ivy.send("JOIN #tea")
        await ivy.expect(n.RPL_ENDOFNAMES, lambda m: m.params[1] == "#tea")
        await jay.command("/join #tea")
        await ivy.expect("JOIN", lambda m: m.source.startswith("jay!"))

        await ivy.send("TOPIC #tea :green or black")
        topic = await jay.expect("topic")
        assert (topic.nick, topic.topic) == ("ivy", "green or black")
        await jay.command("/join #tea")
        await ivy.send("TOPIC #tea")
        assert (await ivy.expect(n.RPL_TOPIC)).params[-1] == "green or black"

        await ivy.send("NICK ivy2")
        assert (await ivy.expect("NICK")).params == ("ivy2",)
        renamed = await jay.expect("nick")
        assert (renamed.old, renamed.new) == ("ivy", "ivy2")

        await ivy.send("AWAY :brewing")
        await ivy.expect(n.RPL_NOWAWAY)
        await ivy.send("WHOIS ivy2", "WHO #tea", "NAMES #tea", "ISON jay ghost ivy2", "LIST")
        assert (await ivy.expect(n.RPL_AWAY)).params[-1] == "brewing"
        await ivy.expect(n.RPL_ENDOFWHOIS)
        who = [await ivy.expect(n.RPL_WHOREPLY) for _ in range(2)]
        assert {(m.params[5], m.params[6]) for m in who} == {("ivy2", "G@"), ("jay", "H")}
        names = await ivy.expect(n.RPL_NAMREPLY)
        assert sorted(names.params[-1].split()) == ["@ivy2", "jay"]
        assert (await ivy.expect(n.RPL_ISON)).params[-1] == "jay ivy2"
        listed = {m.params[1]: m.params[2] for m in [await ivy.expect(n.RPL_LIST)]}
        listed.update({m.params[1]: m.params[2] for m in [await ivy.expect(n.RPL_LIST)]})
        assert listed == {"#lobby": "2", "#tea": "2"}
        await ivy.send("PART #tea :bye")
        parted = await jay.expect("leave")
        assert (parted.nick, parted.room) == ("ivy2", "#tea")
        assert (await ivy.expect("PART")).params[0] == "#tea"


async def test_operator_modes_kick_ban_and_mute(chat: TestServer) -> None:
    async with open_client(chat, "jay") as jay, open_irc(chat, "ivy") as ivy:
        await ivy.send("JOIN #mod")
        await ivy.expect(n.RPL_ENDOFNAMES, lambda m: m.params[1] == "#mod")
        await jay.command("/join #mod")
        await ivy.expect("JOIN", lambda m: m.source.startswith("jay!"))

        await ivy.send("MODE #mod +q jay")
        assert (await ivy.expect("MODE")).params == ("#mod", "+q", "jay")
        await jay.say("can you hear me", room="#mod")
        assert (await jay.expect("error")).code == "not_allowed"
        await ivy.send("MODE #mod -q jay")
        await ivy.expect("MODE")
        await jay.say("and now?", room="#mod")
        assert (await ivy.expect("PRIVMSG")).params == ("#mod", "and now?")

        await ivy.send("MODE #mod +o jay")
        assert (await ivy.expect("MODE")).params == ("#mod", "+o", "jay")
        await ivy.send("MODE #mod -o jay", "KICK #mod jay :enough")
        await ivy.expect("MODE")
        kick = await ivy.expect("KICK")
        assert (kick.source, kick.params) == ("ivy!ivy@trio-chat", ("#mod", "jay", "enough"))
        assert (await jay.expect("leave")).reason == "kicked by ivy: enough"

        await ivy.send("MODE #mod +b jay!*@*", "MODE #mod +b")
        assert (await ivy.expect("MODE")).params == ("#mod", "+b", "jay!*@*")
        await ivy.expect(n.RPL_BANLIST)
        await jay.command("/join #mod")
        assert (await jay.expect("error")).code == "not_allowed"

        # jay, not an operator, gets told; in IRC words, ivy would get 482.
        # jay is in #jays (its operator) before ivy asks to join: nothing orders two
        # connections' lines but the answers.
        await jay.join("#jays")
        await ivy.send("JOIN #jays")
        await ivy.expect(n.RPL_ENDOFNAMES, lambda m: m.params[1] == "#jays")
        await ivy.send("KICK #jays jay", "MODE #jays +o ivy", "TOPIC #jays :mine")
        for _ in range(3):
            refused = await ivy.expect(n.ERR_CHANOPRIVSNEEDED)
            assert refused.params[1] == "#jays"


async def test_bad_input_gets_numerics_and_costs_nobody_anything(chat: TestServer) -> None:
    async with open_client(chat, "jay") as jay, open_irc(chat, "ivy") as ivy:
        await ivy.send(
            "PRIVMSG #lobby :" + "x" * 600,
            b"PRIVMSG #lobby :caf\xe9",
            "FROBNICATE now",
            "PRIVMSG #nowhere :hello?",
            "PRIVMSG #lobby",
            "JOIN lobby",
            "USER again 0 * :x",
        )
        assert (await ivy.expect(n.ERR_INPUTTOOLONG)).params[0] == "ivy"
        fail = await ivy.expect("FAIL")
        assert fail.params[:2] == ("PRIVMSG", "INVALID_UTF8")
        assert (await ivy.expect(n.ERR_UNKNOWNCOMMAND)).params[1] == "FROBNICATE"
        assert (await ivy.expect(n.ERR_CANNOTSENDTOCHAN)).params[1] == "#nowhere"
        await ivy.expect(n.ERR_NOTEXTTOSEND)
        await ivy.expect(n.ERR_NOSUCHCHANNEL)
        await ivy.expect(n.ERR_ALREADYREGISTERED)
        # Nothing of it reached jay; the connection works on.
        await ivy.send("PRIVMSG #lobby :still here")
        said = await jay.expect("message")
        assert (said.nick, said.text) == ("ivy", "still here")


async def test_plugin_commands_run_as_raw_commands_with_notice_replies() -> None:
    class Roll:
        @hookimpl
        def register_commands(self, register: Callable[..., None]) -> None:
            register("roll", lambda ctx: ctx.reply(f"rolled {ctx.args}"), help="roll dice")

    async with (
        open_test_server(Roll(), config=local_config(irc_port=0)) as chat,
        open_irc(chat, "ivy") as ivy,
    ):
        await ivy.send("ROLL 2d6")
        notice = await ivy.expect("NOTICE")
        assert notice.params == ("ivy", "rolled 2d6")


async def test_capabilities_echo_and_history_with_original_times_and_ids(chat: TestServer) -> None:
    async with open_client(chat, "jay") as jay:
        await jay.say("before you came")
        said = await jay.expect("message")
        async with open_irc(chat) as ivy:
            await ivy.send("CAP LS 302", "NICK ivy", "USER ivy 0 * :Ivy")
            ls = await ivy.expect("CAP")
            assert "server-time" in ls.params[-1].split()
            await ivy.send("CAP REQ :server-time message-tags echo-message", "CAP END")
            assert (await ivy.expect("CAP")).params[1] == "ACK"
            await ivy.expect(n.RPL_WELCOME)
            replayed = await ivy.expect("PRIVMSG")
            assert replayed.params == ("#lobby", "before you came")
            assert replayed.tags["msgid"] == str(said.id)
            from trio_chat.irc.render import irc_time

            assert replayed.tags["time"] == irc_time(said.ts)

            await ivy.send("PRIVMSG #lobby :echo me")
            echoed = await ivy.expect("PRIVMSG")
            live = await jay.expect("message", lambda e: e.nick == "ivy")
            assert echoed.params == ("#lobby", "echo me")
            assert echoed.tags["msgid"] == str(live.id)


async def test_sasl_plain_with_an_account_registered_over_json(chat: TestServer) -> None:
    async with open_client(chat) as json_user:
        await json_user.login("acct", password="s3cret-pass", register=True)
    async with open_irc(chat) as ivy:
        await ivy.send("CAP LS 302", "NICK someone", "USER x 0 * :x", "CAP REQ :sasl")
        await ivy.expect("CAP", lambda m: m.params[1] == "ACK")
        await ivy.send("AUTHENTICATE PLAIN")
        await ivy.expect("AUTHENTICATE")
        await ivy.send("AUTHENTICATE AGFjY3QAczNjcmV0LXBhc3M=")  # \0acct\0s3cret-pass
        assert (await ivy.expect(n.RPL_LOGGEDIN)).params[2] == "acct"
        await ivy.expect(n.RPL_SASLSUCCESS)
        await ivy.send("CAP END")
        assert (await ivy.expect(n.RPL_WELCOME)).params[0] == "acct"
        await ivy.send("QUIT")
        await ivy.expect("ERROR")
    async with open_irc(chat) as guest:
        # The registered nick without its password: another nick, please.
        await guest.send("NICK acct", "USER x 0 * :x")
        await guest.expect(n.ERR_NICKNAMEINUSE)
        await guest.send("PASS s3cret-pass", "NICK acct")
        assert (await guest.expect(n.RPL_WELCOME)).params[0] == "acct"
    async with open_irc(chat) as wrong_pass:
        await wrong_pass.send("PASS nope", "NICK acct", "USER x 0 * :x")
        await wrong_pass.expect(n.ERR_PASSWDMISMATCH)
        await wrong_pass.expect("ERROR")
        assert await wrong_pass.next_line() is None
    async with open_irc(chat) as wrong:
        await wrong.send("CAP LS 302", "CAP REQ :sasl", "AUTHENTICATE PLAIN")
        await wrong.expect("AUTHENTICATE")
        await wrong.send("AUTHENTICATE AGFjY3QAd3Jvbmc=")  # \0acct\0wrong
        # (Wrong, or throttled after the wrong PASS above: a refusal either way.)
        assert (
            (await wrong.expect(n.ERR_SASLFAIL)).params[-1].startswith("SASL authentication failed")
        )


async def test_registration_timeout_closes_with_error() -> None:
    config = local_config(irc_port=0, handshake_timeout=0.5)
    async with open_test_server(config=config) as chat, open_irc(chat) as idle:
        await idle.send("NICK late")
        error = await idle.expect("ERROR")
        assert "in time" in error.params[0]
        assert await idle.next_line() is None


async def test_quit_tells_the_others(chat: TestServer) -> None:
    async with open_client(chat, "jay") as jay, open_irc(chat, "ivy") as ivy:
        await ivy.send("QUIT :gone fishing")
        assert (await ivy.expect("ERROR")).params[0].endswith("gone fishing")
        left = await jay.expect("leave")
        assert (left.nick, left.reason) == ("ivy", "gone fishing")


async def test_irc_over_tls(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(cert_path))
    cert.private_key_pem.write_to_path(str(key_path))
    config = local_config(irc_port=0, tls_cert=str(cert_path), tls_key=str(key_path))
    async with open_test_server(config=config) as chat:
        host, port = chat.address("ircs")
        context = ssl.create_default_context()
        ca.configure_trust(context)
        stream = await trio.open_ssl_over_tcp_stream(host, port, ssl_context=context)
        async with stream:
            irc = IrcClient(stream)
            welcome = await irc.register("secure")
            assert welcome.params[0] == "secure"


async def test_chathistory_pages_back_in_a_batch(chat: TestServer) -> None:
    async with open_client(chat, "jay") as jay:
        said = []
        for text in ("one", "two", "three"):
            await jay.say(text)
            said.append(await jay.expect("message", lambda e, text=text: e.text == text))
        async with open_irc(chat) as ivy:
            caps = "batch draft/chathistory message-tags server-time"
            await ivy.send("CAP LS 302", f"CAP REQ :{caps}", "NICK ivy", "USER ivy 0 * :I")
            await ivy.expect("CAP", lambda m: m.params[1] == "ACK")
            await ivy.send("CAP END")
            await ivy.expect(n.RPL_WELCOME)
            isupport = [t for m in [await ivy.expect(n.RPL_ISUPPORT)] for t in m.params]
            assert "CHATHISTORY=500" in isupport
            await ivy.expect(n.RPL_ENDOFNAMES)

            await ivy.send("CHATHISTORY LATEST #lobby * 2")
            start = await ivy.expect("BATCH")
            assert start.params[0].startswith("+") and start.params[1:] == ("chathistory", "#lobby")
            batch = start.params[0][1:]
            lines = [await ivy.next_line() for _ in range(3)]
            assert [m.command for m in lines if m] == ["PRIVMSG", "PRIVMSG", "BATCH"]
            assert [m.params[1] for m in lines[:2] if m] == ["two", "three"]
            assert [m.tags["msgid"] for m in lines[:2] if m] == [str(e.id) for e in said[1:]]
            assert all(m.tags["batch"] == batch for m in lines[:2] if m)

            await ivy.send(f"CHATHISTORY BEFORE #lobby msgid={said[1].id} 10")
            await ivy.expect("BATCH")
            older = await ivy.expect("PRIVMSG")
            assert (older.params[1], older.tags["msgid"]) == ("one", str(said[0].id))

            await ivy.send("CHATHISTORY BEFORE #lobby timestamp=2020-01-01T00:00:00.000Z 10")
            fail = await ivy.expect("FAIL")
            assert fail.params[:2] == ("CHATHISTORY", "INVALID_MSGREFTYPE")
            await ivy.send("CHATHISTORY LATEST #elsewhere * 10")
            fail = await ivy.expect("FAIL")
            assert fail.params[:3] == ("CHATHISTORY", "MESSAGE_ERROR", "#elsewhere")


async def test_two_connections_of_one_account_see_each_others_lines(chat: TestServer) -> None:
    async with open_client(chat) as json_user:
        await json_user.login("acct", password="s3cret-pass", register=True)
    async with (
        open_irc(chat, "acct", "PASS s3cret-pass") as laptop,
        open_client(chat, "jay") as jay,
    ):
        await laptop.send("JOIN #dev")
        await laptop.expect(n.RPL_ENDOFNAMES, lambda m: m.params[1] == "#dev")
        async with open_irc(chat) as phone:
            await phone.send("PASS s3cret-pass", "NICK acct", "USER acct 0 * :phone")
            assert (await phone.expect(n.RPL_WELCOME)).params[0] == "acct"
            # Its user's rooms, as joins.
            joined = {(await phone.expect("JOIN")).params[0] for _ in range(2)}
            assert joined == {"#lobby", "#dev"}
            await phone.send("PRIVMSG #lobby :from the phone")
            got = await laptop.expect("PRIVMSG")
            assert (got.source, got.params) == ("acct!acct@trio-chat", ("#lobby", "from the phone"))
            said = await jay.expect("message", lambda e: e.nick == "acct")
            assert said.text == "from the phone"
            # The phone is not sent its own line back; the next line it gets is jay's.
            await jay.say("seen")
            assert (await phone.expect("PRIVMSG")).params == ("#lobby", "seen")


async def test_flood_control_delays_then_refuses_then_disconnects() -> None:
    config = local_config(irc_port=0, flood_rate=20.0, flood_burst=5, flood_max_lag=0.5)
    async with (
        open_test_server(config=config) as chat,
        open_client(chat, "jay") as jay,
        open_irc(chat, "ivy") as ivy,
    ):
        start = trio.current_time()
        await ivy.send(*[f"PRIVMSG #lobby :line {i}" for i in range(30)])
        refused = await ivy.expect("NOTICE")
        assert refused.params[1].startswith("slow down")
        # What was not refused arrives whole and in order, the lines past the burst late.
        got = [(await jay.expect("message", lambda e: e.nick == "ivy")).text for _ in range(12)]
        assert got == [f"line {i}" for i in range(12)]
        assert trio.current_time() - start >= (12 - 5) / 20.0
        # Keeping on: disconnected with ERROR.
        await ivy.send(*[f"PRIVMSG #lobby :more {i}" for i in range(100)])
        error = await ivy.expect("ERROR")
        assert error.params[0].startswith("Closing link: disconnected for flooding")
        assert (await jay.expect("leave", lambda e: e.nick == "ivy")).room == "#lobby"


async def test_whois_and_who_show_what_user_gave(chat: TestServer) -> None:
    from trio_chat.transports.irc import identities

    async with open_irc(chat) as cool, open_client(chat, "jay") as jay:
        await cool.send("NICK coolNick", "USER myusernam 0 * :My User Name")
        await cool.expect(n.RPL_ENDOFNAMES)
        async with open_irc(chat, "other") as other:
            await other.send("WHOIS coolNick")
            user = await other.expect(n.RPL_WHOISUSER)
            assert user.params == (
                "other",
                "coolNick",
                "~myusernam",
                "trio-chat",
                "*",
                "My User Name",
            )
            assert (await other.expect(n.RPL_WHOISSERVER)).params[2] == "trio-chat"
            await other.send("WHO #lobby")
            who = {m.params[5]: m for m in [await other.expect(n.RPL_WHOREPLY) for _ in range(3)]}
            assert who["coolNick"].params[2] == "~myusernam"
            assert who["coolNick"].params[-1] == "0 My User Name"
            assert who["jay"].params[2] == "jay"  # not an IRC user: its nick
        # Gone: its identity with it.
        assert ("myusernam", "My User Name") in identities(chat.server).values()
        await cool.send("QUIT")
        await cool.expect("ERROR")
        assert await cool.next_line() is None  # closed: forgotten just before
        assert ("myusernam", "My User Name") not in identities(chat.server).values()
        await jay.expect("leave", lambda e: e.nick == "coolNick")


async def test_the_server_pings_a_quiet_client_and_closes_a_silent_one() -> None:
    config = local_config(irc_port=0, idle_timeout=0.2, ping_timeout=0.3)
    async with (
        open_test_server(config=config) as chat,
        open_irc(chat, "awake") as awake,
        open_irc(chat, "asleep") as asleep,
    ):
        ping = await awake.expect("PING")
        await awake.send(f"PONG :{ping.params[0]}", "JOIN 0")
        # Answered: still here (JOIN 0 leaves every room).
        assert (await awake.expect("PART")).params[0] == "#lobby"
        await asleep.expect("PING")  # and no answer
        error = await asleep.expect("ERROR")
        assert error.params[0] == "Closing link: ping timeout"
        assert await asleep.next_line() is None
