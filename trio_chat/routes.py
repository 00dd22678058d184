"""Plugin HTTP routes on the web port: the registry, the request a handler gets, the answer
it gives, and the shared-secret check. No I/O here (the transport's side is
:mod:`trio_chat.transports.webroutes`), so all of it is tested without sockets.

A route is what a webhook needs: ``POST /hooks/github`` reached by a program, not a person.
So a route names its shared secret when it is registered (``secret=None`` must be written
out to make a route public), its body has a size limit, and whatever the handler does
wrong becomes a plain 500 for the caller and a log line naming the plugin, never a
traceback on the wire. The page's own files (``/``, ``/app.js``, ...) cannot be taken.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import parse_qsl

import orjson

#: The methods a route may answer (``HEAD`` is answered for every ``GET`` route).
ROUTE_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})
#: A route's body limit unless it names one: a webhook's JSON is a few KiB.
DEFAULT_MAX_BODY = 64 * 1024
#: The largest body limit a route may ask for (the WebSocket port's message cap).
MAX_BODY_LIMIT = 1024 * 1024

#: A route's path: ``/`` and segments of letters, digits and ``-._~`` (no ``.`` or ``..``
#: segment), so a path is compared as the client sends it, with nothing to decode.
ROUTE_PATH = re.compile(r"^(/(?!\.\.?(?:/|$))[A-Za-z0-9._~-]+)+$")

#: The header carrying a plain shared secret (``curl -H "X-Trio-Chat-Secret: ..."``).
SECRET_HEADER = "x-trio-chat-secret"
#: The header carrying GitHub's signature of the body: ``sha256=`` and the hex HMAC-SHA256
#: of the body keyed with the secret (GitHub, Gitea and Forgejo send it).
SIGNATURE_HEADER = "x-hub-signature-256"

PLAIN_TEXT = "text/plain; charset=utf-8"
JSON = "application/json"


class HTTPError(Exception):
    """Raise in a route handler to answer with ``status`` and ``text`` (a 4xx for a bad
    request: ``HTTPError(400, "no text field")``)."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text


@dataclass(frozen=True, slots=True)
class Request:
    """One HTTP request to a route, whole: read, size-checked and authenticated before the
    handler sees it."""

    method: str
    #: The path without the query (``/hooks/github``).
    path: str
    #: The query's parameters, the first value of each (``?room=%23dev`` -> ``{"room": "#dev"}``).
    query: Mapping[str, str]
    #: Header names in lower case; a repeated header's values joined with ``", "``.
    headers: Mapping[str, str]
    body: bytes
    #: The client's ``host:port`` (behind a trusted proxy, the one the proxy reported).
    client: str

    @property
    def text(self) -> str:
        """The body as UTF-8 text; a body that is not is answered 400."""
        try:
            return self.body.decode("utf-8")
        except UnicodeDecodeError:
            raise HTTPError(400, "the body is not UTF-8 text") from None

    def json(self) -> Any:
        """The body parsed as JSON; a body that is not JSON is answered 400."""
        try:
            return orjson.loads(self.body)
        except orjson.JSONDecodeError:
            raise HTTPError(400, "the body is not JSON") from None


@dataclass(frozen=True, slots=True)
class Response:
    """What a route answers. A handler may also return a ``str`` (200, plain text), a
    ``dict`` or ``list`` (200, JSON) or ``None`` (204, no body)."""

    status: int = 200
    body: bytes | str = b""
    content_type: str = PLAIN_TEXT
    headers: Sequence[tuple[str, str]] = field(default_factory=tuple)

    @classmethod
    def json(cls, value: Any, status: int = 200) -> Response:
        return cls(status, orjson.dumps(value) + b"\n", JSON)

    @property
    def body_bytes(self) -> bytes:
        return self.body.encode() if isinstance(self.body, str) else self.body


RouteResult = Response | str | dict[str, Any] | list[Any] | None
RouteHandler = Callable[[Request], "RouteResult | Awaitable[RouteResult]"]


def as_response(result: object) -> Response:
    """The answer for what a handler returned; :class:`TypeError` for anything else."""
    if isinstance(result, Response):
        if not 200 <= result.status <= 599 or not isinstance(result.body, bytes | str):
            raise TypeError(f"a Response with status {result.status!r}")
        return result
    if result is None:
        return Response(204)
    if isinstance(result, str):
        return Response(200, result if result.endswith("\n") else result + "\n")
    if isinstance(result, dict | list):
        return Response.json(result)
    raise TypeError(f"{type(result).__name__}, not a Response, str, dict, list or None")


@dataclass(frozen=True, slots=True)
class RouteSpec:
    method: str
    path: str
    handler: RouteHandler
    #: The shared secret a caller must prove (``None``: a public route).
    secret: str | None
    max_body: int
    plugin: str


