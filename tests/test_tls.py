"""TLS on the TCP port and wss:// on the WebSocket port, with trustme-made certificates."""

from __future__ import annotations

import datetime
import logging
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
import trustme

from trio_chat.server import ChatServer, ServerSetupError
from trio_chat.testing import local_config, open_client, open_test_server


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def cert_files(ca: trustme.CA, tmp_path: Path) -> Iterator[tuple[str, str]]:
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(cert_path))
    cert.private_key_pem.write_to_path(str(key_path))
    yield str(cert_path), str(key_path)


def client_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


async def test_tls_and_wss_clients_chat_and_plain_clients_are_told(
    ca: trustme.CA, cert_files: tuple[str, str]
) -> None:
    cert, key = cert_files
    async with open_test_server(config=local_config(tls_cert=cert, tls_key=key)) as chat:
        assert [a.split("://")[0] for a in chat.addresses] == ["tls", "wss"]
        context = client_context(ca)
        async with (
            open_client(chat, "alice", ssl_context=context) as alice,
            open_client(chat, "wes", websocket=True, ssl_context=context) as wes,
        ):
            await wes.say("over wss")
            assert (await alice.expect("message")).text == "over wss"

            # Someone with nc on the TLS port gets one readable line, and nobody else notices.
            host, port = chat.address("tcp")
            plain = await trio.open_tcp_stream(host, port)
            async with plain:
                await plain.send_all(b"hello?\n")
                with trio.fail_after(5):
                    reply = b""
                    while chunk := await plain.receive_some(1024):
                        reply += chunk
                assert reply.startswith(b"This port speaks TLS.")

            # A client that does not trust the certificate fails its handshake; the server
            # carries on.
            with pytest.raises(trio.BrokenResourceError):
                stream = await trio.open_ssl_over_tcp_stream(
                    host, port, ssl_context=ssl.create_default_context()
                )
                async with stream:
                    await stream.do_handshake()
            await alice.say("still serving")
            assert (await wes.expect("message", lambda e: e.nick == "alice")).text == (
                "still serving"
            )


async def test_expired_certificate_is_refused_by_clients_and_warned_about(
    ca: trustme.CA, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    past = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)
    cert = ca.issue_cert("127.0.0.1", not_before=past, not_after=past + datetime.timedelta(1))
    cert_path, key_path = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(cert_path))
    cert.private_key_pem.write_to_path(str(key_path))
    config = local_config(tls_cert=str(cert_path), tls_key=str(key_path))
    with caplog.at_level(logging.WARNING, logger="trio_chat.server"):
        server = ChatServer(config)
    assert [r.getMessage() for r in caplog.records] == [
        f"the TLS certificate {cert_path} expired on 2020-01-02 00:00 UTC: "
        "clients will refuse to connect"
    ]
    assert server.metrics.value("trio_chat_tls_cert_not_after_seconds") == 1577923200
    async with open_test_server(config=config) as chat:
        for scheme in ("tcp", "ws"):  # the TLS port and the wss:// port
            host, port = chat.address(scheme)
            with pytest.raises(trio.BrokenResourceError) as info, trio.fail_after(5):
                stream = await trio.open_ssl_over_tcp_stream(
                    host, port, ssl_context=client_context(ca)
                )
                async with stream:
                    await stream.do_handshake()
            assert "certificate has expired" in str(info.value.__cause__)


async def test_a_refusal_on_a_tls_port_closes_instead_of_writing_into_the_handshake(
    ca: trustme.CA, cert_files: tuple[str, str]
) -> None:
    cert, key = cert_files
    config = local_config(
        tls_cert=cert, tls_key=key, max_connections_per_host=1, limit_loopback=True
    )
    async with open_test_server(config=config) as chat:
        async with open_client(chat, "alice", ssl_context=client_context(ca)):
            for scheme in ("tcp", "ws"):
                host, port = chat.address(scheme)
                stream = await trio.open_tcp_stream(host, port)
                async with stream:
                    with trio.fail_after(5):
                        assert await stream.receive_some(4096) == b""  # not a plain line
                with pytest.raises(trio.BrokenResourceError), trio.fail_after(5):
                    tls = await trio.open_ssl_over_tcp_stream(
                        host, port, ssl_context=client_context(ca)
                    )
                    async with tls:
                        await tls.do_handshake()


def test_a_certificate_expiring_soon_is_warned_about_and_a_fresh_one_is_not(
    ca: trustme.CA, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    now = datetime.datetime.now(datetime.UTC)
    for days, warned in ((3, True), (90, False)):
        cert = ca.issue_cert("127.0.0.1", not_after=now + datetime.timedelta(days))
        cert_path, key_path = tmp_path / f"c{days}.pem", tmp_path / f"k{days}.pem"
        cert.private_key_and_cert_chain_pem.write_to_path(str(cert_path))
        cert.private_key_pem.write_to_path(str(key_path))
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="trio_chat.server"):
            ChatServer(local_config(tls_cert=str(cert_path), tls_key=str(key_path)))
        messages = [r.getMessage() for r in caplog.records]
        if warned:
            assert len(messages) == 1
            assert messages[0].startswith(f"the TLS certificate {cert_path} expires on ")
            assert messages[0].endswith(f", in {days} days")
        else:
            assert messages == []


def test_missing_or_partial_tls_settings_are_clear_errors(
    cert_files: tuple[str, str], tmp_path: Path
) -> None:
    cert, _key = cert_files
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a key")
    with pytest.raises(ServerSetupError, match="needs both"):
        ChatServer(local_config(tls_cert=cert))
    with pytest.raises(ServerSetupError, match=r"TLS file not found: /nope/key\.pem"):
        ChatServer(local_config(tls_cert=cert, tls_key="/nope/key.pem"))
    with pytest.raises(ServerSetupError, match="cannot load TLS certificate"):
        ChatServer(local_config(tls_cert=str(garbage), tls_key=str(garbage)))
