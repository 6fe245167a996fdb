"""Fixtures of the resume tests."""

from __future__ import annotations

from ..helpers import reference_binary  # noqa: F401 (fixture)
