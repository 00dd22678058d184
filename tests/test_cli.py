"""The ``trio-chat`` command as a user runs it: real processes, real signals, real ports."""

from __future__ import annotations

import gc
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import trio

from trio_chat.program import FULL_GC_EVERY, quiet_gc
from trio_chat.testing import is_prompt

CLI = [sys.executable, "-m", "trio_chat.cli"]


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=30)


def test_port_in_use_is_one_clear_line() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_cli("serve", "--port", str(port), "--ws-port", "0", "--no-entry-points")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"trio-chat: error: address already in use: 127.0.0.1:{port} "
        "(is another server running there?)"
    )
    assert "Traceback" not in result.stderr


def test_the_port_in_use_is_named_even_when_another_port_is_0() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_cli("serve", "--port", "0", "--ws-port", str(port), "--no-entry-points")
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert f"127.0.0.1:{port}" in last and "port 0" not in last


def test_bad_arguments_are_refused_clearly() -> None:
    result = run_cli("serve", "--port", "99999")
    assert result.returncode == 2
    # The check of the setting's declaration, as for the file and the environment.
    assert result.stderr.splitlines()[-1] == (
        "trio-chat serve: error: argument --port: must be a port number from 0 to 65535, got 99999"
    )
    assert "Traceback" not in result.stderr
    result = run_cli("serve", "--plugin", "no_such_plugin_module", "--no-entry-points")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "trio-chat: error: cannot import plugin 'no_such_plugin_module': "
        "No module named 'no_such_plugin_module'"
    )


def test_plugins_lists_the_builtin_commands() -> None:
    result = run_cli("plugins")
    assert result.returncode == 0
    lines = {x.split()[0]: x for x in result.stdout.splitlines()}
    for command in ("/help", "/nick", "/me", "/quit", "/msg"):
        assert command in lines["trio_chat.builtins.core"]
    for command in ("/join", "/who", "/topic"):
        assert command in lines["trio_chat.builtins.rooms"]