class RegisterRoute(Protocol):
    """The ``register`` callable handed to the ``register_routes`` hook."""

    def __call__(
        self,
        method: str,
        path: str,
        handler: RouteHandler,
        *,
        secret: str | None,
        max_body: int = DEFAULT_MAX_BODY,
    ) -> None: ...


class RouteRegistry:
    """Every plugin route by path and method; refuses bad paths, duplicates and the page's
    own paths, remembering which plugin added what."""

    def __init__(self, owner: Callable[[], str] = lambda: "", reserved: Collection[str] = ()):
        #: Names the plugin whose hook implementation is calling (as for commands).
        self._owner = owner
        self._reserved = frozenset(reserved)
        self._routes: dict[str, dict[str, RouteSpec]] = {}

    def register(
        self,
        method: str,
        path: str,
        handler: RouteHandler,
        *,
        secret: str | None,
        max_body: int = DEFAULT_MAX_BODY,
    ) -> None:
        """The ``register`` callable of the ``register_routes`` hook."""
        owner = self._owner() or "(unknown plugin)"
        self.add(RouteSpec(method.upper(), path, handler, secret, max_body, owner))

    def add(self, spec: RouteSpec) -> None:
        where = f"plugin {spec.plugin!r}: route {spec.method} {spec.path}"
        if spec.method not in ROUTE_METHODS:
            raise ValueError(f"{where}: the method is not one of {sorted(ROUTE_METHODS)}")
        if spec.path in self._reserved:
            raise ValueError(f"{where}: the path is one of the browser page's files")
        if not ROUTE_PATH.match(spec.path) or len(spec.path) > 200:
            raise ValueError(f"{where}: a path is /segments of letters, digits and -._~")
        if not callable(spec.handler):
            raise ValueError(f"{where}: the handler is not callable")
        if spec.secret is not None and (not isinstance(spec.secret, str) or not spec.secret):
            raise ValueError(f"{where}: the secret is empty (secret=None makes a public route)")
        if not 0 <= spec.max_body <= MAX_BODY_LIMIT:
            raise ValueError(f"{where}: max_body must be 0 to {MAX_BODY_LIMIT}")
        methods = self._routes.setdefault(spec.path, {})
        taken = methods.get(spec.method)
        if taken is not None:
            raise ValueError(f"{where}: already registered by {taken.plugin!r}")
        methods[spec.method] = spec

    def find(self, path: str) -> Mapping[str, RouteSpec] | None:
        """The routes of ``path`` (no query) by method, or ``None`` if no plugin serves it."""
        return self._routes.get(path)

    def remove_plugin(self, plugin: str) -> None:
        for path, methods in list(self._routes.items()):
            for method in [m for m, s in methods.items() if s.plugin == plugin]:
                del methods[method]
            if not methods:
                del self._routes[path]

    def __iter__(self) -> Any:
        return iter(
            sorted(
                (spec for methods in self._routes.values() for spec in methods.values()),
                key=lambda s: (s.path, s.method),
            )
        )

    def __len__(self) -> int:
        return sum(len(methods) for methods in self._routes.values())


def signature(secret: str, body: bytes) -> str:
    """The ``X-Hub-Signature-256`` value of ``body`` for ``secret``, as GitHub computes it."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def secret_proven(secret: str | None, headers: Mapping[str, str], body: bytes) -> bool:
    """Whether the request proves it knows the route's ``secret``: an ``X-Hub-Signature-256``
    of the body, or the secret itself in ``X-Trio-Chat-Secret`` (compared in constant time).
    A public route (``secret=None``) asks for nothing."""
    if secret is None:
        return True
    signed = headers.get(SIGNATURE_HEADER)
    if signed is not None:
        return hmac.compare_digest(signed.encode(), signature(secret, body).encode())
    given = headers.get(SECRET_HEADER)
    return given is not None and hmac.compare_digest(given.encode(), secret.encode())


def request_parts(target: bytes) -> tuple[str, dict[str, str]]:
    """The path and the query parameters of a request target (``/a?x=1``)."""
    raw_path, _, raw_query = target.decode("ascii", "replace").partition("?")
    query: dict[str, str] = {}
    for name, value in parse_qsl(raw_query, keep_blank_values=True):
        query.setdefault(name, value)
    return raw_path, query


def header_map(headers: Sequence[tuple[bytes, bytes]]) -> dict[str, str]:
    """h11's headers (lower-case names) as text, repeated ones joined with ``", "``."""
    joined: dict[str, str] = {}
    for name, value in headers:
        key, text = name.decode("latin-1"), value.decode("latin-1")
        joined[key] = f"{joined[key]}, {text}" if key in joined else text
    return joined


__all__ = [
    "DEFAULT_MAX_BODY",
    "HTTPError",
    "RegisterRoute",
    "Request",
    "Response",
    "RouteHandler",
    "RouteRegistry",
    "RouteSpec",
    "as_response",
    "secret_proven",
    "signature",
]
