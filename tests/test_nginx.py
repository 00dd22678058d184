"""docs/nginx.conf, run by a real nginx in front of the server: the server sees each
client's own address (X-Forwarded-For on the WebSocket port, the PROXY protocol on the TCP
port), and /ban of one client behind the proxy does not ban the others.

Needs nginx with its stream module (Debian: ``apt-get install nginx-light
libnginx-mod-stream``; ``.ci/run`` installs them). Without it the test is skipped, except
in CI (``CI`` set), where it fails.
"""

from __future__ import annotations

import getpass
import logging
import os
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import NoReturn

import pytest
import trio
import trio_websocket
from test_proxy import address_of

from trio_chat.hub import host_of
from trio_chat.testing import (
    DEFAULT_TIMEOUT,
    ChatClient,
    TcpChatClient,
    TestServer,
    WebSocketChatClient,
    local_config,
    open_test_server,
)

EXAMPLE = Path(__file__).resolve().parent.parent / "docs" / "nginx.conf"
REQUIREMENTS = (
    "needs nginx with the stream module (apt-get install nginx-light libnginx-mod-stream)"
)


def skip_or_fail(reason: str) -> NoReturn:
    """Skip, unless ``CI`` is set (CI installs nginx, so a missing one is an error there)."""
    if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
        pytest.fail(f"{reason} (CI is set)")
    pytest.skip(reason)


def find_nginx() -> str:
    nginx = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
    )
    if nginx is None:
        skip_or_fail(f"no nginx found: {REQUIREMENTS}")
    return nginx


def modules_path(nginx: str) -> str:
    """Where this nginx keeps its dynamic modules (``--modules-path``, Debian's default)."""
    built = subprocess.run([nginx, "-V"], capture_output=True, text=True, timeout=30).stderr
    for word in built.split():
        if word.startswith("--modules-path="):
            return word.split("=", 1)[1]
    return "/usr/lib/nginx/modules"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def substituted(text: str, changes: dict[str, str]) -> str:
    """``text`` with each key replaced by its value; each key must occur exactly once, so the
    test breaks if docs/nginx.conf changes under it."""
    for old, new in changes.items():
        assert text.count(old) == 1, f"docs/nginx.conf no longer has exactly one {old!r}"
        text = text.replace(old, new)
    return text


