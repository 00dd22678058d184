"""``trio-chat new-plugin NAME``: the package it writes installs with pip, its entry point
loads, and its own test passes as created; bad names and existing folders are refused."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import trio_chat
from trio_chat.scaffold import (
    PluginNames,
    ScaffoldError,
    builtin_commands,
    check_name,
    plugin_files,
    write_plugin,
)

CLI = [sys.executable, "-m", "trio_chat.cli"]
#: The folder that holds this checkout's ``trio_chat``, for the subprocesses' path.
CHECKOUT = str(Path(trio_chat.__file__).resolve().parents[1])


def child_env(*front: Path) -> dict[str, str]:
    """The environment of a subprocess: ``front`` folders, then this checkout, first on the
    path; none of the outer pytest's options."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    path = [str(p) for p in front] + [CHECKOUT, env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in path if p)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def new_plugin(name: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, "new-plugin", name],
        cwd=cwd,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=30,
    )


# -------------------------------------------------------------------------- names, no I/O


def test_one_name_spelled_for_each_place() -> None:
    names = check_name("dice-roll")
    assert names == PluginNames("dice-roll")
    assert (names.command, names.distribution, names.module, names.function) == (
        "dice-roll",
        "trio-chat-dice-roll",
        "trio_chat_dice_roll",
        "dice_roll_command",
    )
    assert check_name("a").module == "trio_chat_a"
    assert check_name("x" * 32).command == "x" * 32


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("Weather", "'Weather' is not a plugin name: lower case letters"),
        ("1up", "'1up' is not a plugin name"),
        ("dice roll", "'dice roll' is not a plugin name"),
        ("dice--roll", "is not a plugin name"),
        ("roll-", "is not a plugin name"),
        ("_roll", "is not a plugin name"),
        ("café", "is not a plugin name"),
        ("x" * 33, "at most 32 characters"),
        ("", "'' is not a plugin name"),
        ("../evil", "is not a plugin name"),
        ("trio-chat-weather", "give the name without 'trio-chat-': trio-chat new-plugin weather"),
        ("trio-chat-", "is not a plugin name"),
    ],
)
def test_a_bad_name_is_refused_with_the_reason(name: str, message: str) -> None:
    with pytest.raises(ScaffoldError) as caught:
        check_name(name)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_built_in_command_name_is_refused() -> None:
    taken = builtin_commands()
    assert {"help", "join", "who", "nick", "register"} <= taken
    for name in taken:
        with pytest.raises(ScaffoldError, match=rf"^/{name} is a built-in command"):
            check_name(name)


def test_the_files_of_a_package() -> None:
    files = plugin_files(check_name("dice-roll"))
    assert sorted(files) == [
        "README.md",
        "pyproject.toml",
        "tests/conftest.py",
        "tests/test_trio_chat_dice_roll.py",
        "trio_chat_dice_roll/__init__.py",
        "trio_chat_dice_roll/py.typed",
    ]
    project = tomllib.loads(files["pyproject.toml"])
    assert project["project"]["name"] == "trio-chat-dice-roll"
    assert project["project"]["dependencies"] == ["trio-chat"]
    assert project["project"]["entry-points"]["trio_chat"] == {"dice-roll": "trio_chat_dice_roll"}
    assert project["tool"]["setuptools"]["packages"] == ["trio_chat_dice_roll"]
    assert project["tool"]["pytest"]["ini_options"]["trio_mode"] is True
    for path, text in files.items():
        assert "$" not in text, path  # every placeholder filled in
        if path.endswith(".py"):
            compile(text, path, "exec")
    module = files["trio_chat_dice_roll/__init__.py"]
    assert 'register("dice-roll", dice_roll_command,' in module


# ------------------------------------------------------------------------ writing a folder


