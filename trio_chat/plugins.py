"""Finding and loading plugins: built-ins, installed entry points, modules and files.

Built-ins go in through the same door as third-party plugins (as in pytest and llm): each is
a module registered on one :class:`ChatPluginManager` that the server owns. There is no
global plugin manager, so every test and every server builds its own.

Every hook is called through pluggy's own caller (``pm.hook.NAME(...)``), so ``tryfirst``,
``wrapper=True`` and ``historic`` work as pluggy documents them. What the manager adds is
how one plugin's failure is kept from the others (see :class:`ChatPluginManager`).
"""

from __future__ import annotations

import contextvars
import copy
import importlib
import importlib.util
import inspect
import logging
import sys
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pluggy
import trio

from . import hookspecs
from ._version import __version__
from .errors import ChatError

log = logging.getLogger("trio_chat.plugins")

#: The entry-point group an installed plugin declares in its pyproject.toml.
ENTRY_POINT_GROUP = "trio_chat"

#: Modules that hold the built-in commands, registered first, like any plugin.
DEFAULT_PLUGINS = (
    "trio_chat.builtins.core",
    "trio_chat.builtins.rooms",
    "trio_chat.builtins.moderation",
    "trio_chat.builtins.accounts",
    "trio_chat.builtins.changes",
    "trio_chat.builtins.find",
    "trio_chat.builtins.presence",
)


class PluginLoadError(Exception):
    """A plugin named on the command line could not be imported or registered."""


#: The hooks whose implementations are contained one by one: an exception is logged with
#: the plugin's name and counts as ``None``, and the other implementations still run.
CONTAINED_HOOKS = frozenset(
    {
        "register_commands",
        "server_started",
        "user_joined",
        "user_left",
        "start_jobs",
        "register_routes",
        "message_posted",
        "bot_messaged",
    }
)

#: Contained hooks that must be synchronous: what an ``async def`` implementation would do
#: could never be awaited (``register_commands`` is called while the plugin is registered,
#: before anything could run it), so its awaitable is closed and the plugin named in the log.
#: ``start_jobs`` only starts things; an ``async def`` one would run outside the plugin's
#: name (its jobs unattributed) and be cut off by the plugin timeout. ``register_routes``
#: is called as ``register_commands`` is.
SYNC_HOOKS = frozenset({"register_commands", "start_jobs", "register_routes"})

#: What the sender of a message is told when a filter failed (the log says how).
FILTER_FAILED = "message refused by a filter (internal error)"

#: The name of the plugin whose hook implementation is running (``""`` outside one): lets
#: the ``register`` callable of ``register_commands`` know who adds a command.
_calling_plugin: contextvars.ContextVar[str] = contextvars.ContextVar(
    "trio_chat_calling_plugin", default=""
)


def calling_plugin() -> str:
    """The name of the plugin whose hook implementation is running now (``""`` if none)."""
    return _calling_plugin.get()


