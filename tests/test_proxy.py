"""Behind a reverse proxy: PROXY protocol, X-Forwarded-For / Forwarded, trusted_proxies,
the loopback exemption, and a real nginx in front of the server."""

from __future__ import annotations

import ipaddress
import struct

import pytest

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


def v2(
    command: int = 1,
    family: int = 0x11,
    source: str = "203.0.113.7",
    port: int = 51234,
    destination: str = "192.0.2.1",
    extra: bytes = b"",
    size: int | None = None,
) -> bytes:
    """A PROXY v2 header (command 1 = PROXY, 0 = LOCAL; family 0x11 TCP4, 0x21 TCP6)."""
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
