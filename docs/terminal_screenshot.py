"""Make docs/terminal.png: the terminal client in tmux, through a short chat and a restart.

    python docs/terminal_screenshot.py        (needs tmux and chromium; nothing else)

A server runs in this process; the client runs in a tmux pane as a person would run it;
two scripted users talk to it; the server is restarted while they keep talking. The pane is
captured with its colours (``tmux capture-pane -e``), turned into HTML here and photographed
by headless Chromium.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import trio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from trio_chat.server import ChatServer  # noqa: E402
from trio_chat.testing import local_config  # noqa: E402

COLUMNS, ROWS = 96, 24
COLOURS = {
    0: "#1e1e1e", 1: "#e06c75", 2: "#98c379", 3: "#e5c07b",
    4: "#61afef", 5: "#c678dd", 6: "#56b6c2", 7: "#dcdfe4",
    8: "#5c6370", 9: "#ff7b86", 10: "#b5e890", 11: "#ffd68a",
    12: "#8cc8ff", 13: "#e29ef5", 14: "#7fd8e3", 15: "#ffffff",
}  # fmt: skip
FOREGROUND, BACKGROUND = "#dcdfe4", "#1e1e1e"


class Raw:
    """A scripted user on the JSON-lines port."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buffer = b""

    async def send(self, **frame: Any) -> None:
        await self.stream.send_all(json.dumps(frame).encode() + b"\n")

    async def wait_for(self, text: str) -> None:
        with trio.fail_after(10):
            while text.encode() not in self.buffer:
                self.buffer += await self.stream.receive_some(65536)


async def user(port: int, nick: str) -> Raw:
    raw = Raw(await trio.open_tcp_stream("127.0.0.1", port))
    await raw.send(type="hello", nick=nick)
    await raw.wait_for('"welcome"')
    return raw


def ansi_to_html(text: str) -> str:
    """The SGR codes tmux writes (colours, bold, dim, reverse) as HTML spans."""
    out: list[str] = []
    state: dict[str, Any] = {"fg": None, "bg": None, "bold": False, "dim": False, "rev": False}
    for part in re.split(r"(\x1b\[[0-9;]*m)", text):
        if not part.startswith("\x1b["):
            if part:
                fg = COLOURS.get(state["fg"], FOREGROUND) if state["fg"] is not None else None
                bg = COLOURS.get(state["bg"], BACKGROUND) if state["bg"] is not None else None
                if state["rev"]:
                    fg, bg = bg or BACKGROUND, fg or FOREGROUND
                style = []
                if fg:
                    style.append(f"color:{fg}")
                if bg:
                    style.append(f"background:{bg}")
                if state["bold"]:
                    style.append("font-weight:bold")
                if state["dim"]:
                    style.append("opacity:0.6")
                out.append(f'<span style="{";".join(style)}">{html.escape(part)}</span>')
            continue
        codes = [int(c) if c else 0 for c in part[2:-1].split(";")]
        for code in codes:
            if code == 0:
                state = {"fg": None, "bg": None, "bold": False, "dim": False, "rev": False}
            elif code == 1:
                state["bold"] = True
            elif code == 2:
                state["dim"] = True
            elif code == 7:
                state["rev"] = True
            elif code == 22:
                state["bold"] = state["dim"] = False
            elif code == 27:
                state["rev"] = False
            elif 30 <= code <= 37:
                state["fg"] = code - 30
            elif 90 <= code <= 97:
                state["fg"] = code - 90 + 8
            elif code == 39:
                state["fg"] = None
            elif 40 <= code <= 47:
                state["bg"] = code - 40
            elif code == 49:
                state["bg"] = None
    return "".join(out)