class ChatPluginManager(pluggy.PluginManager):
    """pluggy's manager, with each plugin's errors kept from the other plugins.

    pluggy runs a hook's implementations in one loop and stops at the first exception (it
    is thrown into the wrappers, then out of ``pm.hook.NAME(...)``). A wrapper of ours
    cannot resume the loop, and catching around the call would silence every plugin after
    the broken one. So, as pytest subclasses the manager for its own rules, this one hands
    pluggy's loop a contained copy of each plain implementation (never of a
    ``wrapper=True`` one, whose generator pluggy drives itself):

    * for the :data:`CONTAINED_HOOKS`, an exception is logged with the plugin's name and
      the implementation counts as having returned ``None``; an awaitable result comes back
      as a guarded coroutine that logs its own failure, bounded by :attr:`timeout`, for the
      caller to run in the background (:func:`run_soon`);
    * for ``filter_message``, each filter is called with the text the previous one
      returned (the chain the hook promises); an exception is not contained: it refuses the
      message, so a broken filter fails closed.

    An exception from a wrapper still leaves ``pm.hook.NAME(...)``: callers of the event
    hooks catch and log it (see ``ChatServer.call_hook``).
    """

    def __init__(self, project_name: str = hookspecs.PROJECT_NAME) -> None:
        super().__init__(project_name)
        #: Longest an awaitable result of an event hook may take (the plugin timeout).
        self.timeout = 10.0
        # The copy made of each implementation, made once (a copy per call would cost
        # microseconds on every message); dropped when its plugin is unregistered.
        self._twins: dict[pluggy.HookImpl, pluggy.HookImpl] = {}
        # The text of each filter_message call in progress (a stack: a filter may cause a
        # message of its own), where each filter reads the text the one before left.
        self._texts: list[str] = []

    def _hookexec(
        self,
        hook_name: str,
        methods: Sequence[pluggy.HookImpl],
        kwargs: Mapping[str, object],
        firstresult: bool,
    ) -> object | list[object]:
        # The one place every call of every hook passes (HookCaller.__call__, call_historic,
        # the history replayed to a plugin registered later): a pluggy internal, overridden
        # because it is the only point that sees each implementation before it runs.
        if hook_name == "filter_message":
            if not methods:
                return []
            methods = [self._twin(hook_name, impl) for impl in methods]
            self._texts.append(str(kwargs["text"]))
            try:
                return super()._hookexec(hook_name, methods, kwargs, firstresult)
            finally:
                self._texts.pop()
        if hook_name in CONTAINED_HOOKS:
            methods = [self._twin(hook_name, impl) for impl in methods]
        return super()._hookexec(hook_name, methods, kwargs, firstresult)

    def unregister(self, plugin: object | None = None, name: str | None = None) -> Any:
        removed = super().unregister(plugin, name)
        self._twins = {
            impl: twin for impl, twin in self._twins.items() if impl.plugin is not removed
        }
        return removed

    def _twin(self, hook_name: str, impl: pluggy.HookImpl) -> pluggy.HookImpl:
        """``impl`` as this manager calls it: a wrapper as it is, else contained (event
        hooks) or chained (filters)."""
        if impl.wrapper or impl.hookwrapper:
            return impl
        twin = self._twins.get(impl)
        if twin is None:
            if hook_name == "filter_message":
                twin = _with_function(impl, self._chained(impl))
            else:
                twin = _with_function(impl, self._contained(hook_name, impl))
            self._twins[impl] = twin
        return twin

    def _contained(self, hook_name: str, impl: pluggy.HookImpl) -> Callable[..., object]:
        function, plugin = impl.function, impl.plugin_name

        def contained(*args: object) -> object:
            token = _calling_plugin.set(plugin)
            try:
                result = function(*args)
            except (Exception, SystemExit):  # a plugin's sys.exit() ends no server
                log.exception("plugin %r: %s raised", plugin, hook_name)
                return None
            finally:
                _calling_plugin.reset(token)
            if inspect.isawaitable(result):
                if hook_name in SYNC_HOOKS:
                    _discard(result)
                    log.error(
                        "plugin %r: %s must not be async (nothing it does is done)",
                        plugin,
                        hook_name,
                    )
                    return None
                return _guarded(result, plugin, hook_name, self.timeout)
            return result

        return contained

    def _chained(self, impl: pluggy.HookImpl) -> Callable[..., object]:
        """A filter called with the text the filter before it left (pluggy would give every
        filter the caller's original text), leaving its own for the next."""
        function, texts = impl.function, self._texts
        at = impl.argnames.index("text") if "text" in impl.argnames else None

        def chained(*args: object) -> object:
            if at is not None:
                args = (*args[:at], texts[-1], *args[at + 1 :])
            try:
                result = function(*args)
            except ChatError:  # a refusal the filter means (CommandError is one)
                raise
            except (Exception, SystemExit):  # a bug: refuses too, logged with whose it is
                log.exception("plugin %r: filter_message raised", impl.plugin_name)
                raise ChatError("plugin_error", FILTER_FAILED) from None
            if result is not None:
                if inspect.isawaitable(result):
                    _discard(result)
                    log.error(
                        "plugin %r: filter_message must be synchronous, not async",
                        impl.plugin_name,
                    )
                    raise ChatError("plugin_error", FILTER_FAILED)
                if not isinstance(result, str):
                    log.error(
                        "plugin %r: filter_message returned %s, not a string or None",
                        impl.plugin_name,
                        type(result).__name__,
                    )
                    raise ChatError("plugin_error", FILTER_FAILED)
                texts[-1] = result
            return result

        return chained


def _with_function(impl: pluggy.HookImpl, function: Callable[..., object]) -> pluggy.HookImpl:
    """A copy of ``impl`` that calls ``function`` with the same arguments."""
    twin = copy.copy(impl)
    # ``function`` is Final for pluggy's users; this copy is ours, made before its first use.
    object.__setattr__(twin, "function", function)
    return twin


def _discard(awaitable: Awaitable[Any]) -> None:
    """Close an awaitable that will never be awaited, so Python does not warn of it later,
    far from the plugin that made it."""
    if inspect.iscoroutine(awaitable):
        awaitable.close()


async def _guarded(result: Awaitable[Any], plugin: str, hook_name: str, limit: float) -> None:
    """Await an async hook implementation's result: within ``limit`` seconds, its failure
    logged."""
    try:
        with trio.move_on_after(limit) as scope:
            await result
        if scope.cancelled_caught:
            log.error("plugin %r: %s took longer than %ss", plugin, hook_name, limit)
    except (Exception, SystemExit):
        log.exception("plugin %r: %s raised", plugin, hook_name)


def run_soon(results: object, nursery: trio.Nursery | None, hook_name: str) -> None:
    """Start the awaitable results of an event hook in ``nursery`` (the background).

    The one helper for ``async def`` implementations (datasette's ``await_me_maybe``, made
    to not wait): each is already guarded by :class:`ChatPluginManager`. Outside a running
    server there is nowhere to run them; they are closed and logged.
    """
    for result in results if isinstance(results, list) else ():
        if not inspect.isawaitable(result):
            continue
        if nursery is None:
            log.error("%s: an async implementation was called outside a running server", hook_name)
            if inspect.iscoroutine(result):
                result.close()
            continue
        nursery.start_soon(_await, result)


async def _await(awaitable: Awaitable[Any]) -> None:
    await awaitable


def new_plugin_manager() -> ChatPluginManager:
    """A plugin manager that knows trio-chat's hooks and nothing else yet."""
    pm = ChatPluginManager(hookspecs.PROJECT_NAME)
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
    return __version__
