"""What a ``--broker`` URL says: where Redis is and how to log in (pure, no I/O).

One parser for both readers of the URL: the settings check (:func:`trio_chat.config.broker_url`,
so a bad URL is a one-line error before anything starts) and the broker's own connection
(:func:`trio_chat.broker.connection.open_redis_connection`). Two parsers would let a URL
pass the check and then fail, or be read differently, once the server runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

#: The URL schemes a broker URL may have: Redis over TCP, over TLS, over a Unix socket.
SCHEMES = ("redis", "rediss", "unix")

#: A broker URL to show in errors. (Of the database number only the form is checked, a
#: whole number from 0: Redis has 16 by default, but ``databases`` in redis.conf may say more.)
EXAMPLE = "redis://127.0.0.1:6379/0"


@dataclass(frozen=True, slots=True)
class Address:
    """Where and how to connect, from a ``redis://``, ``rediss://`` or ``unix://`` URL."""

    scheme: str
    host: str = "127.0.0.1"
    port: int = 6379
    path: str = ""  # unix://
    db: int = 0
    username: str | None = None
    password: str | None = None


def parse_url(url: str) -> Address:
    """``redis://[[user]:password@]host[:port][/db]``, ``rediss://...`` (TLS),
    ``unix://[[user]:password@]/path[?db=N]``; ``?db=N`` works for any of them.

    Raises :class:`ValueError` saying what is wrong (the scheme, the host or socket path,
    the port, the database number), in words fit for a one-line error.
    """
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        raise ValueError("the port must be a number from 0 to 65535") from None
    scheme = parts.scheme
    if scheme not in SCHEMES:
        raise ValueError(f"must be a redis://, rediss:// or unix:// URL (e.g. {EXAMPLE})")
    query = parse_qs(parts.query)
    db_text = query["db"][-1] if "db" in query else ""
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    if scheme == "unix":
        path = parts.netloc.rpartition("@")[2] + parts.path
        if not path:
            raise ValueError("a unix:// URL needs the socket's path (unix:///run/redis.sock)")
        return Address(scheme, path=unquote(path), db=_db(db_text), username=username,
                       password=password)  # fmt: skip
    if not parts.hostname:
        raise ValueError(f"the URL names no host (e.g. {EXAMPLE})")
    if not db_text and parts.path.strip("/"):
        db_text = parts.path.strip("/")
    return Address(
        scheme,
        host=parts.hostname,
        port=port or 6379,
        db=_db(db_text),
        username=username,
        password=password,
    )


def _db(text: str) -> int:
    if not text:
        return 0
    if not text.isdigit() or not text.isascii():
        raise ValueError(f"the database must be a number from 0 (as in {EXAMPLE}), not {text!r}")
    return int(text)
