"""Settings from defaults < TOML file < TRIO_CHAT_* environment < command-line flags."""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from trio_chat import config_loading
from trio_chat.cli import build_parser, default_db_path, program_defaults
from trio_chat.config import (
    Flag,
    ServerConfig,
    Setting,
    declaration,
    non_negative,
    resolve_workers,
    setting,
)
from trio_chat.config_loading import (
    ConfigError,
    field_specs,
    load_config,
    overrides_from_args,
    render_example_config,
)


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Work in ``tmp_path`` so files can be named as a user would: ``chat.toml``."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write(path: Path, text: str) -> str:
    path.write_text(text, encoding="utf-8")
    return path.name


def error_of(**kwargs: object) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(**kwargs)  # type: ignore[arg-type]
    message = str(info.value)
    assert "\n" not in message, message
    return message


# ------------------------------------------------------------------------------ precedence


def test_nothing_given_is_the_defaults() -> None:
    assert load_config() == ServerConfig()
    assert load_config(config_file=None, environ={}, overrides={}) == ServerConfig()


def test_precedence_default_file_env_flag(in_tmp: Path) -> None:
    name = write(
        in_tmp / "chat.toml",
        'host = "0.0.0.0"\nport = 1000\nws_port = 2000\nserver_name = "from-file"\n',
    )
    config = load_config(
        config_file=name,
        environ={"TRIO_CHAT_PORT": "3000", "TRIO_CHAT_SERVER_NAME": "from-env"},
        overrides={"port": 4000},
    )
    assert config.port == 4000  # flag beats environment and file
    assert config.server_name == "from-env"  # environment beats file
    assert config.host == "0.0.0.0"  # file beats default
    assert config.ws_port == 2000
    assert config.send_timeout == ServerConfig().send_timeout  # default


def test_a_flag_can_unset_what_the_file_set(in_tmp: Path) -> None:
    name = write(in_tmp / "chat.toml", "ws_port = 2000\n")
    assert load_config(config_file=name, overrides={"ws_port": None}).ws_port is None


def test_only_flags_the_user_gave_override() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    serve = sub.add_parser("serve", argument_default=argparse.SUPPRESS)
    serve.add_argument("--config", default=None)
    serve.add_argument("--port", type=int)
    serve.add_argument("--ws-port", type=int)
    serve.add_argument("--no-ws", action="store_const", const=None, dest="ws_port")
    serve.add_argument("--name", dest="server_name")
    serve.add_argument("--admin", action="append", dest="admins")
    serve.add_argument("--no-entry-points", action="store_false", dest="entry_points")
    serve.add_argument("--log-level", default="info")

    assert overrides_from_args(parser.parse_args(["serve"])) == {}
    given = overrides_from_args(
        parser.parse_args(
            ["serve", "--port", "5", "--no-ws", "--admin", "a", "--admin", "b", "--no-entry-points"]
        )
    )
    assert given == {"port": 5, "ws_port": None, "admins": ["a", "b"], "entry_points": False}
    config = load_config(environ={"TRIO_CHAT_SERVER_NAME": "env"}, overrides=given)
    assert (config.port, config.ws_port, config.admins) == (5, None, ["a", "b"])
    assert config.server_name == "env" and config.entry_points is False


# ------------------------------------------------------------------------ values and types


def test_lists_and_optionals_from_the_environment() -> None:
    config = load_config(
        environ={
            "TRIO_CHAT_ADMINS": " root, alice ,,",
            "TRIO_CHAT_PLUGINS": "",
            "TRIO_CHAT_WS_PORT": "none",
            "TRIO_CHAT_TLS_CERT": "",
            "TRIO_CHAT_TLS_KEY": "none",  # a string field: "none" is a file name like any
            "TRIO_CHAT_ENTRY_POINTS": "Off",
            "TRIO_CHAT_SEND_TIMEOUT": "2.5",
            "TRIO_CHAT_ADMIN_PASSWORD": "s3cret",
        }
    )
    assert config.admins == ["root", "alice"]
    assert config.plugins == []
    assert config.ws_port is None
    assert config.tls_cert is None
    assert config.tls_key == "none"
    assert config.entry_points is False
    assert config.send_timeout == 2.5
    assert config.admin_password == "s3cret"


