"""The sans-IO IRC core: the message grammar, tags, CTCP, line splitting, and one client's
session as a state machine (no sockets)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trio_chat.irc import numerics as n
from trio_chat.irc.message import (
    MAX_LINE_BYTES,
    IrcMessage,
    IrcParseError,
    ctcp_decode,
    ctcp_encode,
    escape_tag_value,
    format_message,
    message_bytes,
    parse_line,
    unescape_tag_value,
)
from trio_chat.irc.render import hostmask, irc_time, shared_lines
from trio_chat.irc.session import IrcSession, IrcSettings, isupport_tokens, strip_formatting
from trio_chat.irc.split import split_utf8, text_budget
from trio_chat.irc.view import ChannelInfo, MemberInfo, UserInfo
from trio_chat.protocol import (
    Command,
    Error,
    Hello,
    Info,
    Joined,
    Left,
    Message,
    NickChanged,
    Private,
    Say,
    Welcome,
)

# ------------------------------------------------------------------------ the grammar


def test_a_full_line_parses_into_its_parts() -> None:
    msg = parse_line(b"@time=2020-01-01T00:00:00.000Z;+draft/x :nick!u@h privmsg #chan :hi there")
    assert msg == IrcMessage(
        "PRIVMSG",
        ("#chan", "hi there"),
        "nick!u@h",
        {"time": "2020-01-01T00:00:00.000Z", "+draft/x": ""},
    )


def test_params_middle_and_trailing() -> None:
    assert parse_line(b"USER guest 0 * :Real Name").params == ("guest", "0", "*", "Real Name")
    assert parse_line(b"PRIVMSG #a :").params == ("#a", "")
    assert parse_line(b"PRIVMSG #a ::-)").params == ("#a", ":-)")
    assert parse_line(b"NICK   bob  ").params == ("bob",)
    assert parse_line(b"ping x").command == "PING"


def test_tag_values_are_unescaped_and_escaped_back() -> None:
    msg = parse_line(b"@a=one\\:two\\sthree\\\\four\\x;b= PING x")
    assert msg.tags == {"a": "one;two three\\fourx", "b": ""}
    assert escape_tag_value("one;two three\\four\r\n") == "one\\:two\\sthree\\\\four\\r\\n"
    assert unescape_tag_value("trailing\\") == "trailing"


@given(
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n\0"), max_size=40)
)
def test_tag_values_round_trip(value: str) -> None:
    assert unescape_tag_value(escape_tag_value(value)) == value


_WORD = st.text(
    st.characters(blacklist_categories=("Cs", "Zs", "Cc"), blacklist_characters=":"),
    min_size=1,
    max_size=10,
)
_TRAILING = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=60)


@given(st.lists(_WORD, max_size=5), _TRAILING)
def test_messages_round_trip(middle: list[str], trailing: str) -> None:
    line = format_message("PRIVMSG", *middle, trailing, source="n!u@h", tags={"msgid": "1"})
    assert line.endswith(b"\r\n")
    parsed = parse_line(line[:-2])
    assert parsed.params == (*middle, trailing)
    assert parsed.source == "n!u@h"
    assert message_bytes(parsed) == line


def test_formatting_refuses_what_would_forge_a_line() -> None:
    with pytest.raises(ValueError, match="CR, LF"):
        format_message("PRIVMSG", "#a", "x\r\nQUIT")
    with pytest.raises(ValueError, match="only the last"):
        format_message("PRIVMSG", "two words", "x")


def test_over_long_lines_and_bad_utf8_are_refused_with_a_reason() -> None:
    with pytest.raises(IrcParseError) as long_line:
        parse_line(b"PRIVMSG #a :" + b"x" * 600)
    assert long_line.value.reason == "too_long"
    assert long_line.value.command == "PRIVMSG"
    # Tags do not count against the 512 bytes of the message.
    parse_line(b"@" + b"a=" + b"y" * 3000 + b" PRIVMSG #a :" + b"x" * 480)
    with pytest.raises(IrcParseError) as tags:
        parse_line(b"@a=" + b"y" * 5000 + b" PING x")
    assert tags.value.reason == "tags_too_long"
    with pytest.raises(IrcParseError) as bad:
        parse_line(b"PRIVMSG #a :caf\xe9")
    assert (bad.value.reason, bad.value.command) == ("bad_utf8", "PRIVMSG")
    with pytest.raises(IrcParseError):
        parse_line(b":source-only")


def test_ctcp() -> None:
    assert ctcp_decode("\x01ACTION waves\x01") == ("ACTION", "waves")
    assert ctcp_decode("\x01ACTION waves") == ("ACTION", "waves")
    assert ctcp_decode("\x01version\x01") == ("VERSION", "")
    assert ctcp_decode("plain") is None
    assert ctcp_encode("ACTION", "waves") == "\x01ACTION waves\x01"


def test_formatting_codes_are_taken_out() -> None:
    assert strip_formatting("\x02bold\x02 \x0304,12red\x03 \x1ditalic\x0f") == "bold red italic"


# ------------------------------------------------------------------------ splitting


def test_short_text_is_one_piece() -> None:
    assert split_utf8("hello", 100) == ["hello"]


def test_long_text_splits_at_spaces_and_rejoins() -> None:
    text = " ".join(f"word{i}" for i in range(200))
    pieces = split_utf8(text, 100)
    assert len(pieces) > 1
    assert all(len(p.encode()) <= 100 for p in pieces)
    assert " ".join(pieces) == text


def test_long_word_splits_between_characters() -> None:
    text = "é" * 300  # two bytes each
    pieces = split_utf8(text, 101)
    assert all(len(p.encode()) <= 101 for p in pieces)
    assert "".join(pieces) == text


@given(st.text(st.characters(blacklist_categories=("Cs",)), max_size=3000))
def test_every_piece_fits_and_nothing_is_lost(text: str) -> None:
    pieces = split_utf8(text, 200)
    assert all(len(p.encode()) <= 200 for p in pieces)
    joined = "".join(pieces)
    # Only the spaces cut at are gone.
    assert joined == text or len(joined) + len(pieces) - 1 >= len(text)
    assert joined.replace(" ", "") == text.replace(" ", "")


def test_a_long_chat_line_becomes_several_lines_that_fit() -> None:
    text = "x " * 1000
    event = Message(id=7, ts=1.0, room="#lobby", nick="bob", text=text.strip())
    data = shared_lines(event, 3)
    assert data is not None
    lines = data.split(b"\r\n")[:-1]
    assert len(lines) > 3
    for line in lines:
        tags, _, rest = line.partition(b" ")
        assert tags.startswith(b"@time=")
        assert len(rest) + 2 <= MAX_LINE_BYTES
    assert budget_is_exact()


def budget_is_exact() -> bool:
    source, target = hostmask("bob"), "#lobby"
    budget = text_budget(source, "PRIVMSG", target)
    text = "y" * (budget - 2) + " y"  # a space: the trailing parameter's ':' is there
    return len(format_message("PRIVMSG", target, text, source=source)) == MAX_LINE_BYTES


def test_actions_split_each_piece_an_action() -> None:
    event = Message(id=1, ts=1.0, room="#l", nick="a", text="z " * 400, kind="action")
    data = shared_lines(event, 0)
    assert data is not None
    for line in data.split(b"\r\n")[:-1]:
        assert len(line) + 2 <= MAX_LINE_BYTES
        assert b":\x01ACTION " in line and line.endswith(b"\x01")


def test_time_tags() -> None:
    assert irc_time(0.0) == "1970-01-01T00:00:00.000Z"
    assert irc_time(1.9996) == "1970-01-01T00:00:02.000Z"


# ------------------------------------------------------------------------ the session


class FakeView:
    def __init__(self) -> None:
        self.rooms: dict[str, ChannelInfo] = {}
        self.users: dict[str, UserInfo] = {}
        self.keeps_accounts = True

    def channel(self, name: str) -> ChannelInfo | None:
        return self.rooms.get(name.lower())

    def channels(self) -> list[ChannelInfo]:
        return list(self.rooms.values())

    def user(self, nick: str) -> UserInfo | None:
        return self.users.get(nick.lower())

    def user_count(self) -> int:
        return len(self.users)


def lines_of(data: list[bytes] | bytes) -> list[IrcMessage]:
    blob = data if isinstance(data, bytes) else b"".join(data)
    return [parse_line(line) for line in blob.split(b"\r\n") if line]


def feed(session: IrcSession, *raw: bytes) -> tuple[list[IrcMessage], list[object]]:
    replies: list[bytes] = []
    frames: list[object] = []
    for line in raw:
        step = session.receive(parse_line(line))
        replies += step.replies
        frames += step.frames
    return lines_of(replies), frames


def registered(view: FakeView | None = None, nick: str = "alice") -> IrcSession:
    session = IrcSession(view or FakeView(), IrcSettings())
    _, frames = feed(session, b"NICK " + nick.encode(), b"USER a 0 * :A")
    assert frames == [Hello(nick=nick, client="irc", ref="irc-login")]
    session.render(Welcome(nick=nick, room="#lobby", server="s", version="1"))
    return session


def test_registration_sends_one_hello_and_the_welcome_is_numerics() -> None:
    session = IrcSession(FakeView(), IrcSettings(nicklen=24))
    replies, frames = feed(session, b"NICK alice")
    assert (replies, frames) == ([], [])
    replies, frames = feed(session, b"USER a 0 * :Alice")
    assert frames == [Hello(nick="alice", client="irc", ref="irc-login")]
    welcome = lines_of(
        session.render(Welcome(nick="alice", room="#lobby", server="s", version="1"))
    )
    commands = [m.command for m in welcome]
    assert commands[:5] == ["001", "002", "003", "004", "005"]
    assert "376" in commands or "422" in commands
    assert "251" in commands
    isupport = [p for m in welcome if m.command == "005" for p in m.params[1:-1]]
    assert "NICKLEN=24" in isupport and "CHANTYPES=#" in isupport and "UTF8ONLY" in isupport


def test_cap_negotiation_holds_registration_until_end() -> None:
    session = IrcSession(FakeView(), IrcSettings())
    replies, frames = feed(session, b"CAP LS 302", b"NICK alice", b"USER a 0 * :A")
    assert frames == []
    assert replies[0].params[:2] == ("*", "LS")
    assert "sasl=PLAIN" in replies[0].params[2].split()
    replies, frames = feed(session, b"CAP REQ :server-time bogus")
    assert replies[0].params[1] == "NAK" and frames == []
    replies, frames = feed(session, b"CAP REQ :server-time echo-message")
    assert replies[0].params[1:] == ("ACK", "server-time echo-message")
    _, frames = feed(session, b"CAP END")
    assert isinstance(frames[0], Hello)
    assert session.caps == {"server-time", "echo-message"}


def test_sasl_plain_checks_the_account_then_registers_with_it() -> None:
    session = IrcSession(FakeView(), IrcSettings())
    feed(session, b"CAP LS 302", b"CAP REQ sasl", b"NICK guest", b"USER a 0 * :A")
    replies, _ = feed(session, b"AUTHENTICATE PLAIN")
    assert replies[0].command == "AUTHENTICATE" and replies[0].params == ("+",)
    step = session.receive(
        parse_line(b"AUTHENTICATE " + b"AGFsaWNlAHNlY3JldA==")
    )  # \0alice\0secret
    assert step.check_account == ("alice", "secret")
    done = session.sasl_result("alice", "secret", None)
    assert [m.command for m in lines_of(done.replies)] == [n.RPL_LOGGEDIN, n.RPL_SASLSUCCESS]
    _, frames = feed(session, b"CAP END")
    assert frames == [Hello(nick="alice", password="secret", client="irc", ref="irc-login")]


def test_sasl_failure_is_904() -> None:
    session = IrcSession(FakeView(), IrcSettings())
    feed(session, b"CAP LS 302", b"CAP REQ sasl", b"AUTHENTICATE PLAIN")
    replies, _ = feed(session, b"AUTHENTICATE bm90LWJhc2U2NA")
    assert replies[0].command == n.ERR_SASLFAIL
    session.receive(parse_line(b"AUTHENTICATE PLAIN"))
    session.receive(parse_line(b"AUTHENTICATE AGFsaWNlAHdyb25n"))
    failed = session.sasl_result("alice", "wrong", "wrong password")
    assert lines_of(failed.replies)[0].command == n.ERR_SASLFAIL


def test_sasl_as_someone_else_is_refused() -> None:
    session = IrcSession(FakeView(), IrcSettings())
    feed(session, b"CAP LS 302", b"CAP REQ sasl", b"AUTHENTICATE PLAIN")
    step = session.receive(
        parse_line(b"AUTHENTICATE Ym9iAGFsaWNlAHNlY3JldA==")
    )  # bob\0alice\0secret
    assert step.check_account is None
    assert lines_of(step.replies)[0].command == n.ERR_SASLFAIL


def test_a_wrong_password_ends_the_registration() -> None:
    session = IrcSession(FakeView(), IrcSettings())
    feed(session, b"PASS nope", b"NICK alice", b"USER a 0 * :A")
    refused = lines_of(session.render(Error(code="login_failed", text="wrong", ref="irc-login")))
    assert [m.command for m in refused] == [n.ERR_PASSWDMISMATCH, "ERROR"]
    assert session.closing


def test_a_refused_login_asks_for_another_nick() -> None:
    session = IrcSession(FakeView(), IrcSettings())
    feed(session, b"NICK alice", b"USER a 0 * :A")
    refused = lines_of(session.render(Error(code="nick_taken", text="taken", ref="irc-login")))
    assert refused[0].command == n.ERR_NICKNAMEINUSE and refused[0].params[1] == "alice"
    _, frames = feed(session, b"NICK alice_")
    assert frames == [Hello(nick="alice_", client="irc", ref="irc-login")]


def test_bad_nicks_are_432_with_the_hubs_reason() -> None:
    session = IrcSession(FakeView(), IrcSettings())
    replies, _ = feed(session, b"NICK 9lives")
    assert replies[0].command == n.ERR_ERRONEUSNICKNAME
    assert "digit" in replies[0].params[-1]
    view = FakeView()
    view.users["bob"] = UserInfo("bob")
    replies, _ = feed(IrcSession(view, IrcSettings()), b"NICK BOB")
    assert replies[0].command == n.ERR_NICKNAMEINUSE


def test_commands_before_registration_are_451() -> None:
    replies, frames = feed(IrcSession(FakeView(), IrcSettings()), b"JOIN #a", b"PRIVMSG #a :x")
    assert [m.command for m in replies] == [n.ERR_NOTREGISTERED] * 2 and frames == []


def test_chat_commands_become_the_hubs_frames() -> None:
    session = registered()
    _, frames = feed(
        session,
        b"PRIVMSG #lobby :hello \x02there\x02",
        b"PRIVMSG #lobby :\x01ACTION waves\x01",
        b"PRIVMSG bob :psst",
        b"JOIN #a,#b",
        b"NICK alicia",
        b"AWAY :lunch",
        b"ROLL 2d6",
    )
    assert [type(f) for f in frames] == [Say] + [Command] * 7
    assert frames[0] == Say(text="hello there", room="#lobby", ref="irc1")
    assert frames[1] == Command(name="me", args="waves", room="#lobby", ref="irc2")
    assert frames[2] == Command(name="msg", args="bob psst", ref="irc3")
    assert [f.args for f in frames[3:5]] == ["#a", "#b"]  # type: ignore[attr-defined]
    assert frames[5] == Command(name="nick", args="alicia", ref="irc6")
    assert frames[7] == Command(name="roll", args="2d6", ref="irc8")


def test_the_hubs_answers_become_numerics() -> None:
    session = registered()
    feed(session, b"PRIVMSG #nope :hi", b"PRIVMSG ghost :hi", b"NICK bob", b"FROB x")
    out = lines_of(
        session.render(Error(code="not_in_room", text="you are not in #nope", ref="irc1"))
        + session.render(Error(code="no_such_nick", text="no one", ref="irc2"))
        + session.render(Error(code="nick_taken", text="taken", ref="irc3"))
        + session.render(Error(code="unknown_command", text="unknown", ref="irc4"))
    )
    assert [m.command for m in out] == [
        n.ERR_CANNOTSENDTOCHAN,
        n.ERR_NOSUCHNICK,
        n.ERR_NICKNAMEINUSE,
        n.ERR_UNKNOWNCOMMAND,
    ]
    assert out[3].params[1] == "FROB"
    _, frames = feed(session, b"ROLL 2d6")
    assert frames == [Command(name="roll", args="2d6", ref="irc5")]
    assert lines_of(session.render(Info(text="rolled 7", ref="irc5"))) == [
        IrcMessage("NOTICE", ("alice", "rolled 7"), "trio-chat")
    ]


def test_notice_errors_are_never_answered() -> None:
    session = registered()
    feed(session, b"NOTICE #nope :hi")
    assert session.render(Error(code="not_in_room", text="x", ref="irc1")) == b""


def test_own_lines_are_left_out_unless_echo_message() -> None:
    session = registered()
    mine = Message(id=1, ts=1.0, room="#lobby", nick="alice", text="hi")
    theirs = Message(id=2, ts=1.0, room="#lobby", nick="bob", text="hi")
    assert session.is_personal(mine) and not session.is_personal(theirs)
    feed(session, b"PRIVMSG #LOBBY :hi")
    assert session.render(mine) == b""
    # The same user's line from another of its connections (a phone) is shown.
    assert lines_of(session.render(mine))[0].params == ("#lobby", "hi")
    session.caps.add("echo-message")
    assert not session.is_personal(mine)
    feed(session, b"PRIVMSG #lobby :hi")
    assert lines_of(session.render(mine))[0].command == "PRIVMSG"


def test_a_refused_line_expects_no_echo() -> None:
    session = registered()
    _, frames = feed(session, b"PRIVMSG #lobby :hi")
    session.render(Error(code="not_allowed", text="muted", ref=frames[0].ref))  # type: ignore[attr-defined]
    mine = Message(id=1, ts=1.0, room="#lobby", nick="alice", text="from the phone")
    assert lines_of(session.render(mine))[0].params == ("#lobby", "from the phone")


def test_events_as_lines() -> None:
    assert lines_of(shared_lines(Joined(id=1, ts=1.0, room="#a", nick="bob"), 0) or b"") == [
        IrcMessage("JOIN", ("#a",), "bob!bob@trio-chat")
    ]
    kick = Left(id=2, ts=1.0, room="#a", nick="bob", reason="kicked by carol: spam")
    assert lines_of(shared_lines(kick, 0) or b"") == [
        IrcMessage("KICK", ("#a", "bob", "spam"), "carol!carol@trio-chat")
    ]
    part = Left(id=2, ts=1.0, room="#a", nick="bob", reason="quit")
    assert lines_of(shared_lines(part, 0) or b"")[0].params == ("#a", "quit")
    nick = shared_lines(NickChanged(id=3, ts=1.0, old="bob", new="rob"), 2) or b""
    assert lines_of(nick) == [IrcMessage("NICK", ("rob",), "bob!bob@trio-chat", {"msgid": "3"})]
    private = shared_lines(Private(id=4, ts=1.0, nick="bob", to="al", text="x"), 0) or b""
    assert lines_of(private)[0].params == ("al", "x")


def test_own_join_brings_topic_and_names() -> None:
    view = FakeView()
    session = registered(view)
    view.rooms["#a"] = ChannelInfo(
        "#a", "the topic", (MemberInfo("alice", op=True), MemberInfo("bob"))
    )
    out = lines_of(session.render(Joined(id=1, ts=1.0, room="#a", nick="alice")))
    assert [m.command for m in out] == ["JOIN", n.RPL_TOPIC, n.RPL_NAMREPLY, n.RPL_ENDOFNAMES]
    assert out[2].params[-1] == "@alice bob"


def test_queries_answered_from_the_view() -> None:
    view = FakeView()
    session = registered(view)
    view.rooms["#a"] = ChannelInfo("#a", "", (MemberInfo("alice", op=True), MemberInfo("bob")))
    view.users["bob"] = UserInfo("bob", channels=("#a",), away="lunch", transport="websocket")
    view.users["alice"] = UserInfo("alice", channels=("#a",), ops_in=("#a",))
    replies, frames = feed(
        session, b"WHO #a", b"WHOIS bob", b"ISON bob ghost", b"TOPIC #a", b"LIST", b"MODE #a b"
    )
    assert frames == []
    commands = [m.command for m in replies]
    assert commands[:3] == [n.RPL_WHOREPLY, n.RPL_WHOREPLY, n.RPL_ENDOFWHO]
    assert replies[0].params[6] == "H@"
    assert n.RPL_AWAY in commands and n.RPL_ENDOFWHOIS in commands
    assert [m.params for m in replies if m.command == n.RPL_ISON] == [("alice", "bob")]
    assert n.RPL_NOTOPIC in commands and n.RPL_LIST in commands
    assert commands[-1] == n.RPL_ENDOFBANLIST


def test_modes_map_to_the_moderation_commands() -> None:
    view = FakeView()
    session = registered(view)
    view.rooms["#a"] = ChannelInfo("#a", "", (MemberInfo("alice", op=True), MemberInfo("bob")))
    replies, frames = feed(session, b"MODE #a +o-o+b+q bob carol dave!*@* erin", b"MODE #a +z x")
    assert [(f.name, f.args) for f in frames] == [  # type: ignore[attr-defined]
        ("op", "bob"),
        ("deop", "carol"),
        ("ban", "dave"),
        ("mute", "erin"),
    ]
    assert [m.command for m in replies] == [n.ERR_UNKNOWNMODE]
    done = lines_of(session.render(Info(text="ok", ref=frames[0].ref)))  # type: ignore[attr-defined]
    assert done == [IrcMessage("MODE", ("#a", "+o", "bob"), "alice!alice@trio-chat")]
    refused = lines_of(session.render(Error(code="not_allowed", text="no", ref=frames[1].ref)))  # type: ignore[attr-defined]
    assert refused[0].command == n.ERR_CHANOPRIVSNEEDED


def test_isupport_says_our_limits() -> None:
    tokens = isupport_tokens(IrcSettings(nicklen=24, channellen=32, topiclen=300))
    assert {"NICKLEN=24", "CHANNELLEN=32", "TOPICLEN=300", "CASEMAPPING=ascii"} <= set(tokens)
    assert "PREFIX=(o)@" in tokens


HOSTILE = [
    b"NICK :two words",
    b"NICK a\x00b",
    b"JOIN :#a b",
    b"JOIN #a\x00",
    b"PART :#a b",
    b"WHO :a b",
    b"WHOIS :a b",
    b"NAMES :#a b",
    b"TOPIC :#a b",
    b"MODE :#a b",
    b"MODE #a +b :x  y",
    b"KICK #a :b c",
    b"ISON :a b",
    b"CAP :LS x",
    b"CAP REQ :a\x00",
    b"CAP :bogus sub",
    b"PING :\x00",
    b"PRIVMSG :a b",
    b"PRIVMSG a\x00 :hi",
    b"CHATHISTORY :LATEST x * 1",
    b"CHATHISTORY LATEST :#a b",
    b"CHATHISTORY BEFORE #a :msgid=1 2 3",
    b"AUTHENTICATE :a b",
    b"USER a b c",
    b"FROB :a b",
]


@pytest.mark.parametrize("line", HOSTILE)
def test_hostile_input_gets_well_formed_answers(line: bytes) -> None:
    view = FakeView()
    view.rooms["#a"] = ChannelInfo("#a", "", (MemberInfo("alice", op=True),))
    for session in (IrcSession(view, IrcSettings()), registered(view)):
        step = session.receive(parse_line(line))
        lines_of(step.replies)  # every reply parses back
        for frame in step.frames:
            error = Error(code="bad_name", text="no", ref=getattr(frame, "ref", None))
            lines_of(session.render(error))
            lines_of(session.render(Info(text="ok", ref=getattr(frame, "ref", None))))


def test_the_docs_list_the_isupport_tokens_we_send() -> None:
    from pathlib import Path

    from trio_chat.names import MAX_NICK_LENGTH, MAX_ROOM_LENGTH

    text = (Path(__file__).resolve().parents[1] / "docs" / "irc.md").read_text()
    section = text.split("## ISUPPORT (005)", 1)[1]
    documented = section.split("`", 2)[1].split()
    settings = IrcSettings(network="NAME", nicklen=MAX_NICK_LENGTH, channellen=MAX_ROOM_LENGTH)
    sent = [t.replace("NETWORK=NAME", "NETWORK=<name>") for t in isupport_tokens(settings)]
    assert documented == sent
