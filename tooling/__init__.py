"""Developer tooling: scripts the Makefile runs (not part of the kassa package)."""
