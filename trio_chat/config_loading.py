"""Loading the settings: defaults, a TOML file, the environment and command-line flags.

Later sources win: the :class:`~trio_chat.config.ServerConfig` defaults, then the file given
with ``--config FILE``, then ``TRIO_CHAT_<FIELD>`` environment variables, then the flags the
user actually typed. Everything here follows the dataclass's fields: their annotations
(``int``, ``float``, ``str``, ``bool``, ``Path``, ``list[str]``, and any of them ``| None``)
and what each declares with :func:`~trio_chat.config.setting` (help, check, flags), so a
setting added to ``config.py`` can be set from all four places with no change here.

The file is flat TOML, one top-level key per field; dashes may stand for underscores::

    # chat.toml
    host = "0.0.0.0"
    port = 12345
    ws-port = 8080              # "none" or "" turns WebSocket off
    server_name = "lobby"
    admins = ["root", "alice"]
    send_timeout = 10.0         # floats also take integers: send_timeout = 10
    entry_points = false

Values must have the field's TOML type (``port = "12345"`` is refused, not guessed at). TOML
has no null, so an optional field is unset with ``""``, or ``"none"`` when it is not a string
field. Unknown keys are errors, with a suggestion, so typos do not pass silently.
``trio-chat`` can print a file listing every setting: :func:`render_example_config`.

Environment variables are ``TRIO_CHAT_`` and the field name in capitals:
``TRIO_CHAT_PORT=12000``; ``TRIO_CHAT_ADMINS=root,alice`` (lists are comma-separated; empty
is an empty list); ``TRIO_CHAT_ENTRY_POINTS=false`` (true/false, yes/no, on/off, 1/0);
``TRIO_CHAT_WS_PORT=none`` or empty unsets an optional field (only empty, for optional
strings). Other ``TRIO_CHAT_*`` variables are left alone: plugins and tests use some.

Command-line flags are those each setting declares (:func:`add_setting_flags`): ``--port
12000``; ``--admin root --admin alice`` (a list's flag takes one item per use); ``--no-ws``
(a flag that sets one value). Their values get the setting's type and check, and their
``--help`` the setting's help and the default. The ``[plugin.NAME]`` tables of the file fill
``plugin_settings`` (a field declared with ``table=``), and nothing else does.

Every mistake is a :class:`ConfigError` whose message is one line naming the source and the
key, e.g. ``config file chat.toml: key 'port': expected an integer, got "abc"``.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import functools
import math
import os
import textwrap
import tomllib
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path, PurePath
from typing import Any

from .config import ServerConfig, Setting, config_problem, declaration

ENV_PREFIX = "TRIO_CHAT_"


class ConfigError(Exception):
    """A setting is unreadable, mistyped or out of range; the message is one line for the
    operator, naming where the setting came from."""


# ---------------------------------------------------------------------------- field types


@dataclasses.dataclass(frozen=True)
class FieldSpec:
    """How one ``ServerConfig`` field is read: its base type, whether it may be unset, and
    what it declares (help, check, flags)."""

    name: str
    base: type  # int, float, str, bool, Path, or list (of str)
    optional: bool
    setting: Setting

    @property
    def env_var(self) -> str:
        return ENV_PREFIX + self.name.upper()

    @property
    def textual(self) -> bool:
        """Strings and paths: ``"none"`` is a value like any other, only ``""`` unsets."""
        return self.base in (str, Path)

    def expected(self) -> str:
        what = _EXPECTED[self.base]
        return what if not self.optional or self.textual else f'{what} or "none"'


_EXPECTED: dict[type, str] = {
    int: "an integer",
    float: "a number",
    str: "a string",
    bool: "true or false",
    Path: "a path (string)",
    list: "a list of strings",
}
_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0"})


def _spec(name: str, hint: Any, setting: Setting) -> FieldSpec:
    optional = False
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        members = typing.get_args(hint)
        others = [m for m in members if m is not type(None)]
        if len(members) == 2 and len(others) == 1:
            optional, hint = True, others[0]
    if hint in _EXPECTED and hint is not list:
        return FieldSpec(name, hint, optional, setting)
    if typing.get_origin(hint) is list and typing.get_args(hint) == (str,):
        return FieldSpec(name, list, optional, setting)
    raise TypeError(
        f"ServerConfig.{name}: settings cannot read {hint!r} "
        "(supported: int, float, str, bool, Path, list[str], and each of them | None)"
    )


def field_specs() -> dict[str, FieldSpec]:
    """Every ``ServerConfig`` field with a key of its own, in declaration order."""
    return _specs_of(ServerConfig)


def table_fields() -> dict[str, str]:
    """The fields filled from ``[TABLE.NAME]`` tables, by table (``plugin``: plugin settings)."""
    return _tables_of(ServerConfig)


@functools.cache
def _specs_of(config_class: type) -> dict[str, FieldSpec]:
    # Looked up when called, not imported once, so that a test can add a field.
    hints = typing.get_type_hints(config_class)
    specs: dict[str, FieldSpec] = {}
    for f in dataclasses.fields(config_class):
        setting = declaration(f)
        if f.init and setting.table is None:
            specs[f.name] = _spec(f.name, hints[f.name], setting)
    return specs


@functools.cache
def _tables_of(config_class: type) -> dict[str, str]:
    return {
        table: f.name
        for f in dataclasses.fields(config_class)
        if (table := declaration(f).table) is not None
    }


class _Invalid(Exception):
    """A value of the wrong type or range; the message lacks the source."""


def _from_typed(spec: FieldSpec, value: object, show: Callable[[object], str]) -> object:
    """Check a value that already has a type (TOML, command-line flags)."""
    if spec.optional and (value is None or (isinstance(value, str) and _means_unset(spec, value))):
        return None
    base = spec.base
    result: object
    if base is bool:
        ok, result = isinstance(value, bool), value
    elif base is int:
        ok, result = isinstance(value, int) and not isinstance(value, bool), value
    elif base is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        result = float(typing.cast(float, value)) if ok else value
    elif base is str:
        ok, result = isinstance(value, str), value
    elif base is Path:
        ok = isinstance(value, str | os.PathLike)
        result = Path(typing.cast(str, value)) if ok else value
    else:  # list of str
        ok = isinstance(value, list | tuple) and all(isinstance(item, str) for item in value)
        result = list(typing.cast(list[str], value)) if ok else value
    if not ok:
        raise _Invalid(f"expected {spec.expected()}, got {show(value)}")
    return _checked(spec, result, show)


def _from_text(spec: FieldSpec, text: str) -> object:
    """Parse an environment variable's value."""
    if spec.optional and _means_unset(spec, text):
        return None
    return _checked(spec, _parse_text(spec, text, spec.expected()), repr)


