"""LocalBackend specifics: what only a local child has (descriptors, SIGCHLD)."""
