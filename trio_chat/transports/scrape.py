"""The ``/metrics`` port: answers Prometheus scrapes with :meth:`Metrics.render
<trio_chat.metrics.Metrics.render>`, each answer written by h11 through
:mod:`trio_chat.transports.http`.

It lives among the transports (it listens and answers HTTP), not in :mod:`trio_chat.metrics`,
which the hub imports and so must not depend on them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import trio

from ..metrics import CONTENT_TYPE
from .http import response
from .streams import listener_address, open_listeners

log = logging.getLogger("trio_chat.metrics")

#: Seconds a scraper has to send its request head, and the most of it that is read.
SCRAPE_TIMEOUT = 5.0
MAX_REQUEST_HEAD = 8 * 1024


async def serve_metrics(
    render: Callable[[], str],
    host: str,
    port: int,
    *,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Answer ``GET /metrics`` with ``render()`` on ``host:port`` (0 picks a free port), forever.

    ``task_status.started`` gets the bound ``http://host:port/metrics`` addresses, so
    ``await nursery.start(serve_metrics, metrics.render, host, port)`` returns them.
    """
    listeners = await open_listeners(host, port)
    task_status.started([listener_address("http", listener) + "/metrics" for listener in listeners])

    async def handler(stream: trio.SocketStream) -> None:
        await answer_scrape(render, stream)

    await trio.serve_listeners(handler, listeners)


async def answer_scrape(render: Callable[[], str], stream: trio.abc.Stream) -> None:
    """One HTTP/1.x request and its answer, then close. Never raises (it would end the
    listener): a peer that is slow, gone or talking nonsense is just dropped or refused."""
    try:
        async with stream:
            head = b""
            with trio.move_on_after(SCRAPE_TIMEOUT):
                while b"\r\n\r\n" not in head and len(head) < MAX_REQUEST_HEAD:
                    chunk = await stream.receive_some(4096)
                    if not chunk:
                        break
                    head += chunk
            await stream.send_all(scrape_response(render, head))
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    except Exception:
        log.exception("answering a metrics scrape failed")


def scrape_response(render: Callable[[], str], head: bytes) -> bytes:
    """The answer to the request ``head`` (what was read of it): the metrics for
    ``GET /metrics``, or an error. Only the request line is looked at, so a scraper that
    sends no ``Host`` still gets its metrics; any ``HEAD`` gets the head alone."""
    parts = head.split(b"\r\n", 1)[0].split()
    head_only = parts[:1] == [b"HEAD"]
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
        return response(400, b"bad request\n", head_only=head_only)
    if parts[0] not in (b"GET", b"HEAD"):
        return response(405, b"method not allowed\n")
    if parts[1].split(b"?")[0] != b"/metrics":
        return response(404, b"not found: try /metrics\n", head_only=head_only)
    return response(200, render().encode(), content_type=CONTENT_TYPE, head_only=head_only)


__all__ = [
    "MAX_REQUEST_HEAD",
    "SCRAPE_TIMEOUT",
    "answer_scrape",
    "scrape_response",
    "serve_metrics",
]