def _parse_text(spec: FieldSpec, text: str, expected: str) -> object:
    """Text as a value of the field's base type, unchecked; ``expected`` says what fits."""
    base = spec.base
    value: object
    if base is str:
        value = text
    elif base is Path:
        value = Path(text)
    elif base is list:
        value = [item.strip() for item in text.split(",") if item.strip()]
    elif base is bool:
        word = text.strip().lower()
        if word not in _TRUE | _FALSE:
            raise _Invalid(f"expected true or false (or yes/no, on/off, 1/0), got {text!r}")
        value = word in _TRUE
    else:
        try:
            value = base(text.strip())
        except ValueError:
            raise _Invalid(f"expected {expected}, got {text!r}") from None
    return value


def _means_unset(spec: FieldSpec, text: str) -> bool:
    stripped = text.strip()
    return not stripped or (not spec.textual and stripped.lower() == "none")


def _checked(spec: FieldSpec, value: object, show: Callable[[object], str]) -> object:
    check = spec.setting.check
    if check is not None and value is not None:
        problem = check(value)
        if problem is not None:
            raise _Invalid(f"{problem}, got {show(value)}")
    return value


# ---------------------------------------------------------------------------- the sources


def load_config(
    *,
    config_file: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, object] | None = None,
    defaults: Mapping[str, object] | None = None,
) -> ServerConfig:
    """The configuration from defaults < ``config_file`` < ``environ`` < ``overrides``.

    ``environ`` is usually ``os.environ`` (nothing is read from it unless passed);
    ``overrides`` maps field names to values of the field's type, for the command-line flags
    the user gave (see :func:`overrides_from_args`). ``defaults`` replaces some of the
    dataclass defaults, below everything else (the CLI's own database path, say).
    Raises :class:`ConfigError`.
    """
    values: dict[str, Any] = check_overrides(defaults or {}, source="default")
    if config_file is not None:
        values.update(read_config_file(config_file))
    values.update(read_environ(environ or {}))
    values.update(check_overrides(overrides or {}))
    config = ServerConfig(**values)
    problem = config_problem(config)
    if problem is not None:
        raise ConfigError(problem)
    return config