@pytest.mark.parametrize("text", ["", "  ", "none", "NONE"])
def test_optional_int_unset_from_the_environment(text: str) -> None:
    assert load_config(environ={"TRIO_CHAT_WS_PORT": text}).ws_port is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [("true", True), ("1", True), ("YES", True), ("on", True), ("false", False), ("0", False)],
)
def test_booleans_from_the_environment(text: str, expected: bool) -> None:
    assert load_config(environ={"TRIO_CHAT_ENTRY_POINTS": text}).entry_points is expected


def test_lists_and_optionals_from_the_file(in_tmp: Path) -> None:
    name = write(
        in_tmp / "chat.toml",
        'admins = ["root", "alice"]\nws_port = "none"\ntls_cert = ""\n'
        "send_timeout = 10\nentry_points = false\n",
    )
    config = load_config(config_file=name)
    assert config.admins == ["root", "alice"]
    assert config.ws_port is None
    assert config.tls_cert is None
    assert config.send_timeout == 10.0 and isinstance(config.send_timeout, float)
    assert config.entry_points is False


def test_dashed_keys_are_field_names(in_tmp: Path) -> None:
    name = write(in_tmp / "chat.toml", 'ws-port = 0\nserver-name = "x"\n')
    config = load_config(config_file=name)
    assert (config.ws_port, config.server_name) == (0, "x")


def test_environment_variables_of_others_are_ignored() -> None:
    environ = {"TRIO_CHAT_WORDFILTER_WORDS": "darn", "TRIO_CHAT_REQUIRE_BROWSER": "1"}
    assert load_config(environ=environ) == ServerConfig()


def test_lists_are_not_shared_with_the_caller() -> None:
    admins = ["root"]
    config = load_config(overrides={"admins": admins})
    admins.append("mallory")
    assert config.admins == ["root"]
    assert load_config().admins is not load_config().admins


# ----------------------------------------------------------------------------------- errors


def test_file_value_of_the_wrong_type(in_tmp: Path) -> None:
    name = write(in_tmp / "chat.toml", 'port = "abc"\n')
    assert error_of(config_file=name) == (
        "config file chat.toml: key 'port': expected an integer, got \"abc\""
    )


def test_environment_value_of_the_wrong_type() -> None:
    assert error_of(environ={"TRIO_CHAT_PORT": "abc"}) == (
        "environment TRIO_CHAT_PORT: expected an integer, got 'abc'"
    )


def test_unknown_key_with_a_suggestion(in_tmp: Path) -> None:
    name = write(in_tmp / "chat.toml", "prot = 1\n")
    assert error_of(config_file=name) == (
        "config file chat.toml: unknown key 'prot' (did you mean 'port'?)"
    )
    name = write(in_tmp / "chat.toml", "ws-prot = 1\n")
    assert error_of(config_file=name) == (
        "config file chat.toml: unknown key 'ws-prot' (did you mean 'ws-port'?)"
    )
    name = write(in_tmp / "chat.toml", "zzzzzz = 1\n")
    assert error_of(config_file=name) == "config file chat.toml: unknown key 'zzzzzz'"


def test_tables_are_not_where_settings_go(in_tmp: Path) -> None:
    name = write(in_tmp / "chat.toml", "[server]\nport = 1\n")
    assert error_of(config_file=name) == (
        "config file chat.toml: unknown table [server] (settings go at the top level of the file)"
    )


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "x.toml"
    assert error_of(config_file=str(missing)) == f"config file {missing}: not found"


def test_directory_instead_of_a_file(tmp_path: Path) -> None:
    assert error_of(config_file=tmp_path) == f"config file {tmp_path}: is a directory, not a file"