async def test_serve_prints_addresses_and_ctrl_c_tells_users_before_exiting() -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = await trio.lowlevel.open_process(
        [*CLI, "serve", "--port", "0", "--ws-port", "0", "--no-entry-points"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert process.stdout is not None and process.stderr is not None
    try:
        with trio.fail_after(15):
            banner = b""
            while b"\n" not in banner:
                banner += await process.stdout.receive_some(4096)
            first = banner.decode().splitlines()[0]
            assert first.startswith("trio-chat serving on tcp://127.0.0.1:")
            assert " ws://127.0.0.1:" in first
            tcp = first.split()[3]
            port = int(tcp.rsplit(":", 1)[1])
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            async with stream:
                await stream.send_all(b'{"type":"hello","nick":"alice"}\n')
                received = b""
                while b'"join"' not in received:
                    received += await stream.receive_some(4096)
                process.send_signal(signal.SIGINT)
                while True:
                    data = await stream.receive_some(4096)
                    if not data:
                        break
                    received += data
            frames = [json.loads(x) for x in received.splitlines() if not is_prompt(x)]
            assert frames[-1] == {
                "type": "bye",
                "code": "shutdown",
                "text": "the server is shutting down",
            }
            assert await process.wait() == 0
            rest = b""
            while chunk := await process.stdout.receive_some(4096):
                rest += chunk
            assert "trio-chat stopped." in (banner + rest).decode()
            errors = b""
            while chunk := await process.stderr.receive_some(4096):
                errors += chunk
            assert b"Traceback" not in errors
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_an_unreachable_broker_is_said_and_a_signal_still_stops_the_start() -> None:
    """Before it listens, a node with ``--broker`` waits for Redis for as long as it takes;
    the log says why it is not serving, and Ctrl-C or SIGTERM ends the wait at once."""
    with socket.socket() as refusing:  # bound, never listening: connections are refused
        refusing.bind(("127.0.0.1", 0))
        port = refusing.getsockname()[1]
        process = await trio.lowlevel.open_process(
            [*CLI, "serve", "--port", "0", "--no-ws", "--no-db", "--no-entry-points",
             "--broker", f"redis://127.0.0.1:{port}/0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
        assert process.stdout is not None and process.stderr is not None
        try:
            with trio.fail_after(20):
                errors = b""
                while b"not serving until it answers" not in errors:
                    chunk = await process.stderr.receive_some(4096)
                    assert chunk, errors.decode()
                    errors += chunk
                process.send_signal(signal.SIGTERM)
                assert await process.wait() == 0
                while chunk := await process.stderr.receive_some(4096):
                    errors += chunk
                out = b""
                while chunk := await process.stdout.receive_some(4096):
                    out += chunk
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    text = errors.decode()
    assert f"cannot reach the broker at redis://127.0.0.1:{port}/0" in text
    assert "Traceback" not in text and "coredis" not in text
    assert "serving on" not in out.decode() and "trio-chat stopped." in out.decode()


def test_a_broker_url_with_a_bad_database_is_one_line() -> None:
    result = run_cli("serve", "--no-entry-points", "--broker", "redis://127.0.0.1:6379/abc")
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == (
        "trio-chat serve: error: argument --broker: the database must be a number from 0 "
        "(as in redis://127.0.0.1:6379/0), not 'abc', got 'redis://127.0.0.1:6379/abc'"
    )


def test_bad_config_file_value_is_one_line_naming_the_key(tmp_path: Path) -> None:
    config = tmp_path / "chat.toml"
    config.write_text('port = "twelve"\n')
    result = run_cli("serve", "--config", str(config))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"trio-chat: error: config file {config}: key 'port': expected an integer, got \"twelve\""
    )


async def test_config_file_then_environment_then_flags(tmp_path: Path) -> None:
    config = tmp_path / "chat.toml"
    config.write_text('server-name = "from-file"\nport = 1\nws_port = 0\ndb = ":memory:"\n')
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TRIO_CHAT_SERVER_NAME": "from-env"}
    process = await trio.lowlevel.open_process(
        [*CLI, "serve", "--config", str(config), "--port", "0", "--no-entry-points"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    assert process.stdout is not None
    try:
        with trio.fail_after(15):
            banner = b""
            while b"\n" not in banner:
                banner += await process.stdout.receive_some(4096)
            port = int(banner.decode().split()[3].rsplit(":", 1)[1])  # the flag beat the file
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            async with stream:
                await stream.send_all(b'{"type":"hello","nick":"alice"}\n')
                received = b""
                while b"\n" not in received:
                    received += await stream.receive_some(4096)
            first = next(x for x in received.splitlines() if not is_prompt(x))
            assert json.loads(first)["server"] == "from-env"
    finally:
        process.send_signal(signal.SIGTERM)
        with trio.fail_after(10):
            await process.wait()


def test_quiet_gc_freezes_start_up_objects_and_spaces_full_collections() -> None:
    """The CLI's server process, once listening (see ``run_until_signal``)."""
    threshold = gc.get_threshold()
    try:
        quiet_gc()
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == (*threshold[:2], FULL_GC_EVERY)
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


def test_db_in_a_missing_folder_is_one_line_naming_it_and_creates_nothing(tmp_path: Path) -> None:
    db = tmp_path / "no" / "such" / "chat.db"
    result = run_cli("serve", "--port", "0", "--no-ws", "--no-entry-points", "--db", str(db))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"trio-chat: error: the database folder {db.parent} does not exist "
        "(create it, or choose another --db)"
    )
    assert not (tmp_path / "no").exists()


def test_only_the_default_database_folder_is_created(tmp_path: Path) -> None:
    from trio_chat.cli import check_db_folder

    default = tmp_path / "xdg" / "trio-chat" / "chat.db"
    assert check_db_folder(str(default), default=str(default)) is None
    assert default.parent.is_dir()  # the program's own place: made on first use
    chosen = tmp_path / "typo" / "chat.db"
    error = check_db_folder(str(chosen), default=str(default))
    assert error is not None and str(chosen.parent) in error
    assert not chosen.parent.exists()
    assert check_db_folder(str(tmp_path / "chat.db"), default=str(default)) is None
    assert check_db_folder(":memory:", default=str(default)) is None