def read_config_file(path: str | os.PathLike[str]) -> dict[str, object]:
    """The settings in a TOML file, checked, by field name."""
    source = f"config file {os.fspath(path)}"
    try:
        with open(path, "rb") as file:
            data = tomllib.load(file)
    except FileNotFoundError:
        raise ConfigError(f"{source}: not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{source}: is a directory, not a file") from None
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read it: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{source}: invalid TOML: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: invalid TOML: {exc}") from None
    return settings_from_mapping(data, source)


def settings_from_mapping(data: Mapping[str, object], source: str) -> dict[str, object]:
    """Check parsed TOML (``source`` names it in errors), accepting ``ws-port`` for ``ws_port``."""
    specs, tables = field_specs(), table_fields()
    values: dict[str, object] = {}
    spelled: dict[str, str] = {}
    for key, value in data.items():
        if key in tables:
            values[tables[key]] = _tables(key, value, source)
            continue
        name = key.replace("-", "_")
        spec = specs.get(name)
        if spec is None:
            raise ConfigError(f"{source}: {_unknown(key, value, specs)}")
        if name in spelled:
            raise ConfigError(f"{source}: key {key!r} is given twice (also as {spelled[name]!r})")
        spelled[name] = key
        try:
            values[name] = _from_typed(spec, value, toml_value)
        except _Invalid as exc:
            raise ConfigError(f"{source}: key {key!r}: {exc}") from None
    return values


def _tables(key: str, value: object, source: str) -> dict[str, dict[str, Any]]:
    """``[plugin.NAME]`` tables: each plugin's own settings, passed on as they are."""
    if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
        raise ConfigError(f"{source}: [{key}] holds one table per {key}, e.g. [{key}.roll]")
    return {str(name): dict(table) for name, table in value.items()}


def _unknown(key: str, value: object, specs: Mapping[str, FieldSpec]) -> str:
    if isinstance(value, dict):
        return f"unknown table [{key}] (settings go at the top level of the file)"
    close = difflib.get_close_matches(key.replace("-", "_"), list(specs), n=1)
    if not close:
        return f"unknown key {key!r}"
    suggestion = close[0].replace("_", "-") if "-" in key else close[0]
    return f"unknown key {key!r} (did you mean {suggestion!r}?)"


def read_environ(environ: Mapping[str, str]) -> dict[str, object]:
    """The settings given as ``TRIO_CHAT_<FIELD>`` variables, checked, by field name."""
    values: dict[str, object] = {}
    for name, spec in field_specs().items():
        text = environ.get(spec.env_var)
        if text is None:
            continue
        try:
            values[name] = _from_text(spec, text)
        except _Invalid as exc:
            raise ConfigError(f"environment {spec.env_var}: {exc}") from None
    return values


def check_overrides(
    overrides: Mapping[str, object], *, source: str = "command line"
) -> dict[str, object]:
    """Check values given by field name (from command-line flags): type and range."""
    specs = field_specs()
    values: dict[str, object] = {}
    for name, value in overrides.items():
        spec = specs.get(name)
        if spec is None:
            raise ConfigError(f"{source}: unknown setting {name!r}")
        try:
            values[name] = _from_typed(spec, value, repr)
        except _Invalid as exc:
            raise ConfigError(f"{source} setting {name!r}: {exc}") from None
    return values


def overrides_from_args(args: argparse.Namespace) -> dict[str, object]:
    """The attributes of ``args`` named like ``ServerConfig`` fields.

    Meant for a subparser made with ``argument_default=argparse.SUPPRESS``: a flag the user
    did not give leaves no attribute, so it cannot hide the file's or environment's value.
    """
    specs = field_specs()
    return {name: value for name, value in vars(args).items() if name in specs}


# ---------------------------------------------------------------------------- flags


def add_setting_flags(
    parser: argparse.ArgumentParser, defaults: Mapping[str, object] | None = None
) -> None:
    """Add every :class:`~trio_chat.config.Flag` the settings declare to ``parser``.

    A flag the user does not give leaves no attribute (``default=SUPPRESS``), so that it
    cannot hide the file's or the environment's value (see :func:`overrides_from_args`). Its
    ``--help`` is the setting's help and its default: ``defaults`` as in :func:`load_config`,
    so the help shows what the server would really use.
    """
    config = load_config(defaults=defaults)
    for name, spec in field_specs().items():
        for flag in spec.setting.flags:
            if not flag.takes_value:
                text = flag.help or plain_help(spec.setting.help)
                parser.add_argument(
                    flag.name,
                    dest=name,
                    action="store_const",
                    const=flag.sets,
                    default=argparse.SUPPRESS,
                    help=_escaped(text),
                )
                continue
            text = plain_help(spec.setting.help)
            if spec.base is list:
                text += "; repeatable"
            text += f" (default {shown_default(getattr(config, name))})"
            parser.add_argument(
                flag.name,
                dest=name,
                metavar=flag.metavar,
                type=flag_type(name),
                action="append" if spec.base is list else "store",
                default=argparse.SUPPRESS,
                help=_escaped(text),
            )


