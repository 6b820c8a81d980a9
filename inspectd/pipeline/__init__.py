"""Inspection stages and the ways they are run (sequential replay now; the multiprocess daemon next)."""
