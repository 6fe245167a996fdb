"""Fixtures of the interop tests: the real reference server."""

from __future__ import annotations

from ..helpers import reference_binary, reference_url  # noqa: F401 (fixtures)
