"""Fixtures of the resume tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from trio_exec.testing.reference import ensure_reference


@pytest.fixture(scope="session")
def reference_binary() -> Path:
    """The reference ``codex`` binary, installed with npm on first use (never skipped)."""
    return ensure_reference()
