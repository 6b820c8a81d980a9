"""The query protocol: request parsing and answers (server side), and a client.

Requests are one JSON object per message::

    {"op": "since", "seq": N, "station": "L1-S1", "limit": 1000}
    {"op": "health"}
    {"op": "stats"}

An optional ``"id"`` (any JSON value) is echoed back, for clients that keep
several requests in flight.  Every answer has ``"ok"``; errors are
``{"ok": false, "error": "<what is wrong>"}``.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import zmq

from inspectd.publish.journal import Journal

DEFAULT_LIMIT = 1000
MAX_LIMIT = 10000
MAX_REQUEST_BYTES = 64 * 1024
OPS = ("since", "health", "stats")


def _err(msg: str, req_id: Any = None) -> dict:
    d: dict[str, Any] = {"ok": False, "error": msg}
    if req_id is not None:
        d["id"] = req_id
    return d


MAX_SEQ = 2**63 - 1  # SQLite's INTEGER: a larger seq cannot be in the journal


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def split_envelope(frames: list[bytes]) -> tuple[list[bytes], list[bytes]]:
    """ROUTER frames -> (reply envelope, body frames).

    REQ clients (and DEALERs that mimic them) send ``[id, b"", payload]``: the
    envelope runs up to and including the first empty frame.  A bare DEALER
    sends ``[id, payload]``: the envelope is just the routing id.
    """
    ident, rest = frames[:1], frames[1:]
    if b"" in rest:
        i = rest.index(b"")
        return ident + rest[: i + 1], rest[i + 1 :]
    return ident, rest


def handle(
    body: list[bytes],
    *,
    journal: Journal,
    station: str,
    info: Callable[[], dict],
) -> tuple[str, bool, bytes]:
    """Answer one request.  Returns (op for metrics, ok, reply bytes).  Never raises."""
    op = "invalid"
    try:
        if len(body) != 1:
            return op, False, _dump(_err(f"expected one JSON frame after the envelope, got {len(body)} frames"))
        raw = body[0]
        if len(raw) > MAX_REQUEST_BYTES:
            return op, False, _dump(_err(f"request too large ({len(raw)} bytes, max {MAX_REQUEST_BYTES})"))
        try:
            req = json.loads(raw)
        except (ValueError, UnicodeDecodeError, RecursionError) as e:
            return op, False, _dump(_err(f"bad JSON: {e}"))
        if not isinstance(req, dict):
            return op, False, _dump(_err(f"request must be a JSON object, got {type(req).__name__}"))
        req_id = req.get("id")
        if "op" not in req:
            return op, False, _dump(_err('missing "op" (one of: since, health, stats)', req_id))
        if not isinstance(req["op"], str) or req["op"] not in OPS:
            shown = json.dumps(req["op"])
            shown = shown if len(shown) <= 40 else shown[:37] + "..."
            return op, False, _dump(_err(f"unknown op {shown} (one of: since, health, stats)", req_id))
        op = req["op"]
        if op == "since":
            reply = _since(req, journal, station)
        elif op == "health":
            reply = {"ok": True, "op": "health", **info()}
        else:
            reply = {"ok": True, "op": "stats", "station": station, "stats": journal.stats(station)}
        if isinstance(reply, _Raw):
            return op, True, reply.bytes_with_id(req_id)
        if req_id is not None:
            reply["id"] = req_id
        return op, bool(reply.get("ok")), _dump(reply)
    except Exception as e:  # a journal fault or a bug: answer it, keep serving
        return op, False, _dump(_err(f"internal error answering {op}: {type(e).__name__}: {e}"))


class _Raw:
    """A since-answer assembled from the journal's stored JSON (no parse/re-serialise per verdict)."""

    def __init__(self, head: dict, verdicts: list[str]):
        self.head, self.verdicts = head, verdicts

    def bytes_with_id(self, req_id: Any) -> bytes:
        head = dict(self.head)
        if req_id is not None:
            head["id"] = req_id
        h = json.dumps(head, separators=(",", ":"))
        return (h[:-1] + ',"verdicts":[' + ",".join(self.verdicts) + "]}").encode()


