"""A real IRC client: irssi (Debian's package) under tmux talks with a JSON client.

irssi keeps its settings in a temporary ``--home``, never in ``~``. The test reads irssi's
screen with ``tmux capture-pane``, polling until what it waits for is there (bounded).
Skipped without irssi or tmux, except in CI (``CI`` set), where ``.ci/run`` installs them
and a missing one fails the test.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import trio

from trio_chat.testing import local_config, open_client, open_test_server

WAIT = 20.0
IRSSI = shutil.which("irssi")
TMUX = shutil.which("tmux")
#: irssi's settings: who it is, and no pause between the commands it queues (by default
#: 2.2 s apart, which the test would wait for after the join: MODE, WHO, ...).
IRSSI_CONFIG = """settings = {
  core = { real_name = "Irene"; user_name = "irene"; nick = "irene"; };
  "irc/core" = { cmd_queue_speed = "0msec"; cmds_max_at_once = "1000"; };
};
"""
#: tmux's window: a fixed size, so irssi's screen is the same everywhere.
SIZE = ("-x", "120", "-y", "30", "-s", "irc")


def need_programs() -> tuple[str, str]:
    if IRSSI is None or TMUX is None:
        message = "irssi and tmux are needed (apt-get install irssi tmux)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return IRSSI, TMUX


async def test_irssi_joins_the_lobby_and_talks_with_a_json_client(tmp_path: Path) -> None:
    irssi, tmux = need_programs()
    socket_path = str(tmp_path / "tmux.sock")
    home = tmp_path / "irssi"
    home.mkdir()
    (home / "config").write_text(IRSSI_CONFIG)

    async def tmux_run(*args: str) -> str:
        with trio.fail_after(WAIT):
            result = await trio.run_process(
                [tmux, "-S", socket_path, *args], capture_stdout=True, capture_stderr=True
            )
        return str(result.stdout.decode())

    async def type_line(text: str) -> None:
        await tmux_run("send-keys", "-t", "irc", "-l", text)
        await tmux_run("send-keys", "-t", "irc", "Enter")

    async def screen_until(check: Callable[[str], bool]) -> str:
        screen = ""
        with trio.fail_after(WAIT):
            while not check(screen):
                await trio.sleep(0.05)
                screen = await tmux_run("capture-pane", "-p", "-t", "irc")
        return screen

    async with open_test_server(config=local_config(irc_port=0)) as chat:
        host, port = chat.address("irc")
        command = f"{irssi} --home={home} -n irene -c {host} -p {port}"
        env = {**os.environ, "TERM": "xterm-256color"}
        with trio.fail_after(WAIT):
            await trio.run_process(
                [tmux, "-S", socket_path, "-f", "/dev/null", "new-session", "-d", *SIZE, command],
                env=env,
            )
        try:
            async with open_client(chat, "jay") as jay:
                await jay.expect("join", lambda e: e.nick == "irene")
                await screen_until(lambda s: "End of /MOTD" in s)
                # The status window is shown first: go to #lobby's.
                await type_line("/join #lobby")
                await screen_until(lambda s: "[#lobby]" in s and "has joined #lobby" in s)

                await jay.say("hello irssi")
                await screen_until(lambda s: "< jay> hello irssi" in s)

                await type_line("hi from irssi")
                said = await jay.expect("message", lambda e: e.nick == "irene")
                assert (said.room, said.text, said.kind) == ("#lobby", "hi from irssi", "say")

                await type_line("/me waves")
                acted = await jay.expect("message", lambda e: e.nick == "irene")
                assert (acted.text, acted.kind) == ("waves", "action")

                await jay.command("/me bows")
                await screen_until(lambda s: "* jay bows" in s)

                await type_line("/quit see you")
                left = await jay.expect("leave", lambda e: e.nick == "irene")
                assert left.reason == "see you"
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(WAIT):
                await trio.run_process(
                    [tmux, "-S", socket_path, "kill-server"], check=False, capture_stderr=True
                )
