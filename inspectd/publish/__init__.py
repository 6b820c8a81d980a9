"""Verdict transport: journal, ZeroMQ PUB + query socket, heartbeats, NG archive, watch (docs/contracts.md §4).

See docs/publish.md for the wire protocol as a PLC programmer sees it.

Names are imported lazily (PEP 562) so that ``python -m inspectd.publish.watch``
and ``python -m inspectd.publish.keys`` run their module without it being
imported twice.  The subscriber is ``inspectd.publish.watch.watch`` (not
re-exported here: the name would clash with the submodule).
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "NgArchive": "archive",
    "Journal": "journal",
    "JournalError": "journal",
    "CurveKeyError": "keys",
    "generate_keys": "keys",
    "NullMetrics": "metrics",
    "PublishMetrics": "metrics",
    "HEARTBEAT_SCHEMA": "publisher",
    "Publisher": "publisher",
    "PublishError": "publisher",
    "QueryClient": "query",
    "QueryError": "query",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    mod = _EXPORTS.get(name)
    if mod is None:
        raise AttributeError(f"module 'inspectd.publish' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"inspectd.publish.{mod}"), name)
    globals()[name] = value
    return value


def __dir__():
    return __all__