def _since(req: dict, journal: Journal, default_station: str) -> dict | _Raw:
    seq = req.get("seq")
    if seq is None:
        return _err("bad seq: missing (\"seq\": N returns the verdicts with seq > N; 0 for all)")
    if not _is_int(seq) or seq < 0 or seq > MAX_SEQ:
        return _err(f"bad seq: must be an integer from 0 to {MAX_SEQ}, got {json.dumps(seq)[:40]}")
    limit = req.get("limit", DEFAULT_LIMIT)
    if not _is_int(limit) or limit < 1:
        return _err(f"bad limit: must be an integer >= 1, got {json.dumps(limit)}")
    limit = min(limit, MAX_LIMIT)
    station = req.get("station", default_station)
    if not isinstance(station, str) or not station:
        return _err(f"bad station: must be a non-empty string, got {json.dumps(station)}")
    rows, first, last, more = journal.since_page(station, seq, limit)
    head = {
        "ok": True,
        "op": "since",
        "station": station,
        "seq": seq,
        "limit": limit,
        "first_seq": first,
        "last_seq": last,
        "more": more,
        "journal_id": journal.journal_id,
    }
    return _Raw(head, rows)


def _dump(d: dict) -> bytes:
    return json.dumps(d, separators=(",", ":")).encode()


# ---------------------------------------------------------------------------------------- client


class QueryError(Exception):
    """The daemon answered ``ok: false`` (message: its error) or did not answer in time."""


class QueryClient:
    """A client of the query socket (DEALER, REQ-compatible envelope, bounded waits).

    >>> with QueryClient("tcp://127.0.0.1:5557") as q:
    ...     for v in q.since(1041):   # pages through everything after seq 1041
    ...         print(v["seq"], v["result"])
    """

    _ids = itertools.count(1)

    def __init__(
        self,
        address: str,
        *,
        timeout_s: float = 3.0,
        server_key: str | Path | None = None,
        client_secret: str | Path | None = None,
        ctx: zmq.Context | None = None,
    ) -> None:
        self.address = address
        self.timeout_s = timeout_s
        self._curve = (server_key, client_secret) if server_key or client_secret else None
        if self._curve and not (server_key and client_secret):
            raise ValueError("CURVE needs both server_key and client_secret")
        self._own_ctx = ctx is None
        self._ctx = ctx or zmq.Context()
        self._sock: zmq.Socket | None = None

    def _socket(self) -> zmq.Socket:
        if self._sock is None:
            s = self._ctx.socket(zmq.DEALER)
            s.linger = 0
            if self._curve:
                from inspectd.publish.keys import client_options

                client_options(s, *self._curve)
            s.connect(self.address)
            self._sock = s
        return self._sock

    def request(self, req: dict) -> dict:
        """Send one request and wait (at most timeout_s) for its answer; raises QueryError."""
        req = dict(req)
        rid = req.setdefault("id", next(self._ids))
        s = self._socket()
        s.send_multipart([b"", json.dumps(req).encode()])
        deadline = time.monotonic() + self.timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not s.poll(int(left * 1000) + 1):
                # A late answer must not be read as the answer to the next request: new socket.
                s.close(0)
                self._sock = None
                raise QueryError(f"no answer from {self.address} within {self.timeout_s:g} s")
            frames = s.recv_multipart()
            try:
                reply = json.loads(frames[-1])
            except ValueError as e:
                raise QueryError(f"bad answer from {self.address}: {e}") from e
            if reply.get("id") == rid:
                break  # else: a stale answer to an earlier, timed-out request
        if not reply.get("ok"):
            raise QueryError(reply.get("error", "request failed"))
        return reply

    def since(self, seq: int, *, station: str | None = None, limit: int = DEFAULT_LIMIT, until: int | None = None) -> Iterator[dict]:
        """Every verdict with seq > `seq` (up to `until`, inclusive, if given), paging `limit` at a time."""
        while True:
            req: dict[str, Any] = {"op": "since", "seq": seq, "limit": limit}
            if station is not None:
                req["station"] = station
            page = self.request(req)
            for v in page["verdicts"]:
                if until is not None and v["seq"] > until:
                    return
                yield v
                seq = v["seq"]
            if not page["more"] or not page["verdicts"] or (until is not None and seq >= until):
                return

    def health(self) -> dict:
        return self.request({"op": "health"})

    def stats(self) -> dict:
        return self.request({"op": "stats"})["stats"]

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close(0)
            self._sock = None
        if self._own_ctx:
            self._ctx.term()

    def __enter__(self) -> QueryClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
