"""`inspectd watch ADDRESS`: print a daemon's verdicts live, notice gaps, recover them.

    python -m inspectd.publish.watch tcp://127.0.0.1:5556

One line per verdict::

        17  L1-S1  frame=f000017  part=C-000123  NG       OVERHANG_MIN#7 0.31mm<0.45  min 0.31mm  41.7ms
    [recovered]     18  L1-S1  frame=f000018  ...

Loss handling (docs/publish.md):

- a verdict whose seq is more than one past the last seen one, or a
  heartbeat whose ``last_seq`` is past it, means verdicts were lost on the
  way: they are fetched from the query socket (``since``) and printed marked
  ``[recovered]``.  The query address comes from ``--query`` or from the
  heartbeats;
- a seq going backwards, or a heartbeat naming another ``journal_id``,
  means the daemon restarted on another journal: noted, and followed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import zmq

from inspectd.publish.query import QueryClient, QueryError

MAX_RECOVERY_ATTEMPTS = 3
SILENT_HINT_S = 5.0  # no message this long after connecting: say what may be wrong, once


def format_verdict(v: dict, recovered: bool = False) -> str:
    """One readable line: seq, station, frame, part, result, first reason, min overhang, latency."""
    parts = [
        f"{v.get('seq', '?'):>6}",
        str(v.get("station", "?")),
        f"frame={v.get('frame_id', '?')}",
        f"part={v.get('part_id') or '-'}",
        f"{v.get('result', '?'):<7}",
    ]
    reasons = v.get("reasons") or []
    parts.append(_reason(reasons[0]) if reasons else "-")
    ov = v.get("overhang_mm") or {}
    parts.append(f"min {ov['min']:.2f}mm" if isinstance(ov.get("min"), (int, float)) else "min -")
    lat = v.get("latency_ms")
    parts.append(f"{lat:.1f}ms" if isinstance(lat, (int, float)) and lat > 0 else "-ms")
    line = "  ".join(parts)
    return ("[recovered] " if recovered else "") + line


def _reason(r: dict) -> str:
    s = str(r.get("code", "?"))
    if r.get("index") is not None:
        s += f"#{r['index']}"
    if r.get("value_mm") is not None:
        s += f" {r['value_mm']:.2f}mm"
        if r.get("limit_mm") is not None:
            s += ("<" if r["value_mm"] < r["limit_mm"] else ">") + f"{r['limit_mm']:.2f}"
    elif r.get("value") is not None:
        s += f" {r['value']:g}"
        if r.get("limit") is not None:
            s += f" (limit {r['limit']:g})"
    elif r.get("message"):
        msg = str(r["message"])
        s += ": " + (msg if len(msg) <= 60 else msg[:57] + "...")
    return s


def _fix_host(query: str, pub: str) -> str:
    """A heartbeat's query address bound to a wildcard host -> the host we reached the PUB on."""
    if not (query.startswith("tcp://") and pub.startswith("tcp://")):
        return query
    qhost, qport = query[6:].rsplit(":", 1)
    if qhost in ("0.0.0.0", "*", "[::]", "::"):
        phost = pub[6:].rsplit(":", 1)[0]
        return f"tcp://{phost}:{qport}"
    return query


