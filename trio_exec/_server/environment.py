"""The server's side as ``initialize`` tells it, and the environment a child starts with.

Also what ``environmentConfig/read`` tells of the codex configuration on this side.

``environmentInfo`` (working directory, home, shell, temporary directory, operating
system) is read when a client asks; a child's environment is ``env`` exactly, or the
reference's ``envPolicy`` rules applied to the server's own environment with ``env`` over
it.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import sys
from collections.abc import Mapping
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any, Final

import attrs

from .._protocol import (
    ConfigLayers,
    EnvironmentConfig,
    EnvironmentConfigReadParams,
    EnvironmentInfo,
    ShellInfo,
    StartParams,
    path_to_file_uri,
)

if TYPE_CHECKING:
    from .._backend import ExecBackend

__all__ = [
    "ENVIRONMENT_CAPABILITIES",
    "_child_env",
    "_child_env_options",
    "_environment_config",
    "_environment_info",
    "_policy_env",
]

ENVIRONMENT_CAPABILITIES: Final = {"fsWatchMissing": True, "environmentConfigRead": True}
"""The ``capabilities`` of ``environmentInfo``: the environment methods, beyond status,
info and ``fs/getMetadata``, that this server answers as the reference does (see
:mod:`trio_exec._server.env_methods`). The reference's other capabilities (network proxy,
credential masking, sandboxes, file streaming, ...) are left out, which codex reads as
false."""

_CORE_ENV_VARS: Final = frozenset(
    [
        "HOME",
        "LANG",
        "LC_ALL",
        "LC_CTYPE",
        "LOGNAME",
        "PATH",
        "SHELL",
        "TEMP",
        "TMP",
        "TMPDIR",
        "USER",
    ]
)
"""``inherit: "core"`` of ``envPolicy``: the reference 0.169's list (seen live)."""
_DEFAULT_ENV_EXCLUDES: Final = ("*KEY*", "*SECRET*", "*TOKEN*")


def _environment_info(backend: ExecBackend | None = None) -> EnvironmentInfo:
    """What ``initialize`` tells a client of the side where the children run.

    A backend that knows that side (a :class:`~trio_exec.RemoteBackend`: what its own
    server told) gives its :attr:`~trio_exec.ExecBackend.environment_info`. Otherwise the
    children run here: this process's working directory (where a child runs when the
    client gives no ``cwd``), the user's home, default shell and temporary directory, and
    the operating system, as the reference tells them; all read when asked, so a server
    whose process changed directory reports the new one. Fields that cannot be known (a
    deleted working directory) are left out. The reference's ``executorVersion``,
    ``providerId`` and ``prependPathDirs`` describe codex itself and are not sent.
    ``capabilities`` is :data:`ENVIRONMENT_CAPABILITIES` either way: they say what this
    server answers, whatever its backend's server answers.
    """
    if backend is not None and backend.environment_info is not None:
        return attrs.evolve(backend.environment_info, capabilities=dict(ENVIRONMENT_CAPABILITIES))
    try:
        cwd: str | None = os.getcwd()
    except OSError:
        cwd = None
    home = os.path.expanduser("~")
    tmpdir = os.environ.get("TMPDIR") or None
    if tmpdir is not None and cwd is not None:
        tmpdir = os.path.join(cwd, tmpdir)
    return EnvironmentInfo(
        shell=_user_shell(),
        cwd=_file_uri_or_none(cwd),
        user_home_dir=_file_uri_or_none(home),
        platform_os=_PLATFORM_OS.get(sys.platform, sys.platform.rstrip("0123456789")),
        temporary_directories=tuple(uri for uri in (_file_uri_or_none(tmpdir),) if uri is not None),
        temp_dir=_file_uri_or_none(tmpdir or "/tmp"),
        capabilities=dict(ENVIRONMENT_CAPABILITIES),
    )


def _environment_config(params: EnvironmentConfigReadParams) -> EnvironmentConfig:
    """What ``environmentConfig/read`` tells: where codex would keep its files on this
    side, and no configuration layers, since this server holds no codex configuration.

    Raises:
        ValueError: no key path was asked for, or one is empty (the reference's checks).
    """
    paths = params.config_paths + params.requirements_paths
    if not paths:
        raise ValueError("at least one config or requirements path is required")
    if not all(paths):
        raise ValueError("TOML paths must contain at least one key segment")
    home = os.path.expanduser("~")
    codex_home = os.environ.get("CODEX_HOME", "")
    if not os.path.isabs(codex_home):
        codex_home = os.path.join(home, ".codex")
    return EnvironmentConfig(
        user_home_dir=_file_uri_or_none(home) or "file:///",
        codex_home_dir=_file_uri_or_none(codex_home) or "file:///",
        hostname=socket.gethostname(),
        config=ConfigLayers(),
        requirements=ConfigLayers(),
    )


_PLATFORM_OS: Final = {"darwin": "macos", "win32": "windows"}
"""``sys.platform`` values that Rust's ``std::env::consts::OS`` spells otherwise."""

_KNOWN_SHELLS: Final = ("bash", "zsh", "sh")


def _file_uri_or_none(path: str | None) -> str | None:
    if path is None or not os.path.isabs(path):
        return None
    try:
        return path_to_file_uri(path)
    except ValueError:
        return None


