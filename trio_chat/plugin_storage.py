"""Plugins' own key-value storage: ``storage = server.storage("remind")``.

Why a store of their own: a plugin that must remember something across restarts (a
reminder, a counter, a feed's last id) would otherwise open a file or a database of its
own, next to the server's, with its own locking and its own failure modes. This keeps
each plugin's data in the server's database (table ``plugin_data``, one namespace per
plugin), written through the same single writer as the history, so it is backed up,
migrated and closed with everything else. Without a database (``--no-db``) it is a dict
in memory, with the same rules, for as long as the server object lives.

Values are JSON: whatever :func:`json.dumps` accepts is stored as text and each read
decodes a fresh copy, so changing what ``get`` returned never changes what is stored.
A value that is not JSON, too big, or a bad key is the plugin's own mistake and raises
:class:`TypeError` or :class:`ValueError` at once; a database that fails raises
:class:`StorageError` (a :class:`~trio_chat.errors.ChatError`, so a command handler that
lets it through tells its caller ``store_error``, not ``plugin_error``).
"""

from __future__ import annotations

import bisect
import json
import logging
from collections.abc import Callable
from typing import Any, Protocol

import trio

from .errors import ChatError
from .store import StoreError

log = logging.getLogger("trio_chat.plugins")

#: Longest key (characters) and namespace.
MAX_KEY_LENGTH = 256
MAX_NAMESPACE_LENGTH = 100
#: Largest value, as UTF-8 JSON text.
MAX_VALUE_BYTES = 64 * 1024
#: Most pairs one :meth:`PluginStorage.items` call returns.
MAX_ITEMS_LIMIT = 10_000


class StorageError(ChatError):
    """Plugin storage could not do what was asked (the database failed, or the server is
    not running). Code ``store_error``; the text is for the user a command answers."""

    def __init__(self, text: str = "plugin storage is unavailable right now") -> None:
        super().__init__("store_error", text)


class PluginData(Protocol):
    """Where namespaced JSON text is kept: the server's :class:`~trio_chat.store.Store`,
    or :class:`MemoryPluginData`."""

    async def plugin_get(self, namespace: str, key: str) -> str | None: ...

    async def plugin_put(self, namespace: str, key: str, value: str) -> None: ...

    async def plugin_delete(self, namespace: str, key: str) -> bool: ...

    async def plugin_items(
        self, namespace: str, prefix: str, after: str | None, limit: int
    ) -> list[tuple[str, str]]: ...


class MemoryPluginData:
    """Plugin data in a dict, for a server without a database: gone when the process ends."""

    def __init__(self) -> None:
        self._data: dict[str, dict[str, str]] = {}
        # Each namespace's keys, sorted: items() walks a prefix's range as SQLite would.
        self._keys: dict[str, list[str]] = {}

    async def plugin_get(self, namespace: str, key: str) -> str | None:
        await trio.lowlevel.checkpoint()
        return self._data.get(namespace, {}).get(key)

    async def plugin_put(self, namespace: str, key: str, value: str) -> None:
        await trio.lowlevel.checkpoint()
        values = self._data.setdefault(namespace, {})
        if key not in values:
            bisect.insort(self._keys.setdefault(namespace, []), key)
        values[key] = value

    async def plugin_delete(self, namespace: str, key: str) -> bool:
        await trio.lowlevel.checkpoint()
        values = self._data.get(namespace, {})
        if key not in values:
            return False
        del values[key]
        keys = self._keys[namespace]
        del keys[bisect.bisect_left(keys, key)]
        return True

    async def plugin_items(
        self, namespace: str, prefix: str, after: str | None, limit: int
    ) -> list[tuple[str, str]]:
        await trio.lowlevel.checkpoint()
        keys, values = self._keys.get(namespace, []), self._data.get(namespace, {})
        start = bisect.bisect_left(keys, prefix)
        if after is not None:
            start = max(start, bisect.bisect_right(keys, after))
        found: list[tuple[str, str]] = []
        for key in keys[start:]:
            if not key.startswith(prefix) or len(found) >= limit:
                break
            found.append((key, values[key]))
        return found