async def main() -> None:
    tmux = shutil.which("tmux")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if tmux is None or chromium is None:
        sys.exit("needs tmux and chromium")
    work = Path(tempfile.mkdtemp())
    sock = str(work / "tmux.sock")

    async def tmux_do(*args: str) -> str:
        result = await trio.run_process([tmux, "-S", sock, *args], capture_stdout=True)
        return result.stdout.decode()

    async def screen_has(text: str, colours: bool = False) -> str:
        shown = ""
        with trio.move_on_after(15):
            while True:
                shown = await tmux_do("capture-pane", "-p", *(["-e"] if colours else []))
                if text in shown:
                    return shown
                await trio.sleep(0.05)
        sys.exit(f"the screen never showed {text!r}:\n{shown}")

    async with trio.open_nursery() as nursery:
        port = 0
        server: ChatServer | None = None
        done = trio.Event()

        async def start() -> None:
            nonlocal port, server, done
            server = ChatServer(local_config(port=port, ws_port=None, db=str(work / "chat.db")))
            done = trio.Event()
            finished = done

            async def serve(task_status: trio.TaskStatus[list[str]]) -> None:
                assert server is not None
                try:
                    await server.serve(task_status=task_status)
                finally:
                    finished.set()

            (address,) = await nursery.start(serve)
            port = int(address.rsplit(":", 1)[1])

        await start()
        env = {**os.environ, "TERM": "xterm-256color"}
        env.pop("NO_COLOR", None)
        client = f"{sys.executable} -m trio_chat.cli connect 127.0.0.1 --port {port} --nick alice"
        await trio.run_process(
            [tmux, "-S", sock, "-f", "/dev/null", "new-session", "-d", "-x", str(COLUMNS),
             "-y", str(ROWS), "-c", str(ROOT), client],
            env=env,
        )  # fmt: skip
        try:
            await screen_has("alice #lobby>")
            bob = await user(port, "bob")
            await bob.send(type="say", text="morning all")
            await screen_has("morning all")
            await tmux_do("send-keys", "-l", "/join #dev")
            await tmux_do("send-keys", "Enter")
            await screen_has("alice #dev>")
            carol = await user(port, "carol")
            await carol.send(type="command", name="join", args="#dev")
            await carol.send(type="say", room="#dev", text="alice: the build is green again")
            await screen_has("build is green")
            await tmux_do("send-keys", "-l", "ca")
            await tmux_do("send-keys", "Tab")
            await screen_has("alice #dev> carol:")
            await tmux_do("send-keys", "-l", "thanks, shipping it")
            await tmux_do("send-keys", "Enter")
            await screen_has("<alice> carol: thanks")
            await bob.send(type="command", name="me", args="waves from the lobby")
            await screen_has("waves")
            await tmux_do("send-keys", "-l", "a line half ty")
            assert server is not None
            server.shutdown()
            await done.wait()
            await screen_has("reconnecting in")
            await start()
            carol = await user(port, "carol")
            await carol.send(type="command", name="join", args="#dev")
            await carol.send(type="say", room="#dev", text="that was a quick restart")
            await carol.send(type="say", room="#lobby", text="lunch at noon?")
            await screen_has("back in")
            shown = await screen_has("lunch at noon", colours=True)
        finally:
            await trio.run_process([tmux, "-S", sock, "kill-server"], check=False)
            if server is not None:
                server.shutdown()

    lines = shown.rstrip("\n").split("\n")
    page = (
        "<!doctype html><meta charset=utf-8><style>"
        f"body{{margin:0;background:{BACKGROUND}}}"
        f"pre{{margin:0;padding:14px 16px;color:{FOREGROUND};background:{BACKGROUND};"
        "font:15px/1.35 'DejaVu Sans Mono',monospace;white-space:pre}</style><pre>"
        # One pass: tmux writes an attribute once, and it holds into the next lines.
        + ansi_to_html("\n".join(lines))
        + "</pre>"
    )
    (work / "terminal.html").write_text(page)
    target = ROOT / "docs" / "terminal.png"
    width, height = COLUMNS * 9 + 40, len(lines) * 20 + 30
    await trio.run_process(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         f"--screenshot={target}", f"--window-size={width},{height}",
         (work / "terminal.html").as_uri()],
        capture_stdout=True, capture_stderr=True,
    )  # fmt: skip
    print(f"wrote {target}")


if __name__ == "__main__":
    trio.run(main)
