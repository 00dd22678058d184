"""The tests' Redis (``redis_url``, ``redis_server`` in conftest.py) through coredis on trio."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import trio

if TYPE_CHECKING:
    from conftest import RedisServer


def client(url: str):  # type: ignore[no-untyped-def]
    import coredis

    return coredis.Redis.from_url(url, decode_responses=True)


async def test_coredis_on_trio_sets_gets_and_round_trips_a_stream(redis_url: str) -> None:
    key = f"test:{uuid.uuid4().hex}"
    async with client(redis_url) as redis:
        await redis.set(key, "v")
        assert await redis.get(key) == "v"
        first = await redis.xadd(key + ":log", {"text": "hello"})
        second = await redis.xadd(key + ":log", {"text": "again"})
        entries = await redis.xrange(key + ":log")
        assert [(e.identifier, dict(e.field_values)) for e in entries] == [
            (first, {"text": "hello"}),
            (second, {"text": "again"}),
        ]
        await redis.delete([key, key + ":log"])


async def test_a_restarted_redis_keeps_its_data(redis_server: RedisServer) -> None:
    async with client(redis_server.url) as redis:
        await redis.xadd("log", {"n": "1"})
    await trio.to_thread.run_sync(redis_server.restart)
    async with client(redis_server.url) as redis:
        assert [dict(e.field_values) for e in await redis.xrange("log")] == [{"n": "1"}]
