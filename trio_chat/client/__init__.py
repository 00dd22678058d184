"""The terminal client behind ``trio-chat connect`` (TCP JSON lines or WebSocket)."""

from .connection import ConnectError as ConnectError
from .connection import open_connection as open_connection
from .connection import parse_target as parse_target
from .main import run_client as run_client

__all__ = ["ConnectError", "open_connection", "parse_target", "run_client"]