def test_invalid_toml(in_tmp: Path) -> None:
    name = write(in_tmp / "chat.toml", "port = \n")
    message = error_of(config_file=name)
    assert message.startswith("config file chat.toml: invalid TOML: Invalid value")
    assert "line 1" in message


def test_not_utf8(in_tmp: Path) -> None:
    (in_tmp / "chat.toml").write_bytes(b'server_name = "\xff"\n')
    assert error_of(config_file="chat.toml") == (
        "config file chat.toml: invalid TOML: not UTF-8 text"
    )


def test_same_key_twice_spelled_two_ways(in_tmp: Path) -> None:
    name = write(in_tmp / "chat.toml", "ws_port = 1\nws-port = 2\n")
    assert error_of(config_file=name) == (
        "config file chat.toml: key 'ws-port' is given twice (also as 'ws_port')"
    )


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("port = 70000", "key 'port': must be a port number from 0 to 65535, got 70000"),
        ("port = true", "key 'port': expected an integer, got true"),
        ("port = 1.5", "key 'port': expected an integer, got 1.5"),
        ("ws_port = -1", "key 'ws_port': must be a port number from 0 to 65535, got -1"),
        ("ws_port = false", "key 'ws_port': expected an integer or \"none\", got false"),
        ("send_timeout = 0", "key 'send_timeout': must be greater than 0, got 0.0"),
        ("send_timeout = nan", "key 'send_timeout': must be greater than 0, got nan"),
        ('send_timeout = "1"', "key 'send_timeout': expected a number, got \"1\""),
        ("max_frame_bytes = 0", "key 'max_frame_bytes': must be greater than 0, got 0"),
        ("shutdown_grace = -1", "key 'shutdown_grace': must be 0 or more, got -1.0"),
        ('host = " "', "key 'host': must not be empty, got \" \""),
        ("entry_points = 1", "key 'entry_points': expected true or false, got 1"),
        ('entry_points = "no"', "key 'entry_points': expected true or false, got \"no\""),
        ('admins = "root"', "key 'admins': expected a list of strings, got \"root\""),
        ("admins = [1, 2]", "key 'admins': expected a list of strings, got [1, 2]"),
        ("tls_cert = 3", "key 'tls_cert': expected a string, got 3"),
        ("port = {a = 1}", "key 'port': expected an integer, got {a = 1}"),
        ('server_name = ["a\\nb"]', "key 'server_name': expected a string, got [\"a\\u000ab\"]"),
    ],
)
def test_file_values_are_checked(in_tmp: Path, toml: str, message: str) -> None:
    name = write(in_tmp / "chat.toml", toml + "\n")
    assert error_of(config_file=name) == f"config file chat.toml: {message}"


@pytest.mark.parametrize(
    ("var", "text", "message"),
    [
        ("PORT", "99999", "must be a port number from 0 to 65535, got 99999"),
        ("PORT", "12.0", "expected an integer, got '12.0'"),
        ("PORT", "", "expected an integer, got ''"),
        ("WS_PORT", "off", "expected an integer or \"none\", got 'off'"),
        ("SEND_TIMEOUT", "soon", "expected a number, got 'soon'"),
        ("SEND_TIMEOUT", "-1", "must be greater than 0, got -1.0"),
        ("OUTBOX_SIZE", "0", "must be greater than 0, got 0"),
        ("ENTRY_POINTS", "maybe", "expected true or false (or yes/no, on/off, 1/0), got 'maybe'"),
        ("SERVER_NAME", "x", None),
        ("HOST", "a\nb", None),
    ],
)
def test_environment_values_are_checked(var: str, text: str, message: str | None) -> None:
    environ = {f"TRIO_CHAT_{var}": text}
    if message is None:
        load_config(environ=environ)
    else:
        assert error_of(environ=environ) == f"environment TRIO_CHAT_{var}: {message}"


