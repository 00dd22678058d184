"""A connection's place in the connection limits (``ConnectionSlot``) is given back
however the connection ends before it logs in, and kept by one that does until it ends."""

from __future__ import annotations

import trio

from trio_chat.testing import TestServer, local_config, open_client, open_test_server


async def places_taken_become(chat: TestServer, count: int) -> None:
    with trio.fail_after(5):
        while chat.server.connections.count() != count:  # noqa: ASYNC110 (no event to wait on)
            await trio.sleep(0.01)


async def test_places_are_given_back_by_connections_that_never_log_in() -> None:
    config = local_config(max_connections_per_host=2, limit_loopback=True)
    async with open_test_server(config=config) as chat:
        host, port = chat.address("tcp")
        async with open_client(chat, "stays"):
            await places_taken_become(chat, 1)
            # One that leaves before its hello, one that came for HTTP, one refused.
            silent = await trio.open_tcp_stream(host, port)
            await places_taken_become(chat, 2)
            await silent.aclose()
            await places_taken_become(chat, 1)
            misdirected = await trio.open_tcp_stream(host, port)
            async with misdirected:
                await misdirected.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                with trio.fail_after(5):
                    assert (await misdirected.receive_some(1024)).startswith(b"HTTP/1.1 400")
            await places_taken_become(chat, 1)
            async with open_client(chat, "second"):
                await places_taken_become(chat, 2)
                refused = await trio.open_tcp_stream(host, port)
                async with refused:
                    with trio.fail_after(5):
                        assert b"connection refused" in await refused.receive_some(1024)
                assert chat.server.connections.count() == 2
            await places_taken_become(chat, 1)
        await places_taken_become(chat, 0)
