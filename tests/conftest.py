from __future__ import annotations

pytest_plugins = ["trio_chat.testing"]