@pytest.mark.parametrize(
    "url", ["redis://127.0.0.1:6379/0", "redis://redis", "rediss://u:p@h:6380/1", "unix:///r.sock"]
)
def test_broker_takes_redis_urls(url: str) -> None:
    assert load_config(environ={"TRIO_CHAT_BROKER": url}).broker == url


NOT_A_DB = "the database must be a number from 0 (as in redis://127.0.0.1:6379/0)"


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://h:6379", "must be a redis://, rediss:// or unix:// URL (e.g. redis://127.0.0.1:6379/0)"),
        ("h:6379", "must be a redis://, rediss:// or unix:// URL (e.g. redis://127.0.0.1:6379/0)"),
        ("redis://", "the URL names no host (e.g. redis://127.0.0.1:6379/0)"),
        ("redis://h:port", "the port must be a number from 0 to 65535"),
        ("redis://h:70000/0", "the port must be a number from 0 to 65535"),
        ("unix://", "a unix:// URL needs the socket's path (unix:///run/redis.sock)"),
        ("redis://h/abc", f"{NOT_A_DB}, not 'abc'"),
        ("redis://h?db=-1", f"{NOT_A_DB}, not '-1'"),
        ("unix:///r.sock?db=x", f"{NOT_A_DB}, not 'x'"),
    ],
)  # fmt: skip
def test_broker_refuses_what_is_not_a_redis_url(url: str, why: str) -> None:
    said = error_of(overrides={"broker": url})
    assert said == f"command line setting 'broker': {why}, got {url!r}"


def test_workers_are_a_number_or_auto_and_several_need_a_broker() -> None:
    broker = {"broker": "redis://127.0.0.1:6379/0"}
    assert load_config(overrides={"workers": "3", **broker}).workers == "3"
    assert resolve_workers("auto") == max(1, os.cpu_count() or 1)
    assert resolve_workers(" 2 ") == 2
    assert load_config(environ={"TRIO_CHAT_WORKERS": "1"}).broker is None
    for bad in ("0", "-1", "two", "1.5", ""):
        assert error_of(overrides={"workers": bad, **broker}) == (
            "command line setting 'workers': must be a number of processes from 1, "
            f"or auto (one per CPU core), got {bad!r}"
        )
    assert error_of(overrides={"workers": "2"}) == (
        "several workers need a broker (--broker redis://...) to share rooms, users and ids"
    )
    if (os.cpu_count() or 1) > 1:
        assert "need a broker" in error_of(environ={"TRIO_CHAT_WORKERS": "auto"})


def test_flag_values_are_checked() -> None:
    assert error_of(overrides={"port": -1}) == (
        "command line setting 'port': must be a port number from 0 to 65535, got -1"
    )
    assert error_of(overrides={"port": "1"}) == (
        "command line setting 'port': expected an integer, got '1'"
    )
    assert error_of(overrides={"prot": 1}) == "command line: unknown setting 'prot'"


def test_error_values_with_newlines_stay_on_one_line(in_tmp: Path) -> None:
    error_of(environ={"TRIO_CHAT_PORT": "1\n2"})
    name = write(in_tmp / "chat.toml", 'port = """\nmulti\nline"""\n')
    error_of(config_file=name)


# ------------------------------------------------------------------------------ the table


def test_every_field_type_is_supported() -> None:
    assert list(field_specs()) == [
        f.name for f in dataclasses.fields(ServerConfig) if f.name != "plugin_settings"
    ]


def test_unsupported_field_types_are_a_programming_error() -> None:
    with pytest.raises(TypeError, match=r"ServerConfig\.x: settings cannot read"):
        config_loading._spec("x", dict[str, int], Setting("A test."))


def test_defaults_pass_their_own_checks() -> None:
    defaults = ServerConfig()
    for name, spec in field_specs().items():
        check, value = spec.setting.check, getattr(defaults, name)
        assert check is None or value is None or check(value) is None, name


# ---------------------------------------------------------------------------- the example


def test_example_config_round_trips_to_the_defaults(in_tmp: Path) -> None:
    text = render_example_config()
    name = write(in_tmp / "example.toml", text)
    assert load_config(config_file=name) == ServerConfig()


