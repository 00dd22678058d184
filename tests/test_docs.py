"""Keep the documentation in step with the code it describes."""

from __future__ import annotations

import re
from pathlib import Path

from trio_chat import protocol

ROOT = Path(__file__).resolve().parent.parent


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    setup = text.split("## Set up", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```console\n(.+?)\n```", setup)


def test_readme_sets_up_with_two_commands_and_ci_runs_the_test_one() -> None:
    serve, test = readme_commands()
    assert serve.endswith("trio-chat serve")
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test in ci, "the README's test command must appear verbatim in .ci/run"


def test_every_error_code_in_the_code_is_documented() -> None:
    documented = (ROOT / "docs" / "protocol.md").read_text()
    # The server's codes; the terminal client's own (trio_chat/client) never go on the wire.
    source = "\n".join(
        p.read_text()
        for p in (ROOT / "trio_chat").rglob("*.py")
        if "client" not in p.relative_to(ROOT / "trio_chat").parts
    )
    codes = set(re.findall(r'code\s*=\s*"([a-z_]+)"', source))
    codes |= set(re.findall(r'RemoteProtocolError\(\s*"([a-z_]+)"', source))
    codes |= set(re.findall(r'session\.close\(\s*"([a-z_]+)"', source))
    codes |= set(re.findall(r'CommandError\([^)]*,\s*"([a-z_]+)"\)', source))
    assert codes, "the pattern found no codes at all"
    missing = sorted(c for c in codes if f"`{c}`" not in documented)
    assert not missing, f"error codes missing from docs/protocol.md: {missing}"


def test_every_frame_type_is_documented() -> None:
    documented = (ROOT / "docs" / "protocol.md").read_text()
    names = [cls.TYPE for cls in protocol._SERVER_EVENTS.values()]
    names += list(protocol._CLIENT_FRAMES)
    for name in names:
        assert f"| `{name}` |" in documented, name


def test_plugin_hook_reference_is_the_hookspec_docstrings() -> None:
    from trio_chat._plugin_docs import hook_reference

    documented = (ROOT / "docs" / "plugins.md").read_text()
    reference = documented.split("## Hook reference", 1)[1]
    assert reference.split("\n\n", 2)[2] == hook_reference(), (
        "docs/plugins.md is stale: regenerate with python -m trio_chat._plugin_docs"
    )


def test_the_ten_line_plugin_of_the_docs_works(tmp_path: Path) -> None:
    import asyncio  # noqa: F401  (the sample is plain Python; only its hooks matter)

    documented = (ROOT / "docs" / "plugins.md").read_text()
    sample = documented.split("```python\n# shout.py\n", 1)[1].split("```", 1)[0]
    assert len([line for line in sample.splitlines() if line.strip()]) <= 10
    (tmp_path / "shout.py").write_text(sample)
    from trio_chat import ChatServer
    from trio_chat.testing import local_config

    server = ChatServer(local_config(plugins=[str(tmp_path / "shout.py")]))
    spec = server.commands.get("shout")
    assert spec is not None and spec.help == "Say something loudly"
