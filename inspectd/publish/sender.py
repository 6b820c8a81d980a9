"""The ``inspectd-pub`` thread: owns the PUB socket; queued verdicts onto it, a heartbeat when due.

Split from publisher.py so the thread that owns the PUB socket reads on its
own: what it binds, its heartbeat cadence, what it does when a send fails,
how it drains on close.  The state it shares with the caller's threads stays
on Publisher: each heartbeat comes from `heartbeat()`, and `on_sent(seq)`
records the last seq put on the wire (a heartbeat's ``last_seq`` never runs
ahead of the verdicts sent).
"""

from __future__ import annotations

import json
import queue
import time
from collections.abc import Callable

import zmq

from inspectd.config import PublishConfig
from inspectd.publish.errors import PublishError
from inspectd.publish.sockets import server_socket

HEARTBEAT_SCHEMA = "inspectd.heartbeat/1"
HEARTBEAT_TOPIC = b"heartbeat"
FLUSH_MS = 250  # how long close() lets queued messages drain before dropping them
STOP = object()  # put on the send queue by close(): the sender sends what is before it, then exits


def run_sender(
    ready: queue.SimpleQueue,
    *,
    ctx: zmq.Context,
    cfg: PublishConfig,
    curve: tuple[bytes, bytes] | None,
    q: queue.SimpleQueue,
    topic: bytes,
    heartbeat: Callable[[], dict],
    on_bound: Callable[[str], None],
    on_sent: Callable[[int], None],
    metrics,
    log,
) -> None:
    """Bind PUB to cfg.pub, put the endpoint (or the failure) on `ready`, then send until STOP."""
    try:
        pub = server_socket(ctx, zmq.PUB, curve)
        pub.sndhwm = cfg.sndhwm
        pub.bind(cfg.pub)
        endpoint = pub.getsockopt_string(zmq.LAST_ENDPOINT)
    except zmq.ZMQError as e:
        ready.put(PublishError(f"cannot bind PUB socket to {cfg.pub}: {e}"))
        return
    except BaseException as e:  # noqa: BLE001 - reported to start()
        ready.put(e)
        return
    ready.put(endpoint)
    on_bound(endpoint)
    hb_s = cfg.heartbeat_s
    next_hb = time.monotonic()
    while True:
        now = time.monotonic()
        if now >= next_hb:
            send_heartbeat(pub, heartbeat(), metrics, log)
            next_hb = max(next_hb + hb_s, now + hb_s / 2)  # steady cadence, no burst after a stall
        try:
            item = q.get(timeout=max(0.0, next_hb - time.monotonic()))
        except queue.Empty:
            continue
        if item is STOP:
            break
        seq, payload = item
        try:
            pub.send_multipart([topic, payload], flags=zmq.NOBLOCK)
            on_sent(seq)
        except zmq.Again:  # PUB drops rather than blocks; only under XPUB_NODROP-like setups
            metrics.error("pub_dropped")
            on_sent(seq)
        except Exception as e:  # noqa: BLE001 - the sender must survive
            metrics.error("pub_send")
            log.error("pub_send_failed", seq=seq, error=f"{type(e).__name__}: {e}")
    pub.close(linger=FLUSH_MS)


def send_heartbeat(pub: zmq.Socket, hb: dict, metrics, log) -> None:
    """Send one heartbeat without blocking; a failure is counted and logged, not raised."""
    try:
        pub.send_multipart([HEARTBEAT_TOPIC, json.dumps(hb, separators=(",", ":")).encode()], flags=zmq.NOBLOCK)
        metrics.heartbeat()
    except zmq.ZMQError as e:
        metrics.error("heartbeat")
        log.error("heartbeat_failed", error=str(e))
