"""Finding and loading plugins: built-ins, installed entry points, modules and files.

Built-ins go in through the same door as third-party plugins (as in pytest and llm): each is
a module registered on one :class:`pluggy.PluginManager` that the server owns. There is no
global plugin manager, so every test and every server builds its own.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import sys
from collections.abc import Iterable
from pathlib import Path

import pluggy

from . import hookspecs

log = logging.getLogger("trio_chat.plugins")

#: The entry-point group an installed plugin declares in its pyproject.toml.
ENTRY_POINT_GROUP = "trio_chat"

#: Modules that hold the built-in commands, registered first, like any plugin.
DEFAULT_PLUGINS = (
    "trio_chat.builtins.core",
    "trio_chat.builtins.rooms",
    "trio_chat.builtins.moderation",
    "trio_chat.builtins.accounts",
)


class PluginLoadError(Exception):
    """A plugin named on the command line could not be imported or registered."""


def new_plugin_manager() -> pluggy.PluginManager:
    """A plugin manager that knows trio-chat's hooks and nothing else yet."""
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    return pm


def import_plugin(spec: str) -> object:
    """Import a plugin given as ``package.module``, ``package.module:attribute`` (an object
    with hook implementations, as entry points allow) or a path to a ``.py`` file."""
    if ":" in spec and not spec.endswith(".py"):
        module_name, _, attribute = spec.partition(":")
        module = import_plugin(module_name)
        try:
            return getattr(module, attribute)
        except AttributeError:
            raise PluginLoadError(
                f"plugin {module_name!r} has no attribute {attribute!r}"
            ) from None
    path = Path(spec)
    if spec.endswith(".py") or path.is_file():
        if not path.is_file():
            raise PluginLoadError(f"plugin file not found: {spec}")
        name = f"trio_chat_plugin_{path.stem}"
        module_spec = importlib.util.spec_from_file_location(name, path)
        if module_spec is None or module_spec.loader is None:
            raise PluginLoadError(f"cannot load plugin file {spec}")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module
        try:
            module_spec.loader.exec_module(module)
        except Exception as exc:
            del sys.modules[name]
            raise PluginLoadError(f"plugin {spec} failed to import: {exc!r}") from exc
        return module
    try:
        return importlib.import_module(spec)
    except ImportError as exc:
        raise PluginLoadError(f"cannot import plugin {spec!r}: {exc}") from exc
    except Exception as exc:
        raise PluginLoadError(f"plugin {spec!r} failed to import: {exc!r}") from exc


def collect_plugins(
    extra: Iterable[str] = (), *, builtins: bool = True
) -> list[tuple[object, str]]:
    """The ``(plugin, name)`` pairs to register for ``extra`` modules/files and the built-ins."""
    plugins: list[tuple[object, str]] = []
    if builtins:
        for name in DEFAULT_PLUGINS:
            plugins.append((importlib.import_module(name), name))
    for spec in extra:
        plugin = import_plugin(spec)
        plugins.append((plugin, getattr(plugin, "__name__", spec)))
    return plugins


def plugin_version(pm: pluggy.PluginManager, plugin: object) -> str:
    """The distribution version of an entry-point plugin, else the trio-chat version."""
    for p, dist in pm.list_plugin_distinfo():
        if p is plugin:
            return str(dist.version)
    from . import __version__

    return __version__
