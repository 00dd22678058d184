"""RESP2 on bytes (no sockets), then our connection against a real redis-server."""

from __future__ import annotations

import contextlib
import functools
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from tests.conftest import REDIS_SERVER, free_port, need_redis_server, redis_answers
from trio_chat.broker.connection import (
    CommandError,
    ConnectionLost,
    ProtocolFailure,
    open_redis_connection,
    parse_url,
)
from trio_chat.broker.redis import _APPEND, _APPEND_SHA, _keys, _run_script
from trio_chat.broker.resp import (
    NEED_DATA,
    LocalProtocolError,
    RemoteProtocolError,
    ReplyError,
    ReplyParser,
    encode_command,
    encode_command_after,
    encode_head,
)

# ------------------------------------------------------------------ sans-IO


def test_a_command_is_an_array_of_bulk_strings() -> None:
    assert encode_command("SET", b"k\r\n", 12, 1.5, "é") == (
        b"*5\r\n$3\r\nSET\r\n$3\r\nk\r\n\r\n$2\r\n12\r\n$3\r\n1.5\r\n$2\r\n\xc3\xa9\r\n"
    )
    assert encode_command(b"PING") == b"*1\r\n$4\r\nPING\r\n"
    assert encode_command("SET", b"") == b"*2\r\n$3\r\nSET\r\n$0\r\n\r\n"


@pytest.mark.parametrize("rest", [(), ("0-0",), (b"12-3", 7, "\u00e9\r\n")])
def test_a_command_with_its_head_encoded_once_is_the_same_command(rest: tuple[object]) -> None:
    head = encode_head(b"XREAD", b"COUNT", 1024, b"STREAMS", "trio-chat:log")
    again = encode_command_after(head, *rest)
    assert again == encode_command(b"XREAD", b"COUNT", 1024, b"STREAMS", "trio-chat:log", *rest)
    assert encode_command_after(head, *rest) == again  # the head is not used up


@pytest.mark.parametrize("bad", [True, None, object(), ["a"]])
def test_what_resp_cannot_carry_is_refused(bad: object) -> None:
    with pytest.raises(LocalProtocolError):
        encode_command("SET", bad)
    with pytest.raises(LocalProtocolError):
        encode_command()


XREAD_REPLY = (
    b"*1\r\n*2\r\n$5\r\nt:log\r\n*2\r\n"
    b"*2\r\n$3\r\n1-0\r\n*2\r\n$1\r\nx\r\n$5\r\nhello\r\n"
    b"*2\r\n$3\r\n2-0\r\n*2\r\n$1\r\nx\r\n$7\r\na\r\nb\r\nc\r\n"
)
XREAD_VALUE = [[b"t:log", [[b"1-0", [b"x", b"hello"]], [b"2-0", [b"x", b"a\r\nb\r\nc"]]]]]

REPLIES: list[tuple[bytes, object]] = [
    (b"+OK\r\n", "OK"),
    (b":42\r\n", 42),
    (b":-7\r\n", -7),
    (b"$5\r\nhello\r\n", b"hello"),
    (b"$0\r\n\r\n", b""),
    (b"$-1\r\n", None),
    (b"*-1\r\n", None),
    (b"*0\r\n", []),
    (b"*3\r\n:1\r\n$-1\r\n+x\r\n", [1, None, "x"]),
    (b"*2\r\n*1\r\n*0\r\n$2\r\nab\r\n", [[[]], b"ab"]),
    (b"*2\r\n$-1\r\n$1\r\na\r\n", [None, b"a"]),
    (XREAD_REPLY, XREAD_VALUE),
]


def replies_of(parser: ReplyParser) -> list[object]:
    got = []
    while (reply := parser.next_reply()) is not NEED_DATA:
        got.append(reply)
    return got


@pytest.mark.parametrize(("wire", "value"), REPLIES)
def test_each_reply_split_at_every_byte(wire: bytes, value: object) -> None:
    whole = ReplyParser()
    whole.feed(wire)
    assert replies_of(whole) == [value]
    assert whole.buffered == 0
    for cut in range(len(wire) + 1):
        parser = ReplyParser()
        parser.feed(wire[:cut])
        got = replies_of(parser)
        parser.feed(wire[cut:])
        got += replies_of(parser)
        assert got == [value], cut


def test_byte_by_byte_and_several_replies_in_one_piece() -> None:
    stream = b"".join(wire for wire, _ in REPLIES)
    parser = ReplyParser()
    got: list[object] = []
    for i in range(len(stream)):
        parser.feed(stream[i : i + 1])
        got += replies_of(parser)
    assert got == [value for _, value in REPLIES]
    parser.feed(stream * 2)
    assert replies_of(parser) == [value for _, value in REPLIES] * 2


