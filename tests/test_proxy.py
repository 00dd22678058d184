"""Behind a reverse proxy: PROXY protocol, X-Forwarded-For / Forwarded, trusted_proxies,
the loopback exemption, and a real nginx in front of the server."""

from __future__ import annotations

import ipaddress
import ssl
import struct
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import replace
from pathlib import Path

import pytest
import trio
import trio_websocket
import trustme

from trio_chat.cli import build_parser
from trio_chat.config import ServerConfig
from trio_chat.config_loading import (
    ConfigError,
    load_config,
    overrides_from_args,
    render_example_config,
)
from trio_chat.framing import LineBuffer
from trio_chat.hub import host_of
from trio_chat.limits import ConnectionLimiter
from trio_chat.proxyproto import (
    MAX_V2_BYTES,
    NEED_DATA,
    V2_SIGNATURE,
    ProxyHeader,
    ProxyProtocolError,
    ProxyTrust,
    client_from_headers,
    looks_like_proxy_header,
    parse_proxy_header,
)
from trio_chat.server import ChatServer, ServerSetupError
from trio_chat.testing import (
    DEFAULT_TIMEOUT,
    ChatClient,
    TcpChatClient,
    TestServer,
    WebSocketChatClient,
    local_config,
    open_client,
    open_test_server,
)
from trio_chat.transports.streams import read_line
from trio_chat.transports.tcp import PROXY_HEADER_REQUIRED, UNTRUSTED_PROXY_HEADER, refused_line


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def v2(
    command: int = 1,
    family: int = 0x11,
    source: str = "203.0.113.7",
    port: int = 51234,
    destination: str | None = None,
    extra: bytes = b"",
    size: int | None = None,
) -> bytes:
    """A PROXY v2 header (command 1 = PROXY, 0 = LOCAL; family 0x11 TCP4, 0x21 TCP6)."""
    if destination is None:
        destination = "2001:db8::1" if ":" in source else "192.0.2.1"
    if family >> 4 == 1:
        body = ipaddress.IPv4Address(source).packed + ipaddress.IPv4Address(destination).packed
    elif family >> 4 == 2:
        body = ipaddress.IPv6Address(source).packed + ipaddress.IPv6Address(destination).packed
    else:
        body = b""
    if body:
        body += struct.pack("!HH", port, 12345)
    body += extra
    length = len(body) if size is None else size
    return V2_SIGNATURE + bytes([0x20 | command, family]) + struct.pack("!H", length) + body


# ------------------------------------------------------------------------ PROXY v1


def test_v1_tcp4_and_the_bytes_after_it() -> None:
    line = b"PROXY TCP4 203.0.113.7 192.0.2.1 51234 12345\r\n"
    header = parse_proxy_header(line + b'{"type":"hello"}\n')
    assert header == ProxyHeader(1, ("203.0.113.7", 51234), len(line))
    assert header.client_address == "203.0.113.7:51234"


def test_v1_tcp6_in_brackets_and_mapped_ipv4_as_ipv4() -> None:
    header = parse_proxy_header(b"PROXY TCP6 2001:db8::7 2001:db8::1 4711 12345\r\n")
    assert isinstance(header, ProxyHeader)
    assert header.client_address == "[2001:db8::7]:4711"
    mapped = parse_proxy_header(b"PROXY TCP6 ::ffff:198.51.100.3 ::1 9 1\r\n")
    assert isinstance(mapped, ProxyHeader) and mapped.client_address == "198.51.100.3:9"


