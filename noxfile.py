"""Developer sessions: ``nox -s tests lint typecheck`` (and ``nox -s bench``)."""

from __future__ import annotations

import glob

import nox

nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.reuse_existing_virtualenvs = True

PLUGINS = sorted(glob.glob("plugins/trio-chat-*"))


@nox.session
def tests(session: nox.Session) -> None:
    """The whole suite, with the example plugins installed as users install them."""
    session.install("-e", ".[test]")
    session.install(*PLUGINS)  # after trio-chat, which they depend on
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    session.install("-e", ".[test]", "mypy")
    session.run("mypy")


@nox.session
def bench(session: nox.Session) -> None:
    """Throughput, latency, memory and churn against the baselines (see bench/README.md)."""
    session.install("-e", ".", "matplotlib")
    session.run("python", "bench/run.py", *session.posargs)