def test_an_error_reply_is_a_value_with_its_code() -> None:
    parser = ReplyParser()
    parser.feed(b"-NOSCRIPT No matching script. Please use EVAL.\r\n*1\r\n-ERR x\r\n")
    error = parser.next_reply()
    assert isinstance(error, ReplyError)
    assert error.code == "NOSCRIPT"
    assert str(error) == "NOSCRIPT No matching script. Please use EVAL."
    nested = parser.next_reply()
    assert isinstance(nested, list) and isinstance(nested[0], ReplyError)
    assert nested[0].code == "ERR"


@pytest.mark.parametrize(
    "wire",
    [
        b"?what\r\n",
        b"$abc\r\n",
        b"$-2\r\n",
        b"*-5\r\n",
        b":\r\n",
        b"$3\r\nabcd\r\n",  # not ended where its length says
        b"\r\n",
        b"*1\r\n$2\r\nabX\r\n",
    ],
)
def test_what_is_not_resp_is_a_remote_error_every_time(wire: bytes) -> None:
    parser = ReplyParser()
    parser.feed(wire)
    with pytest.raises(RemoteProtocolError):
        parser.next_reply()
    with pytest.raises(RemoteProtocolError):  # the parser stays broken
        parser.next_reply()


def test_huge_lengths_and_deep_nesting_are_refused_before_the_data_comes() -> None:
    parser = ReplyParser(max_bulk=1000, max_array=10, max_depth=3, max_line=50)
    for wire in (
        b"$1001\r\n",
        b"$99999999999999999999\r\n",
        b"*11\r\n",
        b"*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n",
        b"+" + b"x" * 60,  # a line that never ends
        b"*1\r\n$2000\r\n",
    ):
        fresh = ReplyParser(max_bulk=1000, max_array=10, max_depth=3, max_line=50)
        fresh.feed(wire)
        with pytest.raises(RemoteProtocolError):
            fresh.next_reply()
    parser.feed(b"*1\r\n*1\r\n*1\r\n:1\r\n$1000\r\n" + b"x" * 1000 + b"\r\n")
    assert parser.next_reply() == [[[1]]]
    assert parser.next_reply() == b"x" * 1000


def test_a_long_bulk_string_is_not_parsed_again_for_every_piece() -> None:
    parser = ReplyParser()
    body = b"y" * 1_000_000
    wire = b"*2\r\n$3\r\n1-0\r\n$%d\r\n%s\r\n" % (len(body), body)
    calls = 0
    original = parser._parse

    def counting(*args: object) -> object:
        nonlocal calls
        calls += 1
        return original(*args)  # type: ignore[arg-type]

    parser._parse = counting  # type: ignore[method-assign]
    for i in range(0, len(wire), 1000):
        parser.feed(wire[i : i + 1000])
        got = parser.next_reply()
    assert got == [b"1-0", body]
    assert calls <= 3


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://127.0.0.1:6380/2", ("redis", "127.0.0.1", 6380, "", 2, None, None)),
        ("redis://localhost", ("redis", "localhost", 6379, "", 0, None, None)),
        ("redis://:s%40cret@h/1", ("redis", "h", 6379, "", 1, None, "s@cret")),
        ("rediss://bob:pw@h:7000", ("rediss", "h", 7000, "", 0, "bob", "pw")),
        ("unix:///run/redis.sock?db=3", ("unix", "127.0.0.1", 6379, "/run/redis.sock", 3)),
        ("unix://:pw@/run/r.sock", ("unix", "127.0.0.1", 6379, "/run/r.sock", 0, None, "pw")),
        ("redis://h?db=4", ("redis", "h", 6379, "", 4, None, None)),
    ],
)
def test_urls(url: str, expected: tuple[object, ...]) -> None:
    address = parse_url(url)
    fields = (address.scheme, address.host, address.port, address.path, address.db)
    fields += (address.username, address.password)
    assert fields[: len(expected)] == expected


def test_a_url_that_is_not_redis_is_refused() -> None:
    with pytest.raises(ValueError, match="redis://"):
        parse_url("http://h/0")


# ------------------------------------------------------------ a real redis-server


@contextlib.contextmanager
def own_redis(folder: Path, *options: str) -> Iterator[int]:
    """A redis-server of this test's own, with ``options``; yields its port."""
    need_redis_server()
    port = free_port()
    command = [REDIS_SERVER or "redis-server", "--port", str(port), "--bind", "127.0.0.1"]
    command += ["--save", "", "--appendonly", "no", "--dir", str(folder), *options]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not socket_up(port):
            assert process.poll() is None and time.monotonic() < deadline, "no redis-server"
            time.sleep(0.05)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)


