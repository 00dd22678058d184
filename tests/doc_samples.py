"""The Python samples of docs/plugins.md, loaded as plugins, so that the docs' code is
exactly the code the tests run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trio_chat.plugins import import_plugin

ROOT = Path(__file__).resolve().parent.parent


def doc_sample(name: str) -> str:
    """The Python sample of docs/plugins.md that starts with the line ``# name``."""
    documented = (ROOT / "docs" / "plugins.md").read_text()
    return documented.split(f"```python\n# {name}\n", 1)[1].split("```", 1)[0]


def load_sample(name: str, folder: Path) -> Any:
    """The sample ``name`` written to ``folder`` and imported as a plugin module."""
    path = folder / name
    path.write_text(doc_sample(name))
    return import_plugin(str(path))
