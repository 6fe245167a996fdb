"""The typed messages of the environment methods: what codex asks of its exec server
besides processes.

``codex app-server`` 0.169, using an exec server as a remote environment, asks it for its
status (``environment/status``) and side (``environment/info``, answered with
:class:`~trio_exec._protocol.EnvironmentInfo`), for the codex configuration it holds
(``environmentConfig/read``), for file metadata (``fs/getMetadata``) and to be told when
paths that are missing appear (``fs/watchMissing``, then ``fs/missingChanged``). Frozen
attrs classes like those of :mod:`trio_exec._protocol.messages`, which lists them in its
method tables; the converter gives them their wire form.
"""

from __future__ import annotations

from typing import Any, ClassVar

import attrs

from .rules import _file_uri, _non_negative
from .uris import file_uri_to_path

__all__ = [
    "ConfigLayer",
    "ConfigLayers",
    "EnvironmentConfig",
    "EnvironmentConfigReadParams",
    "EnvironmentInfoParams",
    "EnvironmentStatusParams",
    "EnvironmentStatusResult",
    "FileMetadata",
    "GetMetadataParams",
    "MissingChangedNotification",
    "WatchMissingParams",
    "WatchMissingResult",
]


@attrs.frozen(kw_only=True)
class EnvironmentStatusParams:
    """``environment/status``; no params."""

    METHOD: ClassVar[str] = "environment/status"


@attrs.frozen(kw_only=True)
class EnvironmentStatusResult:
    """Result of ``environment/status``."""

    status: str = "ready"
    """``ready``: the server takes requests (the only status a server itself reports)."""


@attrs.frozen(kw_only=True)
class EnvironmentInfoParams:
    """``environment/info``; no params. The result is the
    :class:`~trio_exec._protocol.EnvironmentInfo` that ``initialize`` gives."""

    METHOD: ClassVar[str] = "environment/info"


@attrs.frozen(kw_only=True)
class GetMetadataParams:
    """``fs/getMetadata``: what kind of file a path is, its size and times."""

    METHOD: ClassVar[str] = "fs/getMetadata"
    path: str = attrs.field(validator=_file_uri)
    """The path as a ``file://`` URI; a symbolic link is followed."""
    sandbox: dict[str, Any] | None = None
    """The reference's sandbox for the access; trio_exec never sandboxes and refuses one."""

    @property
    def local_path(self) -> str:
        """The path as a local path."""
        return file_uri_to_path(self.path)


@attrs.frozen(kw_only=True)
class FileMetadata:
    """Result of ``fs/getMetadata``."""

    is_directory: bool
    """The path (its target, for a link) is a directory."""
    is_file: bool
    """The path (its target, for a link) is a regular file."""
    is_symlink: bool
    """The path itself is a symbolic link."""
    size: int
    """Size in bytes (of the target, for a link)."""
    created_at_ms: int
    """Creation time in milliseconds since the epoch; 0 where the system does not tell."""
    modified_at_ms: int
    """Last modification time in milliseconds since the epoch."""


@attrs.frozen(kw_only=True)
class WatchMissingParams:
    """``fs/watchMissing``: tell me (once) when one of these missing paths may have appeared.

    The watch is set only if every ``missing`` path is absent and ``present`` (when
    given) exists; then a ``fs/missingChanged`` notification follows the first change
    along one of the paths (a missing path or one of its parents appears or goes, or
    ``present`` goes). The id stays taken after that.
    """

    METHOD: ClassVar[str] = "fs/watchMissing"
    watch_id: int = attrs.field(validator=_non_negative)
    """The client's id for the watch, echoed in ``fs/missingChanged``."""
    missing: tuple[str, ...] = attrs.field(validator=attrs.validators.deep_iterable(_file_uri))
    """The paths (``file://`` URIs) expected to be absent."""
    present: str | None = attrs.field(default=None, validator=attrs.validators.optional(_file_uri))
    """A path (``file://`` URI) expected to exist, or None."""

    @property
    def missing_paths(self) -> tuple[str, ...]:
        """``missing`` as local paths."""
        return tuple(file_uri_to_path(uri) for uri in self.missing)

    @property
    def present_path(self) -> str | None:
        """``present`` as a local path."""
        return None if self.present is None else file_uri_to_path(self.present)


@attrs.frozen(kw_only=True)
class WatchMissingResult:
    """Result of ``fs/watchMissing``."""

    watching: bool
    """The watch is set: false when the id is taken, ``missing`` is empty, a missing path
    exists or ``present`` does not."""


@attrs.frozen(kw_only=True)
class MissingChangedNotification:
    """``fs/missingChanged``: something changed along the paths of a watch (sent once)."""

    METHOD: ClassVar[str] = "fs/missingChanged"
    watch_id: int = attrs.field(validator=_non_negative)
    """The watch, as ``fs/watchMissing`` named it."""


@attrs.frozen(kw_only=True)
class EnvironmentConfigReadParams:
    """``environmentConfig/read``: the codex configuration the environment holds, limited
    to some TOML key paths (at least one path, each of at least one key)."""

    METHOD: ClassVar[str] = "environmentConfig/read"
    cwd: str = attrs.field(validator=_file_uri)
    """The working directory of the thread (``file://`` URI), for project layers."""
    config_paths: tuple[tuple[str, ...], ...]
    """Key paths of ``config.toml`` wanted, e.g. ``[["mcp_servers"]]``."""
    requirements_paths: tuple[tuple[str, ...], ...]
    """Key paths of the requirements wanted."""


@attrs.frozen(kw_only=True)
class ConfigLayer:
    """One configuration file's share of an :class:`EnvironmentConfig`."""

    source: str
    """Where it comes from, e.g. ``user (/root/.codex/config.toml)``."""
    base_dir: str
    """The directory its relative paths are relative to (``file://`` URI)."""
    toml: str
    """The wanted keys of it, as TOML text."""


@attrs.frozen(kw_only=True)
class ConfigLayers:
    """The layers of a configuration, lowest precedence first."""

    layers: tuple[ConfigLayer, ...] = ()
    """The layers."""
    cloud_insertion_index: int = 0
    """Where codex inserts the layers it gets from its cloud service."""


@attrs.frozen(kw_only=True)
class EnvironmentConfig:
    """Result of ``environmentConfig/read``."""

    user_home_dir: str
    """The home directory of the server's user (``file://`` URI)."""
    codex_home_dir: str
    """Where codex keeps its files on this side: ``$CODEX_HOME``, else ``~/.codex`` (URI)."""
    hostname: str
    """The server's host name."""
    config: ConfigLayers
    """The configuration layers holding the wanted keys."""
    requirements: ConfigLayers
    """The requirements layers holding the wanted keys."""