def flag_type(name: str) -> Callable[[str], object]:
    """The argparse ``type`` of setting ``name``'s value flags: its type and its check.

    A list setting's flag takes one item per use, checked with the whole list later. An
    optional setting's flag does not take ``none`` (``--no-ws`` and ``--no-db`` say it), but
    a string's ``""`` unsets it, as in the file and the environment.
    """
    spec = field_specs()[name]

    def parse(text: str) -> object:
        if spec.base is list:
            return text
        try:
            return _checked(spec, _parse_text(spec, text, _EXPECTED[spec.base]), repr)
        except _Invalid as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse.__name__ = name  # argparse names the type in some of its messages
    return parse


def plain_help(text: str) -> str:
    """A setting's help as ``--help`` shows it, in argparse's style: no backticks, ``None``
    as "none", a lowercase start (but "TCP", "WebSocket" as they are), no full stop."""
    text = text.replace("`None`", "none").replace("`", "").rstrip(".")
    first = text.split(" ", 1)[0]
    if first[1:].islower():
        text = text[0].lower() + text[1:]
    return text


def shown_default(value: object) -> str:
    """A default as ``--help`` shows it: ``5`` rather than ``5.0``, "none" for ``None``."""
    if value is None or value == []:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, list):
        return ", ".join(str(item) for item in value)
    return str(value)


def _escaped(text: str) -> str:
    return text.replace("%", "%%")  # argparse %-formats help texts


# ---------------------------------------------------------------------------- example file

#: Lines showing a table-filled setting in the example file, by table.
_TABLE_EXAMPLES = {"plugin": ("[plugin.roll]", "max_dice = 20")}


def render_example_config(defaults: Mapping[str, object] | None = None) -> str:
    """A TOML file setting every field to its default, each under its help as a comment.

    ``defaults`` are shown instead of the dataclass's, as in :func:`load_config`; loading
    the file gives the defaults back.
    """
    config = load_config(defaults=defaults)
    lines = [
        "# trio-chat server settings: trio-chat serve --config FILE",
        "#",
        "# Every key is optional; a missing key keeps its default (the value shown here).",
        "# TRIO_CHAT_<KEY> environment variables override this file, command-line flags",
        '# override both. Optional settings are unset with "" (or "none" for numbers).',
    ]
    for name, spec in field_specs().items():
        unset = '`""`' if spec.textual else '`"none"`'  # how TOML says None
        lines += ["", *_comment(spec.setting.help.replace("`None`", unset))]
        value = getattr(config, name)
        if value is None and not spec.textual:
            value = "none"
        lines.append(f"{name} = {toml_value(value)}")
    for table, name in table_fields().items():
        help_text = declaration(_field(name)).help
        example = _TABLE_EXAMPLES.get(table, (f"[{table}.NAME]", "key = value"))
        lines += ["", *_comment(help_text), *(f"# {line}" for line in example)]
    return "\n".join(lines) + "\n"


def _comment(text: str) -> list[str]:
    return [f"# {line}" for line in textwrap.wrap(text, width=88, break_on_hyphens=False)]


def _field(name: str) -> dataclasses.Field[Any]:
    return next(f for f in dataclasses.fields(ServerConfig) if f.name == name)


def toml_value(value: object) -> str:
    """``value`` written as TOML (also how values are shown in file errors)."""
    if value is None:
        return '""'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str | PurePath):
        return _toml_string(str(value))
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + "}"
    return str(value)  # dates and times


def _toml_string(text: str) -> str:
    out = ['"']
    for char in text:
        if char in '"\\':
            out.append("\\" + char)
        elif char < " " or char == "\x7f":
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


__all__ = [
    "ENV_PREFIX",
    "ConfigError",
    "FieldSpec",
    "add_setting_flags",
    "check_overrides",
    "field_specs",
    "flag_type",
    "load_config",
    "overrides_from_args",
    "read_config_file",
    "read_environ",
    "render_example_config",
    "settings_from_mapping",
    "table_fields",
]
