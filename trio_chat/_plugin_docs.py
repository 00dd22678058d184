"""Render the hook reference of ``docs/plugins.md`` from the hookspec docstrings.

``python -m trio_chat._plugin_docs`` prints it; a test checks the docs hold exactly this, so
the reference and :mod:`trio_chat.hookspecs` cannot drift apart.
"""

from __future__ import annotations

import inspect

from . import hookspecs


def hook_reference() -> str:
    """One section per hook: its signature and its docstring, in name order."""
    sections = []
    for name, function in inspect.getmembers(hookspecs, inspect.isfunction):
        if not hasattr(function, f"{hookspecs.PROJECT_NAME}_spec"):
            continue
        parameters = ", ".join(inspect.signature(function).parameters)
        sections.append(f"### `{name}({parameters})`\n\n{inspect.getdoc(function)}\n")
    return "\n".join(sections)


if __name__ == "__main__":
    print(hook_reference(), end="")