def test_program_defaults_sit_below_everything(in_tmp: Path) -> None:
    defaults = {"db": "/var/lib/chat.db", "port": 1}
    assert load_config(defaults=defaults).db == "/var/lib/chat.db"
    name = write(in_tmp / "chat.toml", 'db = "file.db"\n')
    assert load_config(config_file=name, defaults=defaults).db == "file.db"
    assert load_config(environ={"TRIO_CHAT_DB": ""}, defaults=defaults).db is None
    assert load_config(overrides={"db": None}, defaults=defaults).db is None
    assert (
        error_of(defaults={"port": "x"}) == "default setting 'port': expected an integer, got 'x'"
    )
    text = render_example_config(defaults)
    assert 'db = "/var/lib/chat.db"' in text.splitlines()
    name = write(in_tmp / "example.toml", text)
    assert load_config(config_file=name) == load_config(defaults=defaults)


def test_example_config_lists_every_field_with_its_comment() -> None:
    lines = render_example_config().splitlines()
    for name in field_specs():
        assert any(line.startswith(f"{name} = ") for line in lines), name
    index = lines.index("max_frame_bytes = 16384")
    assert lines[index - 1] == (
        "# Largest frame (JSON line, text line or WebSocket message) accepted, in bytes."
    )
    assert "ws_port = 12346" in lines
    assert lines[lines.index("ws_port = 12346") - 1] == (
        '# WebSocket and the browser page share this port; `"none"` turns them off.'
    )
    assert 'tls_cert = ""' in lines
    assert "admins = []" in lines


def test_example_config_round_trips_odd_values(in_tmp: Path) -> None:
    odd = {
        "server_name": 'quote " backslash \\ tab \t del \x7f snow \u2603',
        "admins": ["a,b", "c"],
        "send_timeout": float("inf"),
        "ws_port": None,
    }
    text = "\n".join(f"{k} = {config_loading.toml_value(v)}" for k, v in odd.items()) + "\n"
    name = write(in_tmp / "odd.toml", text)
    config = load_config(config_file=name)
    assert {k: getattr(config, k) for k in odd} == odd


def test_plugin_tables_become_plugin_settings(in_tmp: Path) -> None:
    (in_tmp / "chat.toml").write_text(
        'port = 1\nplugins = ["a.b"]\n[plugin.roll]\nmax_dice = 20\n[plugin.greeter]\nx = "y"\n'
    )
    config = load_config(config_file="chat.toml")
    assert config.plugins == ["a.b"]
    assert config.plugin_settings == {"roll": {"max_dice": 20}, "greeter": {"x": "y"}}
    (in_tmp / "bad.toml").write_text("[plugin]\nroll = 3\n")
    with pytest.raises(ConfigError, match=r"\[plugin\] holds one table per plugin"):
        load_config(config_file="bad.toml")


# ------------------------------------------------------------- one declaration, every place


def serve_parser(defaults: dict[str, object] | None = None) -> argparse.ArgumentParser:
    """A ``serve`` parser with the setting flags only, as cli.py builds it."""
    parser = argparse.ArgumentParser(
        prog="serve", argument_default=argparse.SUPPRESS, add_help=False
    )
    config_loading.add_setting_flags(parser, defaults)
    return parser


