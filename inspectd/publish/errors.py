"""PublishError, in a module of its own so that the parts publisher.py starts can raise it.

The journal lock and the socket threads (journal_lock.py, sender.py,
query_server.py) report start-up failures as PublishError; publisher.py
imports them, so they cannot import it from there.  It is re-exported by
inspectd.publish.publisher and inspectd.publish, and keeps the module name it
always had (tracebacks, pickles and reprs read as before).
"""

from __future__ import annotations


class PublishError(Exception):
    """The publisher cannot start or cannot publish; the message says what and where."""

    __module__ = "inspectd.publish.publisher"