def test_v1_unknown_means_the_proxy_itself() -> None:
    for line in (b"PROXY UNKNOWN\r\n", b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n"):
        header = parse_proxy_header(line)
        assert header == ProxyHeader(1, None, len(line))
        assert header.client_address is None


@pytest.mark.parametrize(
    "partial",
    [b"P", b"PROXY", b"PROXY ", b"PROXY TCP4 203.0.113.7 192.0.2.1 5", b"PROXY UNKNOWN\r"],
)
def test_v1_truncated_needs_data(partial: bytes) -> None:
    assert parse_proxy_header(partial) is NEED_DATA


@pytest.mark.parametrize(
    "line",
    [
        b"PROXY TCP4 203.0.113.7 192.0.2.1 51234\r\n",  # a port missing
        b"PROXY TCP4 203.0.113.7 192.0.2.1 51234 12345 x\r\n",
        b"PROXY TCP5 203.0.113.7 192.0.2.1 1 2\r\n",
        b"PROXY TCP4 2001:db8::7 192.0.2.1 1 2\r\n",  # family and address disagree
        b"PROXY TCP4 alice 192.0.2.1 1 2\r\n",
        b"PROXY TCP4 203.0.113.7 192.0.2.1 065535 2\r\n",  # leading zero
        b"PROXY TCP4 203.0.113.7 192.0.2.1 65536 2\r\n",
        b"PROXY TCP4 203.0.113.7 192.0.2.1 +1 2\r\n",
        b"PROXY TCP4 203.0.113.7  192.0.2.1 1 2\r\n",  # two spaces
        b"PROXY TCP4 203.0.113.7 192.0.2.1 1 2\n",  # LF alone
        b"PROXY TCP4 \xff\xfe 192.0.2.1 1 2\r\n",
    ],
)
def test_v1_garbage_is_refused(line: bytes) -> None:
    with pytest.raises(ProxyProtocolError):
        parse_proxy_header(line)


def test_v1_oversized_is_refused_without_waiting_for_more() -> None:
    with pytest.raises(ProxyProtocolError, match="within 107 bytes"):
        parse_proxy_header(b"PROXY TCP4 " + b"1" * 200)


def test_not_a_proxy_header() -> None:
    for data in (b'{"type":"hello","nick":"x"}\n', b"alice\n", b"\x16\x03\x01", b"PROXYMAN\r\n"):
        assert looks_like_proxy_header(data) is False
        with pytest.raises(ProxyProtocolError, match="no PROXY protocol header"):
            parse_proxy_header(data)
    assert looks_like_proxy_header(b"\r\n") is NEED_DATA  # could still become a v2 header
    assert looks_like_proxy_header(b"PROXY TCP4") is True


# ------------------------------------------------------------------------ PROXY v2


def test_v2_tcp4_and_the_bytes_after_it() -> None:
    data = v2()
    header = parse_proxy_header(data + b"hello")
    assert header == ProxyHeader(2, ("203.0.113.7", 51234), len(data))


def test_v2_tcp6_with_tlvs() -> None:
    tlv = b"\x01\x00\x02h2"  # ALPN, skipped
    data = v2(family=0x21, source="2001:db8::7", destination="2001:db8::1", extra=tlv)
    header = parse_proxy_header(data)
    assert isinstance(header, ProxyHeader)
    assert header.client_address == "[2001:db8::7]:51234"
    assert header.length == 16 + 36 + len(tlv)


def test_v2_local_and_unspecified_families_mean_the_proxy_itself() -> None:
    assert parse_proxy_header(v2(command=0)) == ProxyHeader(2, None, 28)
    assert parse_proxy_header(v2(command=0, family=0)) == ProxyHeader(2, None, 16)
    assert parse_proxy_header(v2(family=0x00)) == ProxyHeader(2, None, 16)
    unix = v2(family=0x31, extra=b"\x00" * 216)
    assert parse_proxy_header(unix) == ProxyHeader(2, None, len(unix))


def test_v2_truncated_needs_data_at_every_length() -> None:
    data = v2(family=0x21, source="2001:db8::7", destination="2001:db8::1")
    for end in range(1, len(data)):
        assert parse_proxy_header(data[:end]) is NEED_DATA, end
    assert isinstance(parse_proxy_header(data), ProxyHeader)


def test_v2_garbage_is_refused() -> None:
    good = v2()
    for bad in (
        good[:12] + b"\x11" + good[13:],  # version 1 in a v2 header
        good[:12] + b"\x22" + good[13:],  # command 2
        good[:13] + b"\x41" + good[14:],  # family 4
        v2(size=4),  # too short for IPv4 addresses
        v2(family=0x21, source="::1", destination="::1", size=12),
    ):
        with pytest.raises(ProxyProtocolError):
            parse_proxy_header(bad)


def test_v2_oversized_is_refused_from_its_first_16_bytes() -> None:
    head = v2(size=MAX_V2_BYTES)[:16]
    with pytest.raises(ProxyProtocolError, match="over"):
        parse_proxy_header(head)
    assert parse_proxy_header(v2(size=MAX_V2_BYTES - 16)[:16]) is NEED_DATA


# ------------------------------------------------------------------ trusted_proxies


def test_trust_by_address_and_cidr_v4_and_v6() -> None:
    trust = ProxyTrust(["127.0.0.1", "10.0.0.0/8", "2001:db8:1::/48", "::1", "192.0.2.9/24"])
    assert trust.trusts("127.0.0.1") and not trust.trusts("127.0.0.2")
    assert trust.trusts("10.200.3.4") and not trust.trusts("11.0.0.1")
    assert trust.trusts("2001:db8:1:ffff::5") and not trust.trusts("2001:db8:2::5")
    assert trust.trusts("[::1]")
    assert trust.trusts("::ffff:10.1.2.3")  # an IPv4 peer on a dual-stack listener
    assert trust.trusts("192.0.2.200")  # host bits are ignored, as nginx does
    assert not trust.trusts("?") and not trust.trusts("alice")
    assert not ProxyTrust() and not ProxyTrust().trusts("127.0.0.1")


@pytest.mark.parametrize("entry", ["localhost", "10.0.0.0/33", "", "1.2.3.4.5", "::g"])
def test_trust_refuses_what_is_no_address(entry: str) -> None:
    with pytest.raises(ValueError, match="is not an IP address or CIDR network"):
        ProxyTrust([entry])


# ------------------------------------------------------- X-Forwarded-For / Forwarded

TRUST = ProxyTrust(["127.0.0.1", "10.0.0.0/8"])


def headers(**fields: str) -> list[tuple[bytes, bytes]]:
    return [(k.replace("_", "-").encode(), v.encode()) for k, v in fields.items()]


@pytest.mark.parametrize(
    ("xff", "client"),
    [
        ("203.0.113.7", ("203.0.113.7", 0)),
        # The client wrote the left part itself: only the right-most untrusted entry counts.
        ("6.6.6.6, 203.0.113.7", ("203.0.113.7", 0)),
        ("6.6.6.6, 203.0.113.7, 10.0.0.2", ("203.0.113.7", 0)),  # a chain of our proxies
        ("10.0.0.3, 10.0.0.2", ("10.0.0.3", 0)),  # all trusted: the left-most
        ("2001:db8::7", ("2001:db8::7", 0)),
        ("[2001:db8::7]:4711", ("2001:db8::7", 4711)),
        ("203.0.113.7:4711", ("203.0.113.7", 4711)),
        ("unknown", None),  # the proxy wrote nonsense: itself
        ("203.0.113.7, garbage, 10.0.0.2", ("10.0.0.2", 0)),  # the hop that wrote it
        ("", None),
    ],
)
def test_x_forwarded_for_right_most_untrusted(xff: str, client: tuple[str, int] | None) -> None:
    assert client_from_headers(headers(x_forwarded_for=xff), TRUST) == client


def test_several_x_forwarded_for_headers_are_one_list() -> None:
    given = [(b"x-forwarded-for", b"203.0.113.7"), (b"x-forwarded-for", b"198.51.100.1")]
    assert client_from_headers(given, TRUST) == ("198.51.100.1", 0)


@pytest.mark.parametrize(
    ("forwarded", "client"),
    [
        ("for=192.0.2.60;proto=http;by=203.0.113.43", ("192.0.2.60", 0)),
        ('for="[2001:db8:cafe::17]:4711"', ("2001:db8:cafe::17", 4711)),
        ("For=6.6.6.6, for=192.0.2.60", ("192.0.2.60", 0)),
        ("for=192.0.2.60, for=10.0.0.9", ("192.0.2.60", 0)),
        ('for="_hidden", for=10.0.0.9', ("10.0.0.9", 0)),
        ("proto=https", None),  # no for=: the hop did not say
        ('for="192.0.2.60;x", for=unknown', None),
        ('by="a,b";for=192.0.2.61', ("192.0.2.61", 0)),  # a comma inside quotes
    ],
)
def test_forwarded_rfc_7239(forwarded: str, client: tuple[str, int] | None) -> None:
    assert client_from_headers(headers(forwarded=forwarded), TRUST) == client


def test_x_forwarded_for_wins_over_forwarded_and_nothing_is_none() -> None:
    both = headers(forwarded="for=6.6.6.6", x_forwarded_for="203.0.113.7")
    assert client_from_headers(both, TRUST) == ("203.0.113.7", 0)
    assert client_from_headers(headers(host="x"), TRUST) is None


# ------------------------------------------------------------- loopback exemption


def test_loopback_is_exempt_from_the_per_host_limit_only_when_asked() -> None:
    exempt = ConnectionLimiter(per_host=2, total=5, exempt_loopback=True)
    assert [exempt.acquire("127.0.0.1") for _ in range(5)] == [None] * 5
    assert exempt.acquire("127.0.0.1") == "server full (limit 5 connections)"  # total holds
    assert exempt.count("127.0.0.1") == 5
    for _ in range(5):
        exempt.release("127.0.0.1")
    assert exempt.hosts == 0
    exempt.acquire("192.0.2.1")
    exempt.acquire("192.0.2.1")
    assert exempt.acquire("192.0.2.1") == "too many connections from 192.0.2.1 (limit 2)"
    strict = ConnectionLimiter(per_host=2, total=5)
    strict.acquire("127.0.0.1")
    strict.acquire("127.0.0.1")
    assert strict.acquire("127.0.0.1") == "too many connections from 127.0.0.1 (limit 2)"


@pytest.mark.parametrize("host", ["127.0.0.1", "127.255.0.3", "::1", "::ffff:127.0.0.1"])
def test_loopback_hosts(host: str) -> None:
    assert ConnectionLimiter.is_loopback(host)


@pytest.mark.parametrize("host", ["10.0.0.1", "::2", "?", "localhost", "::ffff:10.0.0.1"])
def test_not_loopback_hosts(host: str) -> None:
    assert not ConnectionLimiter.is_loopback(host)


# ------------------------------------------------------------ over real sockets

REFUSED = b"!! connection refused: "
PROXIED = local_config(trusted_proxies=["127.0.0.1"], max_connections_per_host=2)


def v1(source: str, port: int) -> bytes:
    family = "TCP6" if ":" in source else "TCP4"
    destination = "::1" if ":" in source else "127.0.0.1"
    return f"PROXY {family} {source} {destination} {port} 12345\r\n".encode()


@asynccontextmanager
async def via_proxy(
    chat: TestServer, header: bytes, nick: str | None = None
) -> AsyncIterator[TcpChatClient]:
    """A TCP client whose connection starts with ``header`` (a PROXY header or anything)."""
    with trio.fail_after(DEFAULT_TIMEOUT):
        stream = await trio.open_tcp_stream(*chat.address("tcp"))
    async with stream:
        await stream.send_all(header)
        client = TcpChatClient(stream)
        if nick is not None:
            await client.login(nick)
        yield client


async def read_all(stream: trio.abc.Stream) -> bytes:
    reply = b""
    with trio.fail_after(DEFAULT_TIMEOUT):
        while chunk := await stream.receive_some(1024):
            reply += chunk
    return reply


async def reply_to(chat: TestServer, data: bytes) -> bytes:
    """Everything the TCP port answers to ``data`` until it closes the connection."""
    with trio.fail_after(DEFAULT_TIMEOUT):
        stream = await trio.open_tcp_stream(*chat.address("tcp"))
    async with stream:
        await stream.send_all(data)
        return await read_all(stream)


def address_of(chat: TestServer, nick: str) -> str:
    session = chat.server.hub.find(nick)
    assert session is not None, nick
    return session.address


async def test_trusted_proxy_v1_and_v2_give_the_real_address_to_limits_and_bans() -> None:
    async with (
        open_test_server(config=PROXIED) as chat,
        via_proxy(chat, v1("198.51.100.1", 40001), "alice") as alice,
        via_proxy(chat, v2(source="203.0.113.2", port=40002), "bob") as bob,
        via_proxy(chat, v2(family=0x21, source="2001:db8::3", port=40003), "carol") as carol,
        via_proxy(chat, v1("203.0.113.2", 40004), "dave") as dave,
    ):
        assert address_of(chat, "alice") == "198.51.100.1:40001"
        assert address_of(chat, "bob") == "203.0.113.2:40002"
        assert address_of(chat, "carol") == "[2001:db8::3]:40003"
        assert chat.server.connections.count("203.0.113.2") == 2
        assert chat.server.connections.count("127.0.0.1") == 0
        # A third connection from bob's real host is one too many; another host is not.
        refused = await reply_to(chat, v1("203.0.113.2", 40005) + b'{"type":"hello"}\n')
        assert refused == REFUSED + b"too many connections from 203.0.113.2 (limit 2)\n"
        async with via_proxy(chat, v1("203.0.113.9", 40006), "erin"):
            pass
        # /ban of bob keeps bob's host out, not everyone behind the proxy.
        await alice.join("#r")
        for client in (bob, carol):
            await client.join("#r")
        await alice.command("/ban bob")
        assert (await bob.expect("leave", lambda e: e.nick == "bob")).reason == "banned by alice"
        await carol.command("/part #r")
        await carol.expect("leave", lambda e: e.nick == "carol")
        await carol.join("#r")  # another host: still welcome
        await dave.command("/join #r")  # bob's host: banned with him
        error = await dave.expect("error")
        assert (error.code, error.text) == ("not_allowed", "you are banned from #r")


async def test_trusted_proxy_must_send_a_valid_proxy_header() -> None:
    async with open_test_server(config=PROXIED) as chat:
        reply = await reply_to(chat, b'{"type":"hello","nick":"sneaky"}\n')
        assert reply == (
            b"!! connection refused: connections from a trusted proxy must start with a PROXY"
            b" protocol header (nginx: proxy_protocol on;)\n"
        )
        reply = await reply_to(chat, b"PROXY TCP4 alice 127.0.0.1 1 2\r\nhello\n")
        assert reply == b"!! connection refused: PROXY v1: 'alice' is not an IP address\n"
        reply = await reply_to(chat, b"PROXY TCP4 1.2.3.4 " + b"9" * 200)
        assert reply.startswith(b"!! connection refused: PROXY v1 line not ended by CRLF")
        assert not chat.server.hub.sessions
        # LOCAL (the proxy's health check) and UNKNOWN: the proxy is the client.
        async with via_proxy(chat, v2(command=0), "health"):
            assert address_of(chat, "health").startswith("127.0.0.1:")
        async with via_proxy(chat, b"PROXY UNKNOWN\r\n", "unknown"):
            assert address_of(chat, "unknown").startswith("127.0.0.1:")


async def test_a_trusted_proxy_on_ipv6() -> None:
    config = local_config(host="::1", trusted_proxies=["::1/128"], max_connections_per_host=1)
    async with open_test_server(config=config) as chat:
        async with via_proxy(chat, v1("2001:db8::42", 4242), "six"):
            assert address_of(chat, "six") == "[2001:db8::42]:4242"
            refused = await reply_to(chat, v2(family=0x21, source="2001:db8::42", port=1))
            assert refused == REFUSED + b"too many connections from 2001:db8::42 (limit 1)\n"
        async with ws_client(chat, "web6", [(b"X-Forwarded-For", b"2001:db8::43")]):
            assert address_of(chat, "web6") == "[2001:db8::43]:0"


async def test_reading_the_proxy_header_is_bounded_by_the_handshake_timeout() -> None:
    config = replace(PROXIED, handshake_timeout=0.5)
    async with open_test_server(config=config) as chat:
        async with via_proxy(chat, v1("192.0.2.5", 5), "good") as good:
            for stalled in (b"", b"PROXY TCP4 192.0.2.6 ", v2()[:20]):  # silent, half a header
                with trio.fail_after(DEFAULT_TIMEOUT):
                    stream = await trio.open_tcp_stream(*chat.address("tcp"))
                async with stream:
                    await stream.send_all(stalled)
                    assert chat.server.connections.count() == 1  # no slot while it waits
                    reply = await read_all(stream)
                assert reply == REFUSED + b"no PROXY protocol header within 0.5 s\n"
            await good.say("still here")  # the others never noticed
            assert (await good.expect("message")).text == "still here"


async def test_trusted_proxy_header_then_a_text_client() -> None:
    async with open_test_server(config=PROXIED) as chat:
        assert await text_login(chat, v1("192.0.2.44", 5555) + b"textuser\n", "textuser") == (
            "192.0.2.44"
        )


async def text_login(chat: TestServer, data: bytes, nick: str) -> str:
    """Send ``data`` to the TCP port as a person on nc would; the host ``nick`` got."""
    with trio.fail_after(DEFAULT_TIMEOUT):
        stream = await trio.open_tcp_stream(*chat.address("tcp"))
        async with stream:
            await stream.send_all(data)
            lines = LineBuffer(4096)
            while True:
                line = await read_line(stream, lines)
                assert isinstance(line, bytes), line
                if f"Hello {nick}".encode() in line:
                    return host_of(address_of(chat, nick))


@pytest.mark.parametrize(
    "header",
    [
        b"PROXY TCP4 203.0.113.2 127.0.0.1 40002 12345\r\n",
        b"PROXY UNKNOWN\r\n",
        v2(),
        v2(command=0),
    ],
)
async def test_untrusted_proxy_header_is_refused_and_never_a_nickname(header: bytes) -> None:
    config = local_config(trusted_proxies=["10.0.0.0/8"])  # not 127.0.0.1
    async with open_test_server(config=config) as chat:
        reply = await reply_to(chat, header + b'{"type":"hello","nick":"x"}\n')
        assert reply == (
            b"!! connection refused: a PROXY protocol header is accepted only from a trusted"
            b" proxy (setting trusted_proxies)\n"
        )
        assert not chat.server.hub.sessions  # no user "PROXY", no user "QUIT"
        # Sent in pieces (a v1 line split after "PRO"), it is still recognised.
        with trio.fail_after(DEFAULT_TIMEOUT):
            stream = await trio.open_tcp_stream(*chat.address("tcp"))
        async with stream:
            await stream.send_all(header[:3])  # TCP_NODELAY: a segment of its own, usually
            await stream.send_all(header[3:] + b"\n")
            assert (await read_all(stream)).startswith(b"!! connection refused: a PROXY")
        assert not chat.server.hub.sessions
        # A person typing a line that merely starts like one is a person.
        assert await text_login(chat, b"PROXYMAN\n", "PROXYMAN") == "127.0.0.1"


async def test_proxy_header_comes_before_tls(ca: trustme.CA, tmp_path: Path) -> None:
    cert = ca.issue_cert("127.0.0.1")
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(cert_path))
    cert.private_key_pem.write_to_path(str(key_path))
    context = ssl.create_default_context()
    ca.configure_trust(context)
    cert_file, key_file = str(cert_path), str(key_path)
    async with open_test_server(
        config=replace(PROXIED, tls_cert=cert_file, tls_key=key_file)
    ) as chat:
        with trio.fail_after(DEFAULT_TIMEOUT):
            raw = await trio.open_tcp_stream(*chat.address("tcp"))
            await raw.send_all(v2(source="203.0.113.77", port=7777))
            stream = trio.SSLStream(raw, context, server_hostname="127.0.0.1")
            await stream.do_handshake()
        async with stream:
            client = TcpChatClient(stream)
            await client.login("secure")
            assert address_of(chat, "secure") == "203.0.113.77:7777"
    # From an untrusted peer, a PROXY header before TLS gets the same refusal.
    async with open_test_server(config=local_config(tls_cert=cert_file, tls_key=key_file)) as chat:
        reply = await reply_to(chat, v1("203.0.113.2", 1))
        assert reply.startswith(b"!! connection refused: a PROXY protocol header is accepted")


