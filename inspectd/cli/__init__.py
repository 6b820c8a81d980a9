"""The `inspectd` command line: one typer app, its commands in three modules by who uses them.

`offline` (simulate, replay, eval, validate-config), `labels` (label), `station` (run, watch,
keys, record), `tools` (bench, train, export). Heavy or optional imports
(the daemon, torch) happen inside the command that needs them, so `inspectd
--help` and the lean core install stay fast.
"""

from __future__ import annotations

from inspectd.cli import labels, offline, station, tools  # noqa: F401  (register their commands)
from inspectd.cli.app import app

__all__ = ["app", "main"]


def main() -> None:
    app()