def test_an_existing_folder_is_never_overwritten(tmp_path: Path) -> None:
    folder = write_plugin("weather", tmp_path)
    assert folder == tmp_path / "trio-chat-weather"
    (folder / "README.md").write_text("mine")
    with pytest.raises(ScaffoldError, match="trio-chat-weather already exists: not overwriting"):
        write_plugin("weather", tmp_path)
    assert (folder / "README.md").read_text() == "mine"
    (tmp_path / "trio-chat-dice").write_text("a file, not a folder")
    with pytest.raises(ScaffoldError, match="already exists"):
        write_plugin("dice", tmp_path)
    assert (tmp_path / "trio-chat-dice").read_text() == "a file, not a folder"


def test_a_folder_that_cannot_be_made_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ScaffoldError, match=r"^cannot create .*trio-chat-weather: "):
        write_plugin("weather", tmp_path / "missing")


# ------------------------------------------------------------------------------- the CLI


def test_the_command_writes_the_package_and_says_what_next(tmp_path: Path) -> None:
    result = new_plugin("weather", tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "wrote ./trio-chat-weather/, a trio-chat plugin with the command /weather:"
    assert lines[-1] == (
        "next: pip install './trio-chat-weather[test]' && python -m pytest ./trio-chat-weather"
    )
    written = sorted(
        str(p.relative_to(tmp_path / "trio-chat-weather"))
        for p in (tmp_path / "trio-chat-weather").rglob("*")
        if p.is_file()
    )
    assert [line.strip() for line in lines[1:-1]] == written
    assert written == sorted(plugin_files(check_name("weather")))


@pytest.mark.parametrize(
    ("name", "error"),
    [
        ("Weather", "'Weather' is not a plugin name"),
        ("who", "/who is a built-in command: choose another name"),
        ("weather", "trio-chat-weather already exists: not overwriting it"),
    ],
)
def test_the_command_refuses_in_one_line(tmp_path: Path, name: str, error: str) -> None:
    (tmp_path / "trio-chat-weather").mkdir()
    result = new_plugin(name, tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith("trio-chat: error: ") and error in line
    assert list(tmp_path.iterdir()) == [tmp_path / "trio-chat-weather"]  # nothing written


# -------------------------------------------------------- installed and tested, as created


def test_the_package_installs_and_passes_its_own_test(tmp_path: Path) -> None:
    """As a user would: ``pip install`` it (pip builds it with the setuptools backend in an
    isolated environment, fetched from the package index), then run its tests. Installed
    into a folder of the test's own (``--target``), never the developer's site-packages."""
    assert new_plugin("scaffold-demo", tmp_path).returncode == 0
    site = tmp_path / "site"
    install = subprocess.run(
        [
            *(sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-input"),
            *("--disable-pip-version-check", "--target", str(site), "./trio-chat-scaffold-demo"),
        ],
        cwd=tmp_path,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    assert (site / "trio_chat_scaffold_demo" / "__init__.py").is_file()

    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "trio-chat-scaffold-demo"],
        cwd=tmp_path,
        env=child_env(site),
        capture_output=True,
        text=True,
        timeout=60,
    )
    # All three pass, the entry point's too (it skips only when not installed).
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "3 passed" in tests.stdout and "skipped" not in tests.stdout, tests.stdout

    # The server finds it by its entry point, as every `trio-chat serve` would.
    listed = subprocess.run(
        [*CLI, "plugins"],
        cwd=tmp_path,
        env=child_env(site),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert listed.returncode == 0, listed.stderr
    assert "scaffold-demo 0.1.0: /scaffold-demo" in listed.stdout.splitlines()


def test_the_docs_show_what_the_command_prints(tmp_path: Path) -> None:
    docs = (Path(CHECKOUT) / "docs" / "plugins.md").read_text()
    section = docs.split("## Starting a package: `trio-chat new-plugin`", 1)[1].split("\n## ")[0]
    sessions = re.findall(r"```console\n\$ trio-chat new-plugin (\S+)\n(.*?)```", section, re.S)
    assert [name for name, _ in sessions] == ["weather", "who"]
    for name, shown in sessions:
        result = new_plugin(name, tmp_path)
        assert result.stdout + result.stderr == shown
