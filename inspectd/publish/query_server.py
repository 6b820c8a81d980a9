"""The ``inspectd-query`` thread: owns the ROUTER socket that answers ``since`` / ``health`` / ``stats``.

Split from publisher.py so the query-serving side reads on its own: what the
thread binds (ROUTER, an inproc PAIR for shutdown, a read-only journal
connection of its own), how it polls them, how one request is answered and
how close() stops it.  The protocol itself is inspectd/publish/query.py.
"""

from __future__ import annotations

import queue
from collections.abc import Callable

import zmq

from inspectd.config import PublishConfig
from inspectd.publish import query as q
from inspectd.publish.errors import PublishError
from inspectd.publish.journal import Journal
from inspectd.publish.sockets import server_socket


def run_query_server(
    ready: queue.SimpleQueue,
    *,
    ctx: zmq.Context,
    cfg: PublishConfig,
    curve: tuple[bytes, bytes] | None,
    ctrl_address: str,
    station: str,
    info: Callable[[], dict],
    on_bound: Callable[[str], None],
    metrics,
    log,
) -> None:
    """Bind ROUTER to cfg.query, put the endpoint (or the failure) on `ready`, then answer until stopped."""
    try:
        router = server_socket(ctx, zmq.ROUTER, curve)
        router.bind(cfg.query)
        endpoint = router.getsockopt_string(zmq.LAST_ENDPOINT)
        ctrl = ctx.socket(zmq.PAIR)
        ctrl.linger = 0
        ctrl.bind(ctrl_address)
        journal = Journal(cfg.journal, readonly=True)
    except zmq.ZMQError as e:
        ready.put(PublishError(f"cannot bind query socket to {cfg.query}: {e}"))
        return
    except BaseException as e:  # noqa: BLE001 - reported to start()
        ready.put(e)
        return
    on_bound(endpoint)
    ready.put(endpoint)
    poller = zmq.Poller()
    poller.register(router, zmq.POLLIN)
    poller.register(ctrl, zmq.POLLIN)
    try:
        while True:
            events = dict(poller.poll())
            if ctrl in events:
                break
            if router in events:
                for _ in range(64):  # drain a burst, then look at ctrl again
                    try:
                        frames = router.recv_multipart(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    try:
                        answer(router, frames, journal, station=station, info=info, metrics=metrics, log=log)
                    except Exception as e:  # noqa: BLE001 - the query thread must survive
                        metrics.error("query")
                        log.error("query_failed", error=f"{type(e).__name__}: {e}")
    finally:
        router.close(linger=0)
        ctrl.close(linger=0)
        journal.close()


def answer(
    router: zmq.Socket, frames: list[bytes], journal: Journal, *, station: str, info: Callable[[], dict], metrics, log
) -> None:
    """Answer one request (`frames` as ROUTER received them); a reply that cannot be sent is dropped."""
    envelope, body = q.split_envelope(frames)
    op, ok, reply = q.handle(body, journal=journal, station=station, info=info)
    metrics.query(op, ok)
    if not ok:
        log.warning("query_rejected", op=op, reply=reply[:200].decode(errors="replace"))
    try:
        router.send_multipart(envelope + [reply], flags=zmq.NOBLOCK)
    except zmq.ZMQError as e:  # peer gone or its queue full: it will ask again
        metrics.error("query_reply")
        log.warning("query_reply_dropped", op=op, error=str(e))


def stop_query_server(ctx: zmq.Context, ctrl_address: str) -> None:
    """Tell the query thread listening on `ctrl_address` to stop (best effort: it may never have started)."""
    try:
        ctrl = ctx.socket(zmq.PAIR)
        ctrl.linger = 1000  # let "stop" reach the query thread before term()
        ctrl.connect(ctrl_address)
        ctrl.send(b"stop", zmq.NOBLOCK)
        ctrl.close()
    except zmq.ZMQError:
        pass
