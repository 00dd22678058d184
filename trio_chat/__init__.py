"""trio-chat: a multi-user chat server and client on trio, extended with pluggy plugins."""

from __future__ import annotations

from ._version import __version__ as __version__
from .bots import Bot as Bot
from .commands import CommandContext as CommandContext
from .commands import CommandError as CommandError
from .config import ServerConfig as ServerConfig
from .errors import ChatError as ChatError
from .hookspecs import hookimpl as hookimpl
from .server import ChatServer as ChatServer
from .triggers import TriggerContext as TriggerContext
from .triggers import on_message as on_message

__all__ = [
    "Bot",
    "ChatError",
    "ChatServer",
    "CommandContext",
    "CommandError",
    "ServerConfig",
    "TriggerContext",
    "__version__",
    "hookimpl",
    "on_message",
]
