"""Who a connection really comes from when a reverse proxy stands in front (sans-IO).

Behind a proxy every connection comes from the proxy's address, so the per-host connection
limit, bans and login throttling would lump every user together. A proxy listed in the
``trusted_proxies`` setting tells the server who its client is:

* on the TCP port with the PROXY protocol (HAProxy's; ``proxy_protocol on;`` in nginx's
  ``stream {}``): one header before anything else, even before TLS. Version 1 is a text
  line (``PROXY TCP4 203.0.113.7 192.0.2.1 51234 12345\\r\\n``), version 2 a 16-byte binary
  header followed by the addresses. :func:`parse_proxy_header` reads either from bytes,
  h11-style: bytes in, a :class:`ProxyHeader` or :data:`NEED_DATA` out, and
  :class:`ProxyProtocolError` for anything else.
* on the WebSocket/HTTP port with ``X-Forwarded-For`` or ``Forwarded`` (RFC 7239):
  :func:`client_from_headers` takes the right-most address that is not itself a trusted
  proxy, so a client cannot pass itself off as someone else by sending the header itself
  (the proxies append to it; only what trusted hops wrote is believed).

Nothing here does I/O; the transports read the bytes (bounded in time) and ask.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .framing import NEED_DATA, _Sentinel

__all__ = [
    "MAX_V1_BYTES",
    "MAX_V2_BYTES",
    "NEED_DATA",
    "NO_PROXY_HEADER",
    "V1_PREFIX",
    "V2_SIGNATURE",
    "ProxyHeader",
    "ProxyProtocolError",
    "ProxyTrust",
    "client_from_headers",
    "format_address",
    "looks_like_proxy_header",
    "parse_proxy_header",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: How a version 1 header starts.
V1_PREFIX = b"PROXY "
#: The 12 bytes every version 2 header starts with (chosen to be invalid in any text protocol).
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
#: The longest version 1 line the specification allows, CRLF included.
MAX_V1_BYTES = 107
#: The largest version 2 header accepted (16 bytes + addresses + TLVs). The length field
#: allows 64 KiB; addresses take at most 216 bytes and real proxies add a few TLVs (TLS
#: details, a cloud's endpoint id), so anything near 64 KiB is not a proxy being helpful.
MAX_V2_BYTES = 4096

_V2_HEAD = 16
# Address lengths of version 2 families (high nibble of byte 14): IPv4, IPv6, UNIX.
_V2_INET, _V2_INET6, _V2_UNIX = 0x1, 0x2, 0x3


#: The message of the :class:`ProxyProtocolError` for bytes that do not start a header.
NO_PROXY_HEADER = "no PROXY protocol header"


class ProxyProtocolError(Exception):
    """The bytes are not a valid PROXY protocol header; the message says what is wrong."""


@dataclass(frozen=True, slots=True)
class ProxyHeader:
    """A parsed PROXY protocol header.

    ``source`` is the real client as ``(ip, port)``, or ``None`` when the header carries no
    client to believe: a version 2 ``LOCAL`` connection (the proxy's own health check), the
    ``UNKNOWN`` family of version 1, or the unspecified and UNIX families of version 2.
    Then the connection's own peer (the proxy) is the client, as the specification says.
    ``length`` is how many bytes the header took; what follows belongs to the client.
    """

    version: int
    source: tuple[str, int] | None
    length: int

    @property
    def client_address(self) -> str | None:
        """``host:port`` (``[v6]:port``) of the client, or ``None`` (see ``source``)."""
        return None if self.source is None else format_address(*self.source)


def looks_like_proxy_header(data: bytes) -> bool | _Sentinel:
    """Whether ``data`` starts with a PROXY header (v1 or v2); :data:`NEED_DATA` when it is
    too short to say (it is a strict prefix of one of the two signatures)."""
    for signature in (V1_PREFIX, V2_SIGNATURE):
        if data.startswith(signature):
            return True
        if signature.startswith(data):
            return NEED_DATA
    return False


def parse_proxy_header(data: bytes) -> ProxyHeader | _Sentinel:
    """Parse the PROXY header at the start of ``data``.

    Returns the header (its ``length`` says where the client's bytes begin), or
    :data:`NEED_DATA` if ``data`` is a valid beginning that needs more bytes. Raises
    :class:`ProxyProtocolError` for anything else: no PROXY header at all, a malformed or
    oversized one, an unknown version or command.
    """
    started = looks_like_proxy_header(data)
    if started is NEED_DATA:
        return NEED_DATA
    if not started:
        raise ProxyProtocolError(NO_PROXY_HEADER)
    if data.startswith(V1_PREFIX):
        return _parse_v1(data)
    return _parse_v2(data)


def _parse_v1(data: bytes) -> ProxyHeader | _Sentinel:
    end = data.find(b"\r\n", 0, MAX_V1_BYTES)
    if end < 0:
        if len(data) >= MAX_V1_BYTES or b"\n" in data:
            raise ProxyProtocolError(f"PROXY v1 line not ended by CRLF within {MAX_V1_BYTES} bytes")
        return NEED_DATA
    length = end + 2
    try:
        line = data[:end].decode("ascii")
    except UnicodeDecodeError:
        raise ProxyProtocolError("PROXY v1 line is not ASCII") from None
    words = line.split(" ")
    if len(words) >= 2 and words[1] == "UNKNOWN":
        # "The receiver must ignore anything presented before the CRLF is found."
        return ProxyHeader(1, None, length)
    if len(words) != 6 or words[1] not in ("TCP4", "TCP6"):
        raise ProxyProtocolError(f"malformed PROXY v1 line: {line[:60]!r}")
    _, family, source, destination, source_port, destination_port = words
    version = 4 if family == "TCP4" else 6
    source_ip = _v1_address(source, version)
    _v1_address(destination, version)
    port = _v1_port(source_port)
    _v1_port(destination_port)
    return ProxyHeader(1, (source_ip, port), length)


def _v1_address(text: str, version: int) -> str:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise ProxyProtocolError(f"PROXY v1: {text[:45]!r} is not an IP address") from None
    if address.version != version:
        raise ProxyProtocolError(f"PROXY v1: {text!r} is not an IPv{version} address")
    return _plain(address)


def _v1_port(text: str) -> int:
    # Decimal, 0-65535, no leading zeros (and no signs or spaces, which int() would take).
    if not text.isascii() or not text.isdigit() or (len(text) > 1 and text[0] == "0"):
        raise ProxyProtocolError(f"PROXY v1: bad port {text[:8]!r}")
    port = int(text)
    if port > 65535:
        raise ProxyProtocolError(f"PROXY v1: bad port {text[:8]!r}")
    return port


def _parse_v2(data: bytes) -> ProxyHeader | _Sentinel:
    if len(data) < _V2_HEAD:
        return NEED_DATA
    version_command, family, size = struct.unpack_from("!BBH", data, 12)
    if version_command >> 4 != 2:
        raise ProxyProtocolError(f"PROXY v2: unknown version {version_command >> 4}")
    command = version_command & 0x0F
    if command > 1:
        raise ProxyProtocolError(f"PROXY v2: unknown command {command}")
    length = _V2_HEAD + size
    if length > MAX_V2_BYTES:
        raise ProxyProtocolError(f"PROXY v2 header of {length} bytes is over {MAX_V2_BYTES}")
    if len(data) < length:
        return NEED_DATA
    if command == 0:  # LOCAL: the proxy's own connection (a health check)
        return ProxyHeader(2, None, length)
    address_family = family >> 4
    body = data[_V2_HEAD:length]
    if address_family == _V2_INET:
        if size < 12:
            raise ProxyProtocolError("PROXY v2: IPv4 addresses need 12 bytes")
        ip: IPAddress = ipaddress.IPv4Address(body[:4])
        (port,) = struct.unpack_from("!H", body, 8)
    elif address_family == _V2_INET6:
        if size < 36:
            raise ProxyProtocolError("PROXY v2: IPv6 addresses need 36 bytes")
        ip = ipaddress.IPv6Address(body[:16])
        (port,) = struct.unpack_from("!H", body, 32)
    elif address_family in (0, _V2_UNIX):  # unspecified, or a UNIX socket: no address to use
        return ProxyHeader(2, None, length)
    else:
        raise ProxyProtocolError(f"PROXY v2: unknown address family {address_family}")
    return ProxyHeader(2, (_plain(ip), port), length)


def _plain(address: IPAddress) -> str:
    """The address as text, an IPv4-mapped IPv6 one as IPv4 (a dual-stack proxy reports
    IPv4 clients that way; bans and limits must see one host, not two spellings)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def format_address(host: str, port: int) -> str:
    """``host:port``, with an IPv6 host in brackets (as the transports write peers)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _ip(text: str) -> IPAddress | None:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class ProxyTrust:
    """The ``trusted_proxies`` setting: addresses and CIDR networks, IPv4 and IPv6.

    A bare address is a network of one; ``10.0.0.0/8`` and ``fd00::/8`` cover their ranges
    (host bits are allowed and ignored, as nginx's ``set_real_ip_from`` does). An IPv4 peer
    seen as an IPv4-mapped IPv6 address (a dual-stack listener) matches its IPv4 entry.
    """

    __slots__ = ("networks",)

    def __init__(self, entries: Iterable[str] = ()) -> None:
        self.networks: tuple[IPNetwork, ...] = tuple(parse_network(e) for e in entries)

    def __bool__(self) -> bool:
        return bool(self.networks)

    def trusts(self, host: str) -> bool:
        """Whether ``host`` (an IP address as text; brackets allowed) is a trusted proxy."""
        if not self.networks:
            return False
        address = _ip(host.strip("[]"))
        return address is not None and any(address in net for net in self.networks)


def parse_network(entry: str) -> IPNetwork:
    """One ``trusted_proxies`` entry as a network; :class:`ValueError` with a clear message."""
    try:
        return ipaddress.ip_network(entry.strip(), strict=False)
    except ValueError:
        raise ValueError(f"{entry!r} is not an IP address or CIDR network") from None


# ---------------------------------------------------------------------------- HTTP headers


def client_from_headers(
    headers: Sequence[tuple[bytes, bytes]], trust: ProxyTrust
) -> tuple[str, int] | None:
    """The client a trusted proxy (the peer) reports in ``headers``, as ``(ip, port)``
    (port 0 when the header gives none), or ``None`` when there is nothing to believe.

    ``X-Forwarded-For`` is read if present (what nginx, HAProxy, Caddy, Traefik and Envoy
    write), otherwise ``Forwarded``'s ``for=`` parameters; several headers of one name are
    one list, in order. Each proxy appends the address it received the connection from, so
    walking from the right, every entry up to the first that is not a trusted proxy was
    written by a trusted hop: that first untrusted entry is the client. Entries to its left
    are the client's own words and are ignored. An entry that is not an IP address
    (``unknown``, an obfuscated ``_name``, garbage) stops the walk: the hop that wrote it
    is the client as far as anyone can tell (``None`` when that is the peer itself).
    If every entry is a trusted proxy, the left-most one is the client.
    """
    forwarded_for = _header_values(headers, b"x-forwarded-for")
    if forwarded_for is not None:
        entries = [item.strip() for item in forwarded_for.split(",")]
    else:
        forwarded = _header_values(headers, b"forwarded")
        if forwarded is None:
            return None
        entries = _forwarded_for(forwarded)
    chosen: tuple[str, int] | None = None
    for entry in reversed(entries):
        node = _node(entry)
        if node is None:
            break
        chosen = node
        if not trust.trusts(node[0]):
            break
    return chosen


def _header_values(headers: Sequence[tuple[bytes, bytes]], name: bytes) -> str | None:
    values = [value for key, value in headers if key.lower() == name]
    if not values:
        return None
    return b",".join(values).decode("latin-1")


def _forwarded_for(value: str) -> list[str]:
    """The ``for=`` values of a ``Forwarded`` header (RFC 7239), in order; an element
    without one counts as ``unknown`` (its hop did not say)."""
    result: list[str] = []
    for element in _split_quoted(value, ","):
        found = "unknown"
        for pair in _split_quoted(element, ";"):
            key, sep, raw = pair.partition("=")
            if sep and key.strip().lower() == "for":
                raw = raw.strip()
                if len(raw) >= 2 and raw[0] == raw[-1] == '"':
                    raw = raw[1:-1].replace('\\"', '"').replace("\\\\", "\\")
                found = raw
        result.append(found)
    return result


def _split_quoted(text: str, separator: str) -> list[str]:
    """``text`` split at ``separator`` outside double quotes."""
    parts: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for char in text:
        if escaped:
            escaped = False
        elif quoted and char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == separator and not quoted:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return parts


def _node(text: str) -> tuple[str, int] | None:
    """``(ip, port)`` of one forwarded entry: ``192.0.2.1``, ``192.0.2.1:4711``, ``2001:db8::1``,
    ``[2001:db8::1]`` or ``[2001:db8::1]:4711``; ``None`` if it is no IP address."""
    text = text.strip()
    host, port_text = text, ""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest:
            if not rest.startswith(":"):
                return None
            port_text = rest[1:]
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    address = _ip(host)
    if address is None:
        return None
    port = 0
    if port_text:
        if not port_text.isascii() or not port_text.isdigit() or int(port_text) > 65535:
            port = 0  # an obfuscated port ("_abc"): the host is still good
        else:
            port = int(port_text)
    return str(address), port