def _user_shell() -> ShellInfo:
    """The user's login shell (from the password database) when it is a known kind and
    executable; else bash, zsh or ``/bin/sh``, as the reference picks it."""
    try:
        login = pwd.getpwuid(os.getuid()).pw_shell
    except KeyError:
        login = ""
    name = os.path.splitext(os.path.basename(login))[0]
    if name in _KNOWN_SHELLS and os.access(login, os.X_OK):
        return ShellInfo(name=name, path=login)
    for name in ("bash", "zsh"):
        found = shutil.which(name)
        if found is not None:
            return ShellInfo(name=name, path=found)
    return ShellInfo(name="sh", path="/bin/sh")


def _child_env(params: StartParams) -> dict[str, str]:
    """The child's environment: ``env`` exactly, or ``envPolicy`` applied and ``env`` over it.

    Sorted by name, as the reference's children see it (Rust keeps a command's environment
    in a sorted map), so that ``env`` prints the same.
    """
    if params.env_policy is None:
        env = dict(params.env)
    else:
        env = _policy_env(params.env_policy, os.environ)
        env.update(params.env)
    return dict(sorted(env.items()))


def _child_env_options(
    params: StartParams, backend: ExecBackend
) -> tuple[dict[str, str] | None, dict[str, str] | None]:
    """The ``env`` and ``extra_env`` options that give the child of ``params`` its
    environment on ``backend``.

    The policy applies to the environment of the side where the child runs. When that is
    this process's (the backend has no :attr:`~trio_exec.ExecBackend.environment_info`,
    as a :class:`~trio_exec.LocalBackend`), the exact environment of :func:`_child_env`.
    Otherwise (a :class:`~trio_exec.RemoteBackend`: a relay) the base environment is
    the backend's own, which only ``env=None`` reaches: an ``envPolicy`` that inherits
    everything and filters nothing (what a trio_exec client sends for ``env=None``) is
    ``env=None`` with its ``set`` and ``env`` as ``extra_env``; a policy that filters
    cannot be expressed through the backend, and applies to this process's environment.

    Raises:
        ValueError: a malformed ``envPolicy``.
    """
    env = _child_env(params)  # validates the policy
    policy = params.env_policy
    if backend.environment_info is None or policy is None or not _inherits_everything(policy):
        return env, None
    return None, {**policy.get("set", {}), **params.env}


def _inherits_everything(policy: Mapping[str, Any]) -> bool:
    """Whether ``envPolicy`` keeps the whole base environment (it may only add to it)."""
    return (
        policy.get("inherit", "all") == "all"
        and policy.get("ignoreDefaultExcludes", False) is True
        and not policy.get("exclude")
        and not policy.get("includeOnly")
    )


def _policy_env(policy: Mapping[str, Any], base: Mapping[str, str]) -> dict[str, str]:
    """Build an environment from ``base`` with the reference's ``envPolicy`` rules.

    In order: start from ``inherit`` (``"all"``, ``"core"``: HOME, LANG, LC_ALL, LC_CTYPE,
    LOGNAME, PATH, SHELL, TEMP, TMP, TMPDIR, USER, or ``"none"``); unless ``ignoreDefaultExcludes``,
    drop names matching ``*KEY*``, ``*SECRET*``, ``*TOKEN*``; drop ``exclude``; add
    ``set``; when ``includeOnly`` is non-empty keep only matching names. Patterns are
    case-insensitive globs. Missing fields take the defaults ``all``, false, ``[]``, ``{}``,
    ``[]`` (the reference requires all five). Unlike the reference, no variable is always
    left out: it drops its own launch variables (``CODEX_EXEC_SERVER_*``,
    ``NODE_REPL_AUTH_TOKEN``, ``OPENAI_*`` identity files), which mean nothing here.

    Raises:
        ValueError: a field of the wrong type or an unknown ``inherit``.
    """
    inherit = policy.get("inherit", "all")
    if inherit == "all":
        env = dict(base)
    elif inherit == "core":
        env = {name: value for name, value in base.items() if name in _CORE_ENV_VARS}
    elif inherit == "none":
        env = {}
    else:
        raise ValueError(
            f"unknown variant `{inherit}`, expected one of `core`, `all`, `none` "
            "at `envPolicy.inherit`"
        )
    ignore_defaults = policy.get("ignoreDefaultExcludes", False)
    if type(ignore_defaults) is not bool:
        raise ValueError("invalid type, expected a boolean at `envPolicy.ignoreDefaultExcludes`")
    exclude = _patterns(policy, "exclude")
    include_only = _patterns(policy, "includeOnly")
    overrides = policy.get("set", {})
    if type(overrides) is not dict or not all(type(value) is str for value in overrides.values()):
        raise ValueError("invalid type, expected a map of strings at `envPolicy.set`")
    if not ignore_defaults:
        exclude = [*_DEFAULT_ENV_EXCLUDES, *exclude]
    env = {name: value for name, value in env.items() if not _matches(name, exclude)}
    env.update(overrides)
    if include_only:
        env = {name: value for name, value in env.items() if _matches(name, include_only)}
    return env


def _patterns(policy: Mapping[str, Any], field: str) -> list[str]:
    value = policy.get(field, [])
    if type(value) is not list or not all(type(item) is str for item in value):
        raise ValueError(f"invalid type, expected a sequence of strings at `envPolicy.{field}`")
    return [item.upper() for item in value]


def _matches(name: str, patterns: list[str]) -> bool:
    upper = name.upper()
    return any(fnmatchcase(upper, pattern.upper()) for pattern in patterns)
