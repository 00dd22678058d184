"""Test this checkout of the plugin, whether or not it is installed.

The tests register the plugin object themselves (no entry point is needed), but they do
import it: the source directory goes first on the path, so an uninstalled checkout works and
an older installed copy is never the one under test.
"""

from __future__ import annotations

import sys
from pathlib import Path

_SOURCE = str(Path(__file__).resolve().parents[1])
if _SOURCE not in sys.path:
    sys.path.insert(0, _SOURCE)
