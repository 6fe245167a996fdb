"""Interop tests: raw JSON-RPC scenarios against the reference ``codex exec-server``."""

from __future__ import annotations
