"""Tests of the examples under ``examples/``: each is run as a user would run it."""