def socket_up(port: int) -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


async def test_calls_select_and_an_error_reply(redis_url: str) -> None:
    with trio.fail_after(10):
        async with await open_redis_connection(redis_url.rsplit("/", 1)[0] + "/5") as conn:
            assert await conn.call("SET", "resp-test:k", b"v\x00\r\n") == "OK"
            assert await conn.call("GET", "resp-test:k") == b"v\x00\r\n"
            assert await conn.call("GET", "resp-test:none") is None
            assert await conn.call("INCR", "resp-test:n") >= 1  # type: ignore[operator]
            assert await conn.call("CLIENT", "INFO") is not None
            info = await conn.call("CLIENT", "INFO")
            assert b" db=5 " in info  # type: ignore[operator]
            with pytest.raises(CommandError) as caught:
                await conn.call("INCR", "resp-test:k")  # not a number
            assert caught.value.code == "ERR"
            assert await conn.call("DEL", "resp-test:k", "resp-test:n") == 2  # still usable


async def test_a_call_cut_short_leaves_the_connection_closed(redis_url: str) -> None:
    with trio.fail_after(10):
        async with await open_redis_connection(redis_url) as conn:
            with trio.move_on_after(0.05):
                await conn.call("BLPOP", "resp-test:never", 5)
            with pytest.raises(ConnectionLost):
                await conn.call("PING")


async def test_auth_with_a_password_and_with_a_user(tmp_path: Path) -> None:
    with own_redis(
        tmp_path, "--requirepass", "s3cret", *("--user", "bob", "on", ">pw", "~*", "+@all")
    ) as port:
        with trio.fail_after(10):
            async with await open_redis_connection(f"redis://:s3cret@127.0.0.1:{port}/2") as c:
                assert await c.call("PING") == "PONG"
            async with await open_redis_connection(f"redis://bob:pw@127.0.0.1:{port}") as c:
                assert await c.call("ACL", "WHOAMI") == b"bob"
            with pytest.raises(CommandError) as caught:
                await open_redis_connection(f"redis://:wrong@127.0.0.1:{port}")
            assert caught.value.code == "WRONGPASS"
            async with await open_redis_connection(f"redis://127.0.0.1:{port}") as c:
                with pytest.raises(CommandError, match="NOAUTH"):
                    await c.call("PING")


async def test_a_unix_socket(tmp_path: Path) -> None:
    path = tmp_path / "r.sock"
    with own_redis(tmp_path, "--unixsocket", str(path), "--unixsocketperm", "700"):
        with trio.fail_after(10):
            while not path.exists():  # noqa: ASYNC110  (a file, not a task, to wait for)
                await trio.sleep(0.02)
            async with await open_redis_connection(f"unix://{path}?db=3") as conn:
                assert await conn.call("SET", "k", "v") == "OK"
                info = await conn.call("CLIENT", "INFO")
                assert b" db=3 " in info  # type: ignore[operator]


async def test_a_peer_that_is_not_redis_is_a_protocol_failure() -> None:
    async def garbage(stream: trio.SocketStream) -> None:
        await stream.receive_some(1000)
        await stream.send_all(b"HTTP/1.1 400 Bad Request\r\n\r\n")

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            functools.partial(trio.serve_tcp, garbage, 0, host="127.0.0.1")
        )
        port = listeners[0].socket.getsockname()[1]
        with trio.fail_after(10):
            async with await open_redis_connection(f"redis://127.0.0.1:{port}") as conn:
                with pytest.raises(ProtocolFailure):
                    await conn.call("PING")
                with pytest.raises(ConnectionLost):
                    await conn.call("PING")
        nursery.cancel_scope.cancel()


async def test_the_append_script_falls_back_to_eval_when_redis_forgot_it(broker_url: str) -> None:
    keys = tuple(_keys("resp")[k] for k in ("counter", "log", "seqs"))
    with trio.fail_after(10):
        async with await open_redis_connection(broker_url) as conn:
            await conn.call("SCRIPT", "FLUSH")  # as after a restart
            assert await conn.call("SCRIPT", "EXISTS", _APPEND_SHA) == [0]
            args = (1000, "n", 1, "e", b'{"a":1}\n')
            assert await _run_script(conn, _APPEND, _APPEND_SHA, keys, args) == 1
            assert await conn.call("SCRIPT", "EXISTS", _APPEND_SHA) == [1]  # cached again
            args = (1000, "n", 1, "ee", b'{"a":1}\n{"a":2}\n')  # the first again, and one
            assert await _run_script(conn, _APPEND, _APPEND_SHA, keys, args) == 2
            got = await conn.call("XREAD", "COUNT", 10, "STREAMS", keys[1], "0-0")
    assert got == [[keys[1].encode(), [[b"1-0", [b"x", b'{"a":1}']], [b"2-0", [b"x", b'{"a":2}']]]]]


