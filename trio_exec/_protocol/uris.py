"""``file://`` URIs, the protocol's form of a local path (``cwd``, environment info)."""

from __future__ import annotations

import os
from urllib.parse import quote_from_bytes, unquote_to_bytes, urlsplit

from .codes import _clip

__all__ = [
    "file_uri_to_path",
    "path_to_file_uri",
]


def path_to_file_uri(path: str | os.PathLike[str]) -> str:
    """Turn an absolute local path into a ``file://`` URI (percent-encoded, exact).

    Bytes that are not UTF-8 (surrogate-escaped in ``path``) are percent-encoded as they
    are, so :func:`file_uri_to_path` gives back the same string.

    Raises:
        ValueError: the path is relative or contains a NUL.
    """
    text = os.fspath(path)
    if not text.startswith("/"):
        raise ValueError(f"path must be absolute: {text!r}")
    if "\0" in text:
        raise ValueError("path must not contain NUL")
    return "file://" + quote_from_bytes(os.fsencode(text), safe="/")


def file_uri_to_path(uri: str) -> str:
    """Turn a ``file://`` URI for this machine into a local path.

    The host must be empty or ``localhost``; a query or fragment is refused.

    Raises:
        ValueError: not a URI (``invalid URI: relative URL without a base``, as the
            reference says for ``/tmp``), another scheme, another host, or a bad path.
    """
    try:
        parts = urlsplit(uri)
    except ValueError as exc:
        raise ValueError(f"invalid URI: {exc}") from None
    if not parts.scheme:
        raise ValueError("invalid URI: relative URL without a base")
    if parts.scheme.lower() != "file":
        raise ValueError(f"not a file:// URI: scheme `{parts.scheme}`")
    if parts.netloc not in ("", "localhost"):
        raise ValueError(f"file URI names another host: `{_clip(parts.netloc)}`")
    if parts.query or parts.fragment:
        raise ValueError("file URI must not have a query or fragment")
    path = os.fsdecode(unquote_to_bytes(parts.path))
    if not path.startswith("/"):
        raise ValueError("file URI has no absolute path")
    if "\0" in path:
        raise ValueError("file URI path contains NUL")
    return path
