"""Tests of the sans-IO protocol layer (plain synchronous pytest, no trio)."""
