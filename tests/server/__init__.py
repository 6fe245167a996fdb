"""Tests of the exec server (``trio_exec._server``): protocol, concurrency, endpoints."""

from __future__ import annotations