def test_redis_answers_is_the_helper_we_think() -> None:
    assert redis_answers(free_port()) is False


def entries_split_at(wire: bytes, cut: int) -> list[object]:
    parser = ReplyParser()
    got: list[object] = []
    for piece in (wire[:cut], wire[cut:]):
        parser.feed(piece)
        while (reply := parser.next_entries()) is not NEED_DATA:
            got.append(reply)
    return got


def test_xread_entries_straight_from_the_bytes_split_at_every_byte() -> None:
    expected = [(b"1-0", b"hello"), (b"2-0", b"a\r\nb\r\nc")]
    for cut in range(len(XREAD_REPLY) + 1):
        assert entries_split_at(XREAD_REPLY, cut) == [expected], cut
    # Other fields, or none: the general parser, the same answer.
    other = (
        b"*1\r\n*2\r\n$1\r\nk\r\n*2\r\n*2\r\n$3\r\n1-0\r\n*4\r\n$1\r\ny\r\n$1\r\n1\r\n"
        b"$1\r\nx\r\n$2\r\nhi\r\n*2\r\n$3\r\n2-0\r\n*0\r\n"
    )
    for cut in range(len(other) + 1):
        assert entries_split_at(other, cut) == [[(b"1-0", b"hi"), (b"2-0", None)]], cut
    assert entries_split_at(b"*-1\r\n" + XREAD_REPLY, 3) == [None, expected]
    [error] = entries_split_at(b"-ERR no\r\n", 0)
    assert isinstance(error, ReplyError)


@pytest.mark.parametrize("wire", [b":1\r\n", b"*1\r\n:1\r\n", b"*1\r\n*2\r\n$1\r\nk\r\n:3\r\n"])
def test_a_reply_that_is_not_xread_is_a_remote_error(wire: bytes) -> None:
    parser = ReplyParser()
    parser.feed(wire)
    with pytest.raises(RemoteProtocolError):
        parser.next_entries()


def test_a_lying_id_length_is_not_taken_by_the_fast_path() -> None:
    wire = XREAD_REPLY.replace(b"$3\r\n1-0", b"$2\r\n1-0")
    parser = ReplyParser()
    parser.feed(wire)
    with pytest.raises(RemoteProtocolError):
        parser.next_entries()


async def test_read_stream_against_redis(redis_url: str) -> None:
    with trio.fail_after(10):
        async with await open_redis_connection(redis_url) as conn:
            await conn.call("DEL", "resp-test:s")
            await conn.call("XADD", "resp-test:s", "5-0", "x", b"one")
            await conn.call("XADD", "resp-test:s", "6-0", "y", b"1", "x", b"two")
            command = ("XREAD", "COUNT", 10, "BLOCK", 50, "STREAMS", "resp-test:s")
            assert await conn.read_stream(*command, "0-0") == [(b"5-0", b"one"), (b"6-0", b"two")]
            assert await conn.read_stream(*command, "6-0") == []  # timed out
            with pytest.raises(CommandError):
                await conn.read_stream(*command, "bad-id")


def test_a_long_xread_reply_in_pieces_is_read_once_by_the_fast_path() -> None:
    payload = b'{"k":"event","text":"' + b"z" * 150 + b'"}'
    entries = [(b"%d-0" % i, payload) for i in range(1, 1001)]
    body = b"".join(
        b"*2\r\n$%d\r\n%s\r\n*2\r\n$1\r\nx\r\n$%d\r\n%s\r\n" % (len(i), i, len(p), p)
        for i, p in entries
    )
    wire = b"*1\r\n*2\r\n$3\r\nlog\r\n*1000\r\n" + body
    for piece in (1000, 4096, 65536):
        parser = ReplyParser()
        general = 0
        parse = parser._parse

        def counting(buffer: bytes, parse: object = parse) -> object:
            nonlocal general
            general += 1
            return parse(buffer)  # type: ignore[operator]

        parser._parse = counting  # type: ignore[method-assign]
        got: list[object] = []
        for i in range(0, len(wire), piece):
            parser.feed(wire[i : i + piece])
            if (reply := parser.next_entries()) is not NEED_DATA:
                got.append(reply)
        assert got == [entries]
        assert general == 0, piece
