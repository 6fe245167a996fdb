"""Nothing a dead owner started stays alive: the keeper process."""
