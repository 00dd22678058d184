"""Line framing with bounded memory (sans-IO)."""

from __future__ import annotations

from trio_chat.framing import EOF, NEED_DATA, LineBuffer, LineTooLong


def drain(buf: LineBuffer) -> list[object]:
    out: list[object] = []
    while (event := buf.next_event()) not in (NEED_DATA, EOF):
        out.append(event)
    return out


def test_splits_lines_across_chunks_and_strips_crlf() -> None:
    buf = LineBuffer(100)
    buf.feed(b"hel")
    assert buf.next_event() is NEED_DATA
    buf.feed(b"lo\r\nwor")
    assert drain(buf) == [b"hello"]
    buf.feed(b"ld\n\n")
    assert drain(buf) == [b"world", b""]


def test_over_long_line_is_reported_once_and_the_next_line_works() -> None:
    buf = LineBuffer(10)
    buf.feed(b"x" * 25)
    assert buf.next_event() == LineTooLong(10)
    assert buf.buffered_bytes == 0  # nothing of it is kept
    buf.feed(b"y" * 1000)
    assert buf.next_event() is NEED_DATA
    assert buf.buffered_bytes == 0
    buf.feed(b"zz\nok\n")
    assert drain(buf) == [b"ok"]


def test_over_long_line_arriving_whole_with_its_newline() -> None:
    buf = LineBuffer(10)
    buf.feed(b"a" * 50 + b"\nshort\n")
    assert drain(buf) == [LineTooLong(10), b"short"]


def test_line_of_exactly_the_limit_is_accepted() -> None:
    buf = LineBuffer(10)
    buf.feed(b"0123456789\n")
    assert drain(buf) == [b"0123456789"]


def test_memory_stays_bounded_whatever_is_fed() -> None:
    buf = LineBuffer(1000)
    for _ in range(1000):
        buf.feed(b"q" * 4096)
        drain(buf)
        assert buf.buffered_bytes <= 1000 + 4096


def test_last_line_without_newline_is_delivered_at_eof() -> None:
    buf = LineBuffer(100)
    buf.feed(b"one\ntwo")
    buf.feed(b"")
    assert buf.next_event() == b"one"
    assert buf.next_event() == b"two"
    assert buf.next_event() is EOF
    assert buf.next_event() is EOF


def test_has_line_is_true_once_an_unfinished_line_is_already_too_long() -> None:
    # A reader that waits for has_line() before parsing must still hear of an over-long
    # line, or it would buffer a newline-less stream without bound.
    buf = LineBuffer(max_line_bytes=8)
    buf.feed(b"123456789")  # nine bytes: may still be eight and a CR
    assert not buf.has_line()
    buf.feed(b"0")
    assert buf.has_line()
    assert isinstance(buf.next_event(), LineTooLong)
    buf.feed(b"tail\nok\n")
    assert buf.next_event() == b"ok"


def test_a_fed_bytearray_is_copied_not_kept() -> None:
    # A read may come as a bytearray its reader reuses: the lines are what it held then.
    buf = LineBuffer(100)
    data = bytearray(b"one\ntw")
    buf.feed(data)
    data[:] = b"XXXXXX"
    buf.feed(bytearray(b"o\n"))
    assert drain(buf) == [b"one", b"two"]


def test_a_long_read_is_cut_whole_and_what_comes_after_it_joins_its_last_line() -> None:
    lines = [b"line %d " % n + b"x" * (n % 50) for n in range(2000)]
    stream = b"\n".join(lines) + b"\n"
    buf = LineBuffer(1000)
    cut = len(stream) - 10  # a read of ~100 KiB ending inside the last line
    buf.feed(stream[:cut])
    got = drain(buf)
    for n in range(cut, len(stream)):  # the rest one byte at a time
        buf.feed(stream[n : n + 1])
        got += drain(buf)
    assert got == lines


def test_between_lines_the_buffer_keeps_nothing_of_its_own() -> None:
    # A chatting client's connection is between lines nearly always: its buffer is then
    # the shared empty bytes, not a bytearray per connection.
    buf = LineBuffer(100)
    buf.feed(b'{"type":"say","text":"hi"}\n')
    assert drain(buf) == [b'{"type":"say","text":"hi"}']
    assert type(buf._buf) is bytes and not buf._buf
    buf.feed(b"half a li")
    buf.feed(b"ne\n")
    assert drain(buf) == [b"half a line"]
    assert type(buf._buf) is bytes and not buf._buf