async def test_x_forwarded_for_from_a_trusted_proxy_on_the_websocket_port() -> None:
    config = replace(PROXIED, max_connections_per_host=1)
    async with open_test_server(config=config) as chat:
        spoofed = [(b"X-Forwarded-For", b"6.6.6.6, 203.0.113.5")]
        async with ws_client(chat, "webby", spoofed):
            # The right-most entry not a trusted proxy: what the proxy saw, not the client's word.
            assert address_of(chat, "webby") == "203.0.113.5:0"
            with pytest.raises(trio_websocket.ConnectionRejected) as refused:
                async with ws_client(chat, "again", spoofed):
                    pass
            assert refused.value.status_code == 503
            assert refused.value.body == b"too many connections from 203.0.113.5 (limit 1)\n"
        forwarded = [(b"Forwarded", b'for="[2001:db8::9]:4711";proto=http')]
        async with ws_client(chat, "rfc", forwarded):
            assert address_of(chat, "rfc") == "[2001:db8::9]:4711"
        async with ws_client(chat, "plain", []):  # no header: the proxy itself
            assert address_of(chat, "plain").startswith("127.0.0.1:")


async def test_x_forwarded_for_from_anyone_else_is_ignored() -> None:
    config = local_config(trusted_proxies=["10.0.0.0/8"], max_connections_per_host=1)
    async with open_test_server(config=config) as chat:
        spoofed = [(b"X-Forwarded-For", b"203.0.113.5"), (b"Forwarded", b"for=203.0.113.6")]
        async with ws_client(chat, "liar", spoofed):
            assert address_of(chat, "liar").startswith("127.0.0.1:")
            assert chat.server.connections.count("203.0.113.5") == 0