def _check_text(what: str, text: object, longest: int) -> str:
    if not isinstance(text, str):
        raise TypeError(f"a storage {what} is a str, not {type(text).__name__}")
    if len(text) > longest:
        raise ValueError(f"a storage {what} has at most {longest} characters, not {len(text)}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"a storage {what} must be valid Unicode (no lone surrogates)") from None
    return text


def encode_value(value: object) -> str:
    """``value`` as the JSON text stored; :class:`TypeError` or :class:`ValueError` if it
    cannot be (not JSON, NaN or infinity, too big)."""
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"a storage value must be JSON: {exc}") from None
    except RecursionError:
        raise ValueError("a storage value must be JSON: it is nested too deeply") from None
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise ValueError("a storage value must be valid Unicode (no lone surrogates)") from None
    if size > MAX_VALUE_BYTES:
        raise ValueError(f"a storage value has at most {MAX_VALUE_BYTES} bytes of JSON, not {size}")
    return text


class PluginStorage:
    """One plugin's namespace of JSON values by string key. Get it with
    ``server.storage(namespace)``; every method is ``async`` (the database is read and
    written in a thread, never blocking the server).

    ``set`` returns once the value is committed: a value set survives a crash or restart
    from then on (with a database). Keys of one namespace never meet another's.
    """

    __slots__ = ("_backend", "namespace")

    def __init__(self, namespace: str, backend: Callable[[], PluginData | None]) -> None:
        _check_text("namespace", namespace, MAX_NAMESPACE_LENGTH)
        if not namespace:
            raise ValueError("a storage namespace cannot be empty")
        #: The name given to ``server.storage``: conventionally the plugin's name.
        self.namespace = namespace
        self._backend = backend

    def __repr__(self) -> str:
        return f"<PluginStorage {self.namespace!r}>"

    def _data(self) -> PluginData:
        data = self._backend()
        if data is None:
            raise StorageError("plugin storage is open only while the server runs")
        return data

    async def get(self, key: str, default: Any = None) -> Any:
        """The value stored under ``key`` (a fresh copy), or ``default`` if there is none."""
        key = _check_text("key", key, MAX_KEY_LENGTH)
        try:
            text = await self._data().plugin_get(self.namespace, key)
        except StoreError as exc:
            raise self._failed("read", exc) from None
        return default if text is None else json.loads(text)

    async def set(self, key: str, value: Any) -> None:
        """Store ``value`` (anything :func:`json.dumps` takes, at most 64 KiB of JSON) under
        ``key`` (a string of at most 256 characters), replacing what was there."""
        key = _check_text("key", key, MAX_KEY_LENGTH)
        text = encode_value(value)
        try:
            await self._data().plugin_put(self.namespace, key, text)
        except StoreError as exc:
            raise self._failed("write", exc) from None

    async def delete(self, key: str) -> bool:
        """Forget ``key``; whether it was there."""
        key = _check_text("key", key, MAX_KEY_LENGTH)
        try:
            return await self._data().plugin_delete(self.namespace, key)
        except StoreError as exc:
            raise self._failed("write", exc) from None

    async def items(
        self, prefix: str = "", *, after: str | None = None, limit: int = 1000
    ) -> list[tuple[str, Any]]:
        """Up to ``limit`` ``(key, value)`` pairs whose key starts with ``prefix``, in key
        order (by code point: ``"a" < "b" < "ba"``); with ``after``, only keys that sort
        after it (page on with the last key of the page before). Give keys that sort the
        way you want to walk them (``f"due:{when:015d}:{id}"``)."""
        prefix = _check_text("prefix", prefix, MAX_KEY_LENGTH)
        if after is not None:
            after = _check_text("key", after, MAX_KEY_LENGTH)
        if not 1 <= limit <= MAX_ITEMS_LIMIT:
            raise ValueError(f"limit is between 1 and {MAX_ITEMS_LIMIT}, not {limit}")
        try:
            pairs = await self._data().plugin_items(self.namespace, prefix, after, limit)
        except StoreError as exc:
            raise self._failed("read", exc) from None
        return [(key, json.loads(text)) for key, text in pairs]

    async def keys(
        self, prefix: str = "", *, after: str | None = None, limit: int = 1000
    ) -> list[str]:
        """The keys :meth:`items` would give."""
        return [key for key, _ in await self.items(prefix, after=after, limit=limit)]

    def _failed(self, what: str, exc: StoreError) -> StorageError:
        log.error("plugin storage %r: %s failed: %s", self.namespace, what, exc)
        return StorageError()
