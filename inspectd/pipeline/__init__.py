"""Running inspection: offline replay, and the multiprocess daemon (docs/daemon.md, docs/architecture.md)."""
