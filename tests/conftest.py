from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["trio_chat.testing"]


@pytest.fixture(autouse=True)
def private_data_home(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """Servers started by a test keep their default database in a temporary folder, never in
    the user's real data directory."""
    home = tmp_path_factory.mktemp("data-home")
    monkeypatch.setenv("XDG_DATA_HOME", str(home))
    return home
