"""``trio-chat new-plugin NAME``: a new plugin as an installable package that passes its test.

What it writes is the shape of the example plugins in ``plugins/`` (``trio-chat-roll``): a
``pyproject.toml`` with the entry point in the ``trio_chat`` group (so ``pip install`` is all
it takes for every ``trio-chat serve`` to load it), a module with one command, a test over
real sockets with :mod:`trio_chat.testing`, and a README saying how to use each. A new
author starts from something that works and is tested, and changes it one step at a time.

``NAME`` is used four ways: the folder and distribution ``trio-chat-NAME``, the module
``trio_chat_NAME`` (dashes made underscores), the entry point's name and the command
``/NAME``. So it must be all of those at once, and not a built-in command (the plugin's
command would be refused at load time, and its own test would fail as created).

Pure functions (:func:`check_name`, :func:`plugin_files`) plus one that writes
(:func:`write_plugin`); the CLI adds nothing but the one-line errors.
"""

from __future__ import annotations

import importlib
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from string import Template

from .api import COMMAND_NAME, CommandRegistry
from .plugins import DEFAULT_PLUGINS, new_plugin_manager

#: A name that is a command name, a distribution name and (dashes made underscores) a
#: Python identifier: lower case ASCII letters and digits in words joined by ``-`` or ``_``.
PLUGIN_NAME = re.compile(r"[a-z][a-z0-9]*(?:[-_][a-z0-9]+)*")

#: What a scaffolded package is called, before its name.
PREFIX = "trio-chat-"


class ScaffoldError(Exception):
    """A plugin cannot be written: the message is one line for the user."""


@dataclass(frozen=True, slots=True)
class PluginNames:
    """The spellings of one plugin name, each where it belongs."""

    name: str

    @property
    def command(self) -> str:
        """The command (``/NAME``) and the entry point's name."""
        return self.name

    @property
    def distribution(self) -> str:
        """The pip name and the folder: ``trio-chat-NAME``."""
        return PREFIX + self.name

    @property
    def module(self) -> str:
        """The importable module: ``trio_chat_NAME`` with underscores."""
        return self.distribution.replace("-", "_")

    @property
    def function(self) -> str:
        """The command's handler in the module."""
        return self.name.replace("-", "_") + "_command"


def builtin_commands() -> frozenset[str]:
    """The names of the built-in commands (``help``, ``join``, ...), which a plugin's command
    may not take: registered the way the server registers them, so this list cannot go
    stale."""
    registry = CommandRegistry()
    pm = new_plugin_manager()
    pm.hook.register_commands.call_historic(kwargs={"register": registry.register})
    for module in DEFAULT_PLUGINS:
        pm.register(importlib.import_module(module), module)
    return frozenset(spec.name for spec in registry)


def check_name(name: str) -> PluginNames:
    """``name``'s spellings, or :class:`ScaffoldError` saying in one line what is wrong."""
    if name.lower().startswith(PREFIX) and len(name) > len(PREFIX):
        short = name[len(PREFIX) :]
        raise ScaffoldError(
            f"give the name without {PREFIX!r}: trio-chat new-plugin {short} "
            f"writes ./{PREFIX}{short}/"
        )
    if not PLUGIN_NAME.fullmatch(name) or not COMMAND_NAME.fullmatch(name):
        raise ScaffoldError(
            f"{name!r} is not a plugin name: lower case letters and digits in words joined "
            "by - or _, starting with a letter, at most 32 characters (it names the command "
            "too; e.g. weather, dice-roll)"
        )
    if name in builtin_commands():
        raise ScaffoldError(f"/{name} is a built-in command: choose another name")
    return PluginNames(name)


def plugin_files(names: PluginNames) -> dict[str, str]:
    """Every file of the package, by path relative to its folder, with its text."""
    values = {
        "command": names.command,
        "distribution": names.distribution,
        "module": names.module,
        "function": names.function,
    }
    return {
        Template(path).substitute(values): Template(text).substitute(values)
        for path, text in _TEMPLATES.items()
    }


def write_plugin(name: str, parent: Path) -> Path:
    """Write the package for plugin ``name`` into ``parent/trio-chat-NAME/`` and return that
    folder. Refuses (:class:`ScaffoldError`) a bad name or a folder that already exists:
    nothing of a user's is ever overwritten."""
    names = check_name(name)
    folder = parent / names.distribution
    try:
        # mkdir, not a check before writing: of two runs at once, one gets the folder.
        folder.mkdir()
    except FileExistsError:
        raise ScaffoldError(f"{folder} already exists: not overwriting it") from None
    except OSError as exc:
        raise ScaffoldError(f"cannot create {folder}: {exc.strerror or exc}") from None
    try:
        for path, text in plugin_files(names).items():
            target = folder / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
    except OSError as exc:
        # The folder is ours (made above): take back the half-written package.
        shutil.rmtree(folder, ignore_errors=True)
        raise ScaffoldError(f"cannot write {folder}: {exc.strerror or exc}") from None
    return folder


