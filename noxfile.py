"""Automation: ``nox -s lint typecheck docs tests`` is the whole check; ``bench`` and
``demo`` too."""

from __future__ import annotations

import nox

nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["lint", "typecheck", "docs", "tests"]


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check over the whole tree."""
    session.install("ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict on trio_exec and the tests (configured in pyproject.toml)."""
    session.install("-e", ".[test]", "mypy", "nox")
    session.run("mypy")


@nox.session
def docs(session: nox.Session) -> None:
    """The Sphinx site (tutorial, API reference, protocol, comparison, operations), with
    warnings as errors."""
    session.install("-e", ".[test]", "sphinx")  # the API page imports the testing kit
    session.run(
        "sphinx-build", "-W", "--keep-going", "-q", "-b", "html", "docs", "docs/_build/html"
    )


@nox.session
def tests(session: nox.Session) -> None:
    """The pytest suite, including the interoperability tests against the reference server
    (installed from npm into .cache/reference on first use)."""
    session.install("-e", ".[test]")
    session.run("pytest", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """The benchmarks, each printed beside its baseline measured in the same run
    (``nox -s bench -- --quick``: tiny sizes, to check that they run)."""
    session.install("-e", ".[test,bench]")
    session.run("python", "-m", "benchmarks", *session.posargs)  # every one, then the verdict


@nox.session
def demo(session: nox.Session) -> None:
    """The main job: a process run through an exec server embedded in the same program."""
    session.install("-e", ".")
    session.run("python", "examples/embedded_server.py")