async def test_loopback_is_exempt_from_the_per_host_limit_by_default() -> None:
    async with open_test_server(config=local_config(max_connections_per_host=2)) as chat:
        async with AsyncExitStack() as stack:
            for n in range(4):
                await stack.enter_async_context(open_client(chat, f"local{n}"))
            assert chat.server.connections.count("127.0.0.1") == 4
    strict = local_config(max_connections_per_host=2, limit_loopback=True)
    async with open_test_server(config=strict) as chat:
        async with open_client(chat, "a"), open_client(chat, "b"):
            reply = await reply_to(chat, b'{"type":"hello","nick":"c"}\n')
            assert reply == REFUSED + b"too many connections from 127.0.0.1 (limit 2)\n"


@asynccontextmanager
async def ws_client(
    chat: TestServer, nick: str, extra_headers: list[tuple[bytes, bytes]]
) -> AsyncIterator[ChatClient]:
    host, port = chat.address("ws")
    async with trio_websocket.open_websocket(
        host, port, "/", use_ssl=False, extra_headers=extra_headers, connect_timeout=DEFAULT_TIMEOUT
    ) as ws:
        client = WebSocketChatClient(ws)
        await client.login(nick)
        yield client


# ------------------------------------------------------------------------ settings


def test_trusted_proxies_from_toml_environment_and_flags(tmp_path: Path) -> None:
    toml = tmp_path / "chat.toml"
    toml.write_text('trusted-proxies = ["127.0.0.1", "10.0.0.0/8"]\nlimit_loopback = true\n')
    config = load_config(config_file=toml)
    assert (config.trusted_proxies, config.limit_loopback) == (["127.0.0.1", "10.0.0.0/8"], True)
    env = {"TRIO_CHAT_TRUSTED_PROXIES": "::1, 2001:db8::/32"}
    assert load_config(config_file=toml, environ=env).trusted_proxies == ["::1", "2001:db8::/32"]
    args = build_parser().parse_args(
        ["serve", "--trusted-proxy", "192.0.2.1", "--trusted-proxy", "fd00::/8"]
    )
    config = load_config(config_file=toml, environ=env, overrides=overrides_from_args(args))
    assert config.trusted_proxies == ["192.0.2.1", "fd00::/8"]
    assert ServerConfig().trusted_proxies == [] and ServerConfig().limit_loopback is False
    assert "trusted_proxies = []" in render_example_config().splitlines()


def test_a_bad_trusted_proxy_is_one_clear_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as error:
        load_config(environ={"TRIO_CHAT_TRUSTED_PROXIES": "127.0.0.1,proxy.local"})
    assert str(error.value) == (
        "environment TRIO_CHAT_TRUSTED_PROXIES: 'proxy.local' is not an IP address or CIDR"
        " network (e.g. 127.0.0.1, 10.0.0.0/8, ::1), got ['127.0.0.1', 'proxy.local']"
    )
    with pytest.raises(ServerSetupError, match=r"trusted_proxies: '10\.0\.0\.0/40' is not"):
        ChatServer(local_config(trusted_proxies=["10.0.0.0/40"]))


def test_the_refusal_lines_are_the_documented_ones() -> None:
    documented = (Path(__file__).resolve().parent.parent / "docs" / "protocol.md").read_text()
    for reason in (UNTRUSTED_PROXY_HEADER, PROXY_HEADER_REQUIRED):
        assert f"`{refused_line(reason).decode().strip()}`" in documented