# The templates: ``$command``, ``$distribution``, ``$module`` and ``$function`` are filled
# in (``string.Template``: the generated code's own braces need no escaping). The setuptools
# build backend, as the example plugins use: pip fetches it for the build by itself.
_TEMPLATES = {
    "pyproject.toml": """\
[build-system]
requires = ["setuptools>=64"]
build-backend = "setuptools.build_meta"

[project]
name = "$distribution"
version = "0.1.0"
description = "A trio-chat plugin: /$command"
readme = "README.md"
requires-python = ">=3.11"
classifiers = ["Framework :: Trio", "Topic :: Communications :: Chat"]
dependencies = ["trio-chat"]

[project.optional-dependencies]
test = ["pytest>=8", "pytest-trio>=0.8"]

# What makes every `trio-chat serve` load the plugin once it is pip-installed.
[project.entry-points.trio_chat]
$command = "$module"

[tool.setuptools]
packages = ["$module"]

[tool.setuptools.package-data]
$module = ["py.typed"]

[tool.pytest.ini_options]
trio_mode = true
testpaths = ["tests"]
""",
    "$module/__init__.py": '''\
"""``/$command TEXT``: a trio-chat plugin (made by ``trio-chat new-plugin $command``).

Change the command into what your plugin does. trio-chat's docs/plugins.md is the guide: what
a handler's ``ctx`` offers, the other hooks (message filters, joins and leaves), settings,
and how errors are contained.
"""

from __future__ import annotations

from trio_chat import CommandContext, hookimpl
from trio_chat.commands import RegisterCommand


@hookimpl
def register_commands(register: RegisterCommand) -> None:
    register("$command", $function, help="Answers you with what you said", usage="TEXT")


def $function(ctx: CommandContext) -> str:
    """Answer the caller alone: a returned string is sent to them (``ctx.say`` would speak
    to the room instead)."""
    if not ctx.args:
        raise ctx.usage_error()
    return f"$command heard: {ctx.args}"
''',
    "$module/py.typed": "",
    "tests/conftest.py": '''\
"""Test this checkout of the plugin, whether or not it is installed: its folder goes first
on the path, so an older installed copy is never the one under test."""

from __future__ import annotations

import sys
from pathlib import Path

_SOURCE = str(Path(__file__).resolve().parents[1])
if _SOURCE not in sys.path:
    sys.path.insert(0, _SOURCE)
''',
    "tests/test_$module.py": '''\
"""/$command over real sockets: trio_chat.testing starts a server in the test and connects
clients to it (pytest-trio runs the async tests)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, distribution

import pytest
import $module

from trio_chat.testing import open_client, open_test_server


async def test_the_command_answers_the_caller_alone() -> None:
    async with (
        open_test_server($module) as chat,
        open_client(chat, "alice") as alice,
        open_client(chat, "bob") as bob,
    ):
        await alice.command("/$command hello")
        assert (await alice.expect("info")).text == "$command heard: hello"
        # Alice's next line reaches bob after anything the command could have sent him.
        await alice.say("done")
        assert (await bob.expect("message")).text == "done"
        assert not [event for event in bob.history if event.TYPE == "info"]


async def test_without_text_the_caller_gets_the_usage() -> None:
    async with open_test_server($module) as chat, open_client(chat, "alice") as alice:
        await alice.command("/$command")
        error = await alice.expect("error")
        assert (error.code, error.text) == ("bad_arguments", "usage: /$command TEXT")


def test_the_entry_point_loads_this_module() -> None:
    try:
        installed = distribution("$distribution")
    except PackageNotFoundError:
        pytest.skip("not installed: pip install . to check the entry point")
    found = [ep for ep in installed.entry_points if ep.group == "trio_chat"]
    assert [(ep.name, ep.value) for ep in found] == [("$command", "$module")]
''',
    "README.md": """\
# $distribution

A [trio-chat](https://github.com/trio-chat/trio-chat) plugin: `/$command TEXT` answers you
with what you said. Made with `trio-chat new-plugin $command`; change it into your own.

Install it beside trio-chat, and every `trio-chat serve` loads it through its entry point
(`trio-chat plugins` lists it):

    pip install ./$distribution

(`pip install -e ./$distribution` instead, while you work on it: the server then loads
this folder's code.) Test it, from the folder that holds it (pytest and pytest-trio come
with the `test` extra):

    pip install './$distribution[test]'
    python -m pytest $distribution

The files: `pyproject.toml` (the package and its `trio_chat` entry point), `$module/`
(the plugin), `tests/` (its tests, over real sockets with `trio_chat.testing`).
""",
}
