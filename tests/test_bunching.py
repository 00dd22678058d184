"""Lines that arrive together go out together: what several readers said in one
scheduling round reaches each member of the room in one write, not one write per reader.

That is what keeps the last member's tail short when lines bunch up (see
:mod:`trio_chat.publisher`): with each reader fanning out its own line at once, a room's
last member heard the third of three lines that came together only after three whole
fan-outs.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Sequence

import pytest
import trio

import trio_chat.transports.tcp as tcp
from trio_chat.protocol import Message, MessageChange
from trio_chat.store import Store
from trio_chat.store.records import Row
from trio_chat.store.writer import Commit, WriteItem, Writer
from trio_chat.testing import ChatClient, open_client, open_test_server

SENDERS = ("ann", "bob", "cy")


def fd_of(client: ChatClient) -> int:
    stream = client.stream  # type: ignore[attr-defined]
    assert isinstance(stream, trio.SocketStream)
    return stream.socket.fileno()


async def test_lines_of_several_readers_in_one_round_reach_each_member_in_one_write(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    writes: list[bytes] = []  # what the server wrote straight to a socket, in order
    write_nowait = tcp.write_nowait

    def counted(fd: int, data: bytes) -> bytes:
        writes.append(data)
        return write_nowait(fd, data)

    monkeypatch.setattr(tcp, "write_nowait", counted)
    texts = [f"together from {nick}" for nick in SENDERS]
    async with open_test_server() as chat, contextlib.AsyncExitStack() as stack:
        senders = [await stack.enter_async_context(open_client(chat, n)) for n in SENDERS]
        last = await stack.enter_async_context(open_client(chat, "dee"))
        for client in senders:  # everyone is in, and every join is delivered
            await client.expect("join", lambda e: e.nick == "dee")
        writes.clear()
        # Each line on its own connection, all in the kernel before the server runs
        # again (no await between them): the server's next poll finds all three readable.
        for client, text in zip(senders, texts, strict=True):
            frame = b'{"type":"say","text":"%s"}\n' % text.encode()
            assert os.write(fd_of(client), frame) == len(frame)
        for client in (*senders, last):  # (in whichever order the server numbered them)
            for _ in texts:
                await client.expect("message")
            heard = [e.text for e in client.history if isinstance(e, Message)]
            assert sorted(heard) == sorted(texts)
    carrying = [data for data in writes if any(t.encode() in data for t in texts)]
    assert all(all(t.encode() in data for t in texts) for data in carrying), carrying
    assert len(carrying) == len(SENDERS) + 1  # one write to each member


async def test_batches_committed_while_the_fan_out_waited_go_out_together(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With a store, each batch is committed before it is delivered. Batches that came in
    separate rounds while an earlier commit held the deliverer go out as one once their
    commits are done: one write to each member for all of them, not one per batch."""
    writes: list[bytes] = []
    write_nowait = tcp.write_nowait

    def counted(fd: int, data: bytes) -> bytes:
        writes.append(data)
        return write_nowait(fd, data)

    appended = 0
    appended_changed = trio.Event()
    append_rows_nowait = Store.append_rows_nowait

    def counted_append(self: Store, rows: Sequence[Row | MessageChange]) -> Commit:
        nonlocal appended, appended_changed
        appended += 1
        appended_changed.set()
        appended_changed = trio.Event()
        return append_rows_nowait(self, rows)

    release_first = threading.Event()  # the first line's commit waits for it, in its thread
    holding = threading.Event()  # set once it waits
    write_items = Writer._write_items  # (looked up at each batch: the lane holds _write_batch)

    def held_write_items(self: Writer, batch: list[WriteItem]) -> None:
        if not holding.is_set():
            holding.set()
            assert release_first.wait(timeout=10)
        write_items(self, batch)

    async def appended_up_to(count: int) -> None:
        while appended < count:
            await appended_changed.wait()

    monkeypatch.setattr(tcp, "write_nowait", counted)
    async with open_test_server() as chat, contextlib.AsyncExitStack() as stack:
        ann = await stack.enter_async_context(open_client(chat, "ann"))
        dee = await stack.enter_async_context(open_client(chat, "dee"))
        await ann.expect("join", lambda e: e.nick == "dee")
        writes.clear()
        monkeypatch.setattr(Store, "append_rows_nowait", counted_append)
        monkeypatch.setattr(Writer, "_write_items", held_write_items)
        texts = ["first, held in its commit", "second", "third"]
        for count, text in enumerate(texts, start=1):  # each in a round of its own
            await ann.say(text)
            with trio.fail_after(10):
                await appended_up_to(count)
                if count == 1:  # the first line's commit is held in its thread
                    assert await trio.to_thread.run_sync(holding.wait, 10)
        release_first.set()
        for client in (ann, dee):
            for _ in texts:
                await client.expect("message")
            assert [e.text for e in client.history if isinstance(e, Message)] == texts
    later = [t.encode() for t in texts[1:]]
    carrying = [data for data in writes if any(t in data for t in later)]
    assert len(carrying) == 2, carrying  # one write to each member
    assert all(all(t in data for t in later) for data in carrying), carrying