class _Watcher:
    def __init__(self, address, query, station, out, json_lines, curve, timeout_s):
        self.address = address
        self.query = query
        self.query_given = query is not None
        self.station = station
        self.out = out
        self.json_lines = json_lines
        self.curve = curve
        self.last: dict[str, int] = {}  # station -> last seq seen (live or recovered)
        self.journal: dict[str, str] = {}  # station -> journal_id seen
        self.pending: list[list] = []  # [station, after, upto, attempts]
        self.printed = 0
        self.got_message = False
        self.heard: set[str] = set()
        self._client: QueryClient | None = None
        self._client_addr = None
        self._query_timeout = 2.0 if timeout_s is None else max(0.2, min(2.0, timeout_s / 4))

    # ---------------------------------------------------------------- output

    def emit_verdict(self, v: dict, recovered: bool) -> None:
        if self.json_lines:
            self.out(json.dumps({"event": "verdict", "recovered": recovered, "verdict": v}, separators=(",", ":")))
        else:
            self.out(format_verdict(v, recovered))
        self.printed += 1

    def note(self, event: str, text: str, **fields) -> None:
        if self.json_lines:
            self.out(json.dumps({"event": event, **fields}, separators=(",", ":")))
        else:
            self.out(f"! {text}")

    # ---------------------------------------------------------------- messages

    def on_verdict(self, payload: bytes) -> None:
        try:
            v = json.loads(payload)
            seq, st = int(v["seq"]), str(v["station"])
        except (ValueError, KeyError, TypeError) as e:
            self.note("bad_message", f"unreadable verdict message ({e}): {payload[:80]!r}", error=str(e))
            return
        if self.station is not None and st != self.station:
            return  # topic prefix match of another station (verdict.L1-S1 also matches verdict.L1-S10)
        prev = self.last.get(st)
        if prev is not None and seq > prev + 1:
            self.gap(st, prev, seq - 1)
        elif prev is not None and seq <= prev:
            self.note(
                "seq_backwards",
                f"{st}: seq went back from {prev} to {seq}: the daemon restarted on another journal; following it",
                station=st,
                previous=prev,
                seq=seq,
            )
            self.pending = [p for p in self.pending if p[0] != st]
        self.last[st] = seq
        self.emit_verdict(v, recovered=False)

    def on_heartbeat(self, payload: bytes) -> None:
        try:
            hb = json.loads(payload)
            st, last = str(hb["station"]), int(hb["last_seq"])
        except (ValueError, KeyError, TypeError) as e:
            self.note("bad_message", f"unreadable heartbeat ({e}): {payload[:80]!r}", error=str(e))
            return
        if self.station is not None and st != self.station:
            return
        if not self.query_given and hb.get("query"):
            self.query = _fix_host(str(hb["query"]), self.address)
        jid = hb.get("journal_id")
        if st not in self.heard:
            self.heard.add(st)
            self.note(
                "connected",
                f"connected: {st} last seq {last}, query {self.query or '-'}, health {json.dumps(hb.get('health', {}))}",
                station=st,
                last_seq=last,
                query=self.query,
                health=hb.get("health", {}),
            )
        elif jid and self.journal.get(st) and jid != self.journal[st]:
            self.note(
                "journal_changed",
                f"{st}: the daemon now runs on another journal ({self.journal[st]} -> {jid}); following it",
                station=st,
                journal_id=jid,
            )
            self.last[st] = last
            self.pending = [p for p in self.pending if p[0] != st]
        if jid:
            self.journal[st] = jid
        prev = self.last.get(st)
        if prev is None:
            self.last[st] = last  # start live from here; no history dump
        elif last > prev:
            self.gap(st, prev, last)  # the tail was lost: no later verdict would reveal it
            self.last[st] = last
        elif last < prev:
            self.note(
                "seq_backwards",
                f"{st}: heartbeat last seq {last} is behind {prev}: the daemon restarted on another journal; following it",
                station=st,
                previous=prev,
                seq=last,
            )
            self.last[st] = last
            self.pending = [p for p in self.pending if p[0] != st]
        self.retry_pending()

    # ---------------------------------------------------------------- recovery

    def gap(self, st: str, after: int, upto: int) -> None:
        n = upto - after
        where = self.query or "no query address yet: waiting for a heartbeat"
        self.note(
            "gap",
            f"{st}: missed {n} verdict{'s' if n != 1 else ''} (seq {after + 1}..{upto}); recovering from {where}",
            station=st,
            first=after + 1,
            last=upto,
            query=self.query,
        )
        self.pending.append([st, after, upto, 0])
        if self.query:
            self.retry_pending()

    def _query_client(self) -> QueryClient:
        if self._client is None or self._client_addr != self.query:
            if self._client is not None:
                self._client.close()
            server_key, client_secret = self.curve
            self._client = QueryClient(
                self.query, timeout_s=self._query_timeout, server_key=server_key, client_secret=client_secret
            )
            self._client_addr = self.query
        return self._client

    def retry_pending(self) -> None:
        if not self.query or not self.pending:
            return
        still = []
        for item in self.pending:
            st, after, upto, attempts = item
            got = after
            try:
                for v in self._query_client().since(after, station=st, until=upto):
                    seq = int(v["seq"])
                    if seq > got + 1:
                        self.note(
                            "lost",
                            f"{st}: LOST seq {got + 1}..{seq - 1}: no longer in the daemon's journal (pruned)",
                            station=st,
                            first=got + 1,
                            last=seq - 1,
                            error="pruned",
                        )
                    self.emit_verdict(v, recovered=True)
                    got = seq
                if got < upto:
                    raise QueryError(f"the journal has nothing past seq {got}")
            except (QueryError, zmq.ZMQError, OSError) as e:
                attempts += 1
                if attempts >= MAX_RECOVERY_ATTEMPTS:
                    self.note(
                        "lost",
                        f"{st}: LOST seq {got + 1}..{upto}: not recovered after {attempts} attempts ({e})",
                        station=st,
                        first=got + 1,
                        last=upto,
                        error=str(e),
                    )
                else:
                    still.append([st, got, upto, attempts])
        self.pending = still

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def watch(
    address: str,
    *,
    query: str | None = None,
    station: str | None = None,
    count: int | None = None,
    timeout_s: float | None = None,
    out: Callable[[str], Any] = print,
    json_lines: bool = False,
    server_key: str | Path | None = None,
    client_secret: str | Path | None = None,
    status: Callable[[str], Any] | None = None,
) -> int:
    """Subscribe to a daemon's verdicts and print them; see the module docstring.

    `count`: stop after that many verdict lines (live + recovered); `timeout_s`:
    stop after that long.  CURVE: `server_key` (the daemon's public ``.key``)
    and `client_secret` (this client's ``.key_secret``, whose ``.key`` is in the
    daemon's clients dir).  `status` gets what the watch is waiting for and
    why it stops (default: stderr, so stdout stays verdicts only). Returns 0,
    or 1 if it timed out without receiving any message.
    """
    if status is None:
        def status(text: str) -> None:
            print(text, file=sys.stderr, flush=True)

    ctx = zmq.Context()
    w = _Watcher(address, query, station, out, json_lines, (server_key, client_secret), timeout_s)
    sub = ctx.socket(zmq.SUB)
    sub.linger = 0
    sub.rcvhwm = 100_000
    sub.setsockopt(zmq.HEARTBEAT_IVL, 2000)
    sub.setsockopt(zmq.HEARTBEAT_TIMEOUT, 6000)
    timed_out = False
    try:
        if server_key or client_secret:
            from inspectd.publish.keys import client_options

            if not (server_key and client_secret):
                raise ValueError("CURVE needs both server_key and client_secret")
            client_options(sub, server_key, client_secret)
        topic = f"verdict.{station}" if station else "verdict."
        sub.setsockopt_string(zmq.SUBSCRIBE, topic)
        sub.setsockopt_string(zmq.SUBSCRIBE, "heartbeat")
        sub.connect(address)
        t0 = time.monotonic()
        deadline = None if timeout_s is None else t0 + timeout_s
        hinted = False
        until = f", for {timeout_s:g} s" if timeout_s is not None else ""
        status(f"watching {address}{until}: waiting for the daemon's heartbeat (one a second) and its verdicts")
        while count is None or w.printed < count:
            if not w.got_message and not hinted and time.monotonic() - t0 > SILENT_HINT_S:
                hinted = True
                status(
                    f"nothing from {address} in {SILENT_HINT_S:g} s: is a daemon running with this --pub address "
                    "(inspectd run --pub ...)? Behind CURVE, pass --server-key and --client-secret"
                )
            wait = 0.5
            if deadline is not None:
                wait = min(wait, deadline - time.monotonic())
                if wait <= 0:
                    timed_out = True
                    break
            if not sub.poll(int(wait * 1000) + 1):
                continue
            frames = sub.recv_multipart()
            if len(frames) != 2:
                w.note("bad_message", f"message with {len(frames)} frames ignored", frames=len(frames))
                continue
            if not w.got_message:
                status(f"receiving from {address}")
            w.got_message = True
            t, payload = frames
            if t == b"heartbeat":
                w.on_heartbeat(payload)
            elif t.startswith(b"verdict."):
                w.on_verdict(payload)
    except KeyboardInterrupt:
        pass
    finally:
        w.close()
        sub.close(0)
        ctx.term()
    if timed_out:
        if w.got_message:
            status(f"stopped after {timeout_s:g} s ({w.printed} verdicts)")
        else:
            status(f"gave up after {timeout_s:g} s: no heartbeat or verdict from {address}")
    return 1 if timed_out and not w.got_message else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m inspectd.publish.watch",
        description="Print an inspectd daemon's verdicts live; notice seq gaps and recover them.",
    )
    ap.add_argument("address", help="the daemon's PUB address, e.g. tcp://127.0.0.1:5556")
    ap.add_argument("--query", help="query (ROUTER) address; default: learnt from the heartbeats")
    ap.add_argument("--station", help="only this station's verdicts")
    ap.add_argument("--count", type=int, help="stop after this many verdicts")
    ap.add_argument("--timeout", type=float, help="stop after this many seconds")
    ap.add_argument("--json", action="store_true", help="JSON lines (events) instead of text")
    ap.add_argument("--server-key", type=Path, help="CURVE: the daemon's public key file (.key)")
    ap.add_argument("--client-secret", type=Path, help="CURVE: this client's secret key file (.key_secret)")
    a = ap.parse_args(argv)
    return watch(
        a.address,
        query=a.query,
        station=a.station,
        count=a.count,
        timeout_s=a.timeout,
        out=lambda s: print(s, flush=True),
        json_lines=a.json,
        server_key=a.server_key,
        client_secret=a.client_secret,
    )


if __name__ == "__main__":
    sys.exit(main())
