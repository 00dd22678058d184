"""Fan-out under load: everyone gets everything, in one order; slow readers cost nobody."""

from __future__ import annotations

from contextlib import AsyncExitStack

import trio
import trio.testing

from trio_chat.testing import (
    ChatClient,
    local_config,
    open_client,
    open_test_server,
    stalled_client,
)

CLIENTS = 50
MESSAGES_EACH = 20


async def test_fifty_clients_each_sending_twenty_all_receive_1000_in_one_order() -> None:
    async with open_test_server() as chat, AsyncExitStack() as stack:
        clients: list[ChatClient] = [
            await stack.enter_async_context(open_client(chat, f"user{i}")) for i in range(CLIENTS)
        ]
        received: dict[int, list[tuple[int, str, str]]] = {}

        async def run(index: int, client: ChatClient) -> None:
            async def send_all() -> None:
                for n in range(MESSAGES_EACH):
                    await client.say(f"{index}:{n}")

            got: list[tuple[int, str, str]] = []
            async with trio.open_nursery() as nursery:
                nursery.start_soon(send_all)
                while len(got) < CLIENTS * MESSAGES_EACH:
                    event = await client.expect("message")
                    got.append((event.id, event.nick, event.text))
            received[index] = got

        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                for index, client in enumerate(clients):
                    nursery.start_soon(run, index, client)

    expected = {(f"user{i}", f"{i}:{n}") for i in range(CLIENTS) for n in range(MESSAGES_EACH)}
    reference = received[0]
    assert len(reference) == CLIENTS * MESSAGES_EACH
    assert {(nick, text) for _, nick, text in reference} == expected  # nothing lost or doubled
    assert [i for i, _, _ in reference] == sorted(i for i, _, _ in reference)
    for index in range(CLIENTS):
        assert received[index] == reference, f"client {index} saw another order"
    # Each sender's own messages arrive in the order it sent them.
    for i in range(CLIENTS):
        mine = [text for _, nick, text in reference if nick == f"user{i}"]
        assert mine == [f"{i}:{n}" for n in range(MESSAGES_EACH)]


async def test_a_client_that_stops_reading_is_disconnected_and_others_get_everything() -> None:
    config = local_config(outbox_size=32, send_timeout=5.0)
    # More than the kernel buffers on both sides can hold (tcp_wmem allows up to 4 MiB), so
    # the server's writes to the stalled client really block and its queue fills.
    total = 1000
    text = "x" * 10_000
    async with open_test_server(config=config) as chat:
        with stalled_client(chat, "stalled"):
            async with open_client(chat, "alice") as alice, open_client(chat, "bob") as bob:
                await bob.expect("join", lambda e: e.nick == "bob")
                assert chat.server.hub.find("stalled") is not None
                got: list[str] = []

                async def keep_reading(client: ChatClient) -> None:
                    while True:
                        await client.receive()

                with trio.fail_after(30):
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(keep_reading, alice)  # alice hears herself too
                        for n in range(total):
                            # In step with bob, who reads as fast as he is sent to: only the
                            # stalled client can fall behind.
                            await alice.say(f"{n} {text}")
                            got.append((await bob.expect("message")).text)
                        nursery.cancel_scope.cancel()
                left = [e for e in bob.history if e.TYPE == "leave"]
                assert got == [f"{n} {text}" for n in range(total)]
                assert [(e.nick, e.reason) for e in left] == [
                    ("stalled", "too slow to receive messages")
                ]
                assert chat.server.hub.find("stalled") is None


async def test_the_send_queue_is_bounded_in_bytes_too() -> None:
    # Room for 10,000 events, but only 64 KiB: big messages fill the bytes first.
    config = local_config(outbox_size=10_000, outbox_bytes=64 * 1024)
    async with open_test_server(config=config) as chat:
        with stalled_client(chat, "stalled"):
            async with open_client(chat, "alice") as alice:
                await alice.expect("join", lambda e: e.nick == "alice")
                with trio.fail_after(20):
                    n = 0
                    while chat.server.hub.find("stalled") is not None:
                        await alice.say(f"{n} " + "y" * 12_000)
                        await alice.expect("message")
                        n += 1
                # (The leave may have come before alice's last line, skipped by its expect.)
                left = [e for e in alice.history if e.TYPE == "leave"]
                event = left[0] if left else await alice.expect("leave")
                assert (event.nick, event.reason) == ("stalled", "too slow to receive messages")
                # Far fewer than 10,000 events were queued: the byte bound decided.
                assert n < 1000


async def test_unsent_bytes_return_to_zero_once_everything_is_written() -> None:
    """The byte bound is only as good as its bookkeeping: nothing may drift."""
    async with open_test_server() as chat:
        async with (
            open_client(chat, "tcp") as tcp,
            open_client(chat, "ws", websocket=True) as ws,
            open_client(chat, "batched", websocket=True, batch=True) as batched,
        ):
            await tcp.send_raw(b"".join(b'{"type":"say","text":"n %d"}\n' % n for n in range(50)))
            for client in (tcp, ws, batched):
                for _ in range(50):
                    await client.expect("message")
            await chat.server.settle()
            await trio.testing.wait_all_tasks_blocked()
            sessions = list(chat.server.hub.sessions.values())
            assert [s.mailbox.unsent_bytes for s in sessions] == [0, 0, 0]
