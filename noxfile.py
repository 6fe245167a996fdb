"""Automation: ``nox -s lint typecheck docs tests`` is the whole check; ``bench``, ``demo``
and ``cluster`` too."""

from __future__ import annotations

import os
import shutil

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


CHROMIUM_ENV_VAR = "TRIO_EXEC_CHROMIUM"
"""Names the Chromium that the docs session's browser check drives (default: the
distribution's ``chromium`` on PATH, installed with apt-get when it is missing)."""


def _chromium(session: nox.Session) -> str:
    """The path of a Chromium binary, installed from the distribution's packages if need be."""
    wanted = os.environ.get(CHROMIUM_ENV_VAR)
    if wanted:
        if not os.access(wanted, os.X_OK):
            session.error(f"{CHROMIUM_ENV_VAR}={wanted} is not an executable file")
        return wanted
    found = shutil.which("chromium")
    if found:
        return found
    if shutil.which("apt-get") and os.geteuid() == 0:
        env = {"DEBIAN_FRONTEND": "noninteractive"}
        session.run("apt-get", "update", "-qq", external=True, env=env)
        session.run(
            "apt-get", "install", "-y", "-qq", "--no-install-recommends",
            "chromium", "fonts-dejavu-core", external=True, env=env,
        )  # fmt: skip
        found = shutil.which("chromium")
        if found:
            return found
    return session.error(
        "the docs session checks the site in a headless Chromium and found none: install "
        "it (Debian/Ubuntu as root: apt-get install chromium) or set "
        f"{CHROMIUM_ENV_VAR} to its path"
    )


@nox.session
def docs(session: nox.Session) -> None:
    """The Sphinx site (tutorial, CLI, API reference, protocol, comparison, operations),
    with warnings as errors, then checked in a headless Chromium (docs/check_site.py:
    every page loads cleanly, no code block overflows; screenshots in docs/_build/)."""
    session.install("-e", ".[docs,test]")  # the API pages import the testing kit
    chromium = _chromium(session)  # before the build: no browser, no point building
    # -E: a fresh environment, since Sphinx does not notice a changed docstring.
    session.run(
        "sphinx-build", "-E", "-W", "--keep-going", "-q", "-b", "html", "docs", "docs/_build/html"
    )
    session.run("python", "docs/check_site.py", "--chromium", chromium, "docs/_build")


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


@nox.session
def cluster(session: nox.Session) -> None:
    """The conformance suite in a pod of a one-node Kubernetes cluster, through ``kubectl
    exec -i POD -- trio-exec serve --listen stdio`` (root; not part of ``tests``).

    ``kube-apiserver`` and ``kubelet`` are built from Debian's ``kubernetes`` source package
    on first use (tests/cluster/build.py; cached in ``.cache/cluster``, or
    ``$TRIO_EXEC_CLUSTER_CACHE``), then etcd, a private dockerd, the apiserver, the kubelet
    and the pod are started for the run and stopped after it (tests/cluster/node.py).
    Extra arguments go to pytest.
    """
    session.install("-e", ".[test]")
    session.run("python", "-m", "tests.cluster.build")
    session.run(
        "pytest",
        "tests/conformance",
        "tests/cluster",
        "-k",
        "kubectl or cluster",
        "-p",
        "no:cacheprovider",
        *session.posargs,
        env={"TRIO_EXEC_CLUSTER": "1"},
    )