def flag_actions(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {s: a for a in parser._actions for s in a.option_strings if s.startswith("--")}


def test_every_setting_has_one_sentence_of_help_in_the_example() -> None:
    text = render_example_config()
    flat = " ".join(line[2:] for line in text.splitlines() if line.startswith("# "))
    for field in dataclasses.fields(ServerConfig):
        help_text = declaration(field).help
        assert help_text.endswith((".", ":")) and "\n" not in help_text, field.name
        assert help_text[0].isupper(), field.name
        shown = help_text.replace("`None`", '`""`' if "str" in str(field.type) else '`"none"`')
        assert shown in flat, field.name
    lines = text.splitlines()
    for name in field_specs():
        assert sum(line.startswith(f"{name} = ") for line in lines) == 1, name
    assert "# [plugin.roll]" in lines  # plugin_settings: its table


def test_example_config_needs_no_source_code() -> None:
    """Help lives in the declaration, not in comments only ``inspect.getsource`` could read
    (no source in a zipapp; the old reader then gave a file without a single comment)."""
    command = [sys.executable, "-OO", "-m", "trio_chat.cli", "example-config"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=30, check=True)
    assert result.stdout == render_example_config(program_defaults())
    assert "# Largest frame (JSON line, text line or WebSocket message) accepted, in bytes." in (
        result.stdout.splitlines()
    )


#: Every flag of ``serve`` that sets a setting, as users have it in scripts: its spelling,
#: the field it sets, its metavar (None: takes no value) and what it sets then.
FLAGS = {
    "--host": ("host", "HOST"),
    "--port": ("port", "PORT"),
    "--ws-port": ("ws_port", "WS_PORT"),
    "--no-ws": ("ws_port", None, None),
    "--name": ("server_name", "NAME"),
    "--tls-cert": ("tls_cert", "PEM"),
    "--tls-key": ("tls_key", "PEM"),
    "--admin": ("admins", "NICK"),
    "--plugin": ("plugins", "MODULE_OR_FILE"),
    "--no-entry-points": ("entry_points", None, False),
    "--db": ("db", "PATH"),
    "--no-db": ("db", None, None),
    "--history": ("history_on_join", "N"),
    "--keep-days": ("keep_days", "DAYS"),
    "--require-accounts": ("require_accounts", None, True),
    "--max-frame-bytes": ("max_frame_bytes", "BYTES"),
    "--flood-rate": ("flood_rate", "PER_S"),
    "--flood-burst": ("flood_burst", "N"),
    "--flood-max-lag": ("flood_max_lag", "SECONDS"),
    "--max-connections": ("max_connections", "N"),
    "--max-connections-per-host": ("max_connections_per_host", "N"),
    "--max-connections-per-account": ("max_connections_per_account", "N"),
    "--limit-loopback": ("limit_loopback", None, True),
    "--trusted-proxy": ("trusted_proxies", "ADDR_OR_CIDR"),
    "--metrics-port": ("metrics_port", "PORT"),
    "--broker": ("broker", "URL"),
    "--workers": ("workers", "N"),
    "--irc-port": ("irc_port", "PORT"),
    "--always-on": ("always_on", None, True),
}


def test_every_flag_keeps_its_spelling() -> None:
    found = flag_actions(serve_parser())
    assert set(found) == set(FLAGS)
    for flag, (dest, metavar, *sets) in FLAGS.items():
        action = found[flag]
        assert action.dest == dest, flag
        if metavar is None:
            assert action.nargs == 0 and action.const == sets[0], flag
        else:
            assert action.metavar == metavar or action.dest.upper() == metavar, flag
            repeatable = isinstance(getattr(ServerConfig(), dest), list)
            assert isinstance(action, argparse._AppendAction) is repeatable, flag
    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    serve = flag_actions(commands.choices["serve"])
    assert set(serve) == set(FLAGS) | {"--config", "--log-level", "--help"}


def test_every_flag_shows_the_default_the_server_uses() -> None:
    defaults = ServerConfig()
    for flag, action in flag_actions(serve_parser()).items():
        if action.nargs == 0:
            continue  # a switch says what it does, it has no value to default
        help_text = action.help or ""
        match = re.search(r"\(default ([^)]*)\)$", help_text)
        assert match is not None, (flag, help_text)
        shown, value = match.group(1), getattr(defaults, action.dest)
        if value is None or value == []:
            assert shown == "none", flag
        else:
            assert type(value)(shown) == value, (flag, shown, value)
    db_help = flag_actions(serve_parser(program_defaults()))["--db"].help or ""
    assert db_help.endswith(f"(default {default_db_path()})")


def test_flag_values_get_the_settings_own_check(capsys: pytest.CaptureFixture[str]) -> None:
    parser = serve_parser()
    for argv, message in [
        (["--flood-rate", "0"], "argument --flood-rate: must be greater than 0, got 0.0"),
        (["--port", "x"], "argument --port: expected an integer, got 'x'"),
        (["--metrics-port", "none"], "argument --metrics-port: expected an integer, got 'none'"),
        (["--host", " "], "argument --host: must not be empty, got ' '"),
    ]:
        with pytest.raises(SystemExit):
            parser.parse_args(argv)
        assert capsys.readouterr().err.splitlines()[-1] == f"serve: error: {message}"
    given = overrides_from_args(parser.parse_args(["--db", "", "--keep-days", "1", "--no-ws"]))
    assert load_config(overrides=given).db is None  # "" unsets a string, as everywhere
    assert given == {"db": "", "keep_days": 1.0, "ws_port": None}


def test_a_setting_declared_in_the_dataclass_alone_is_everywhere(
    monkeypatch: pytest.MonkeyPatch, in_tmp: Path
) -> None:
    @dataclasses.dataclass
    class Grown(ServerConfig):
        motd_lines: int = setting(
            3,
            help="Lines of the message of the day shown on joining.",
            check=non_negative,
            flags=[Flag("--motd-lines", metavar="N")],
        )
        motd_colour: bool = setting(False, help="Paint the message of the day.")

    monkeypatch.setattr(config_loading, "ServerConfig", Grown)
    assert load_config() == Grown()
    name = write(in_tmp / "chat.toml", "motd-lines = 7\nmotd_colour = true\n")
    config: Any = load_config(config_file=name)
    assert (config.motd_lines, config.motd_colour) == (7, True)
    config = load_config(environ={"TRIO_CHAT_MOTD_LINES": "9", "TRIO_CHAT_MOTD_COLOUR": "yes"})
    assert (config.motd_lines, config.motd_colour) == (9, True)
    assert error_of(environ={"TRIO_CHAT_MOTD_LINES": "-1"}) == (
        "environment TRIO_CHAT_MOTD_LINES: must be 0 or more, got -1"
    )
    lines = render_example_config().splitlines()
    assert lines[lines.index("motd_lines = 3") - 1] == (
        "# Lines of the message of the day shown on joining."
    )
    assert "motd_colour = false" in lines
    found = flag_actions(serve_parser())
    assert "--motd-colour" not in found and "--motd-colour" not in str(found)
    assert found["--motd-lines"].help == (
        "lines of the message of the day shown on joining (default 3)"
    )
    given = overrides_from_args(serve_parser().parse_args(["--motd-lines", "4"]))
    config = load_config(overrides=given)
    assert config.motd_lines == 4


def test_a_field_must_be_declared_with_setting() -> None:
    @dataclasses.dataclass
    class Bare(ServerConfig):
        extra: int = 1

    with pytest.raises(TypeError, match=r"ServerConfig\.extra is not declared with"):
        config_loading._specs_of(Bare)


def test_mutable_defaults_are_copied_per_config() -> None:
    assert ServerConfig().admins is not ServerConfig().admins
    assert ServerConfig().plugin_settings is not ServerConfig().plugin_settings


def test_the_flags_the_docs_name_exist() -> None:
    root = Path(__file__).resolve().parent.parent
    docs = [root / "README.md", *sorted((root / "docs").glob("*.md"))]
    quoted = re.findall(r"`[^`]*`", "\n".join(p.read_text() for p in docs))
    named = {flag for q in quoted for flag in re.findall(r"--[a-z][a-z-]*", q)}
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    real = set(flag_actions(parser))
    for command in commands.choices.values():
        real |= set(flag_actions(command))
        for action in command._actions:
            if isinstance(action, argparse._SubParsersAction):
                for inner in action.choices.values():
                    real |= set(flag_actions(inner))
    assert named and named <= real, sorted(named - real)
