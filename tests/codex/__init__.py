"""The real ``codex app-server`` 0.169 with an exec server (ours or the reference) as its
remote environment."""

from __future__ import annotations