def nginx_config(tmp: Path, chat: TestServer, http_port: int, tcp_port: int) -> str:
    """docs/nginx.conf with the same directives, but the test's ports, files in ``tmp``
    and nginx in the foreground."""
    _, ws_port = chat.address("ws")
    _, chat_port = chat.address("tcp")
    temp = "\n".join(
        f"    {name}_temp_path {tmp}/{name};"
        for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return substituted(
        EXAMPLE.read_text(),
        {
            "user www-data;": f"user {getpass.getuser()};\ndaemon off;\nerror_log {tmp}/main.log;",
            "pid /run/nginx.pid;": f"pid {tmp}/nginx.pid;",
            "http {\n": f"http {{\n{temp}\n",
            "access_log /var/log/nginx/access.log;": f"access_log {tmp}/access.log;",
            "error_log /var/log/nginx/error.log;": f"error_log {tmp}/error.log;",
            "error_log /var/log/nginx/stream.log;": f"error_log {tmp}/stream.log;",
            "listen 80;": f"listen 127.0.0.1:{http_port};",
            "proxy_pass http://127.0.0.1:12346;": f"proxy_pass http://127.0.0.1:{ws_port};",
            "listen 2345;": f"listen 127.0.0.1:{tcp_port};",
            "proxy_pass 127.0.0.1:12345;": f"proxy_pass 127.0.0.1:{chat_port};",
        },
    )


@asynccontextmanager
async def running_nginx(
    nginx: str, modules: str, tmp: Path, conf: str, ports: list[int]
) -> AsyncIterator[None]:
    """nginx on ``conf`` until the block ends (then stopped, bounded, killed if need be)."""
    path = tmp / "nginx.conf"
    path.write_text(conf)
    command = [nginx, "-p", f"{tmp}/", "-c", str(path), "-e", f"{tmp}/startup.log"]
    # Debian's modules-enabled/*.conf load "modules/NAME.so", relative to the prefix.
    (tmp / "modules").symlink_to(modules)
    with trio.fail_after(30):
        checked = await trio.run_process([*command, "-t"], capture_stderr=True, check=False)
    errors = checked.stderr.decode(errors="replace")
    if checked.returncode != 0:
        if 'unknown directive "stream"' in errors:
            skip_or_fail(f"nginx has no stream module: {REQUIREMENTS}")
        pytest.fail(f"nginx refuses the config derived from docs/nginx.conf:\n{errors}")
    process = await trio.lowlevel.open_process(command, stderr=subprocess.PIPE)
    try:
        with trio.fail_after(10):
            for port in ports:  # nginx is up once it accepts on both
                while True:
                    if process.poll() is not None:
                        pytest.fail(f"nginx exited: {(tmp / 'main.log').read_text()}")
                    try:
                        stream = await trio.open_tcp_stream("127.0.0.1", port)
                    except OSError:
                        await trio.sleep(0.05)
                        continue
                    await stream.aclose()
                    break
        yield
    finally:
        process.terminate()
        with trio.move_on_after(5) as waited:
            await process.wait()
        if waited.cancelled_caught:
            process.kill()
            with trio.move_on_after(5):
                await process.wait()
        if process.stderr is not None:
            await process.stderr.aclose()


async def connect_from(source: str, port: int) -> trio.SocketStream:
    """A TCP connection to 127.0.0.1:``port`` from the loopback address ``source``."""
    sock = trio.socket.socket()
    try:
        await sock.bind((source, 0))
        await sock.connect(("127.0.0.1", port))
    except BaseException:
        sock.close()
        raise
    return trio.SocketStream(sock)


@asynccontextmanager
async def tcp_client(source: str, port: int, nick: str) -> AsyncIterator[ChatClient]:
    with trio.fail_after(DEFAULT_TIMEOUT):
        stream = await connect_from(source, port)
    async with stream:
        client = TcpChatClient(stream)
        await client.login(nick)
        yield client


@asynccontextmanager
async def ws_client(source: str, port: int, nick: str) -> AsyncIterator[ChatClient]:
    async with trio.open_nursery() as nursery:
        with trio.fail_after(DEFAULT_TIMEOUT):
            stream = await connect_from(source, port)
            # A forged header: nginx appends the real address, and the server takes that.
            ws = await trio_websocket.wrap_client_stream(
                nursery,
                stream,
                "127.0.0.1",
                "/",
                extra_headers=[(b"X-Forwarded-For", b"6.6.6.6")],
            )
        try:
            client = WebSocketChatClient(ws)
            await client.login(nick)
            yield client
        finally:
            await ws.aclose()


async def test_the_example_nginx_config_passes_real_addresses(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="trio_chat.connection")
    nginx = find_nginx()
    modules = modules_path(nginx)
    http_port, tcp_port = free_port(), free_port()
    # nginx connects to the server from 127.0.0.1; the clients come from other loopback
    # addresses (all of 127.0.0.0/8 is this machine), so each has an address of its own.
    config = local_config(trusted_proxies=["127.0.0.1"], limit_loopback=True)
    async with open_test_server(config=config) as chat:
        conf = nginx_config(tmp_path, chat, http_port, tcp_port)
        async with (
            running_nginx(nginx, modules, tmp_path, conf, [http_port, tcp_port]),
            tcp_client("127.0.0.4", tcp_port, "alice") as alice,
            ws_client("127.0.0.2", http_port, "bob") as bob,
            tcp_client("127.0.0.3", tcp_port, "carol") as carol,
        ):
            assert host_of(address_of(chat, "alice")) == "127.0.0.4"
            assert address_of(chat, "bob") == "127.0.0.2:0"  # X-Forwarded-For has no port
            assert host_of(address_of(chat, "carol")) == "127.0.0.3"
            assert address_of(chat, "carol") != "127.0.0.3:0"  # the PROXY header has it
            assert chat.server.connections.count("127.0.0.1") == 0
            logged = [r.getMessage() for r in caplog.records]
            assert any("connect nick=bob addr=127.0.0.2:0 " in line for line in logged)

            await alice.join("#r")
            for client in (bob, carol):
                await client.join("#r")
            await alice.command("/ban bob")
            assert (await bob.expect("leave", lambda e: e.nick == "bob")).reason == (
                "banned by alice"
            )
            await carol.command("/part #r")
            await carol.expect("leave", lambda e: e.nick == "carol")
            await carol.join("#r")  # behind the same proxy, but not bob
            async with ws_client("127.0.0.2", http_port, "dave") as dave:
                await dave.command("/join #r")  # from bob's address: banned with him
                error = await dave.expect("error")
                assert (error.code, error.text) == ("not_allowed", "you are banned from #r")
