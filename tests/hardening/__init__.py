"""Hardening of the remote path: who gets in, limits, hostile frames, load."""
