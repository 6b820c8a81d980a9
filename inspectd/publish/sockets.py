"""The publisher's server sockets: options, CURVE security, address checks, the threads that own them.

Split from publisher.py so that what the PUB and ROUTER sockets have in common
(ZMTP heartbeats, CURVE server keys, the zmq.auth thread and its log, the
warning for a plain-text bind beyond loopback, the start-up handshake of the
thread that binds and owns each socket) sits in one place, apart from what
the threads do with them (sender.py, query_server.py).
"""

from __future__ import annotations

import queue
import threading
import time
from pathlib import Path

import zmq
from zmq.auth.thread import ThreadAuthenticator

from inspectd.config import PublishConfig
from inspectd.publish.errors import PublishError
from inspectd.publish.keys import CurveKeyError, check_clients_dir, load_secret
from inspectd.osthread import named_thread

LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")


def host(endpoint: str) -> str | None:
    """The host part of a ``tcp://`` endpoint; None for any other transport."""
    if not endpoint.startswith("tcp://"):
        return None
    hostport = endpoint[len("tcp://") :]
    return hostport.rsplit(":", 1)[0]


class PlaintextBeyondLoopback(ValueError):
    """A socket would be reachable beyond loopback without CURVE, and the station file did not allow it."""


def check_beyond_loopback(
    log, addresses: tuple[tuple[str, str], ...], curve: tuple[bytes, bytes] | None, allow: bool
) -> None:
    """Refuse (PlaintextBeyondLoopback) any (socket name, address) reachable beyond loopback without CURVE,
    unless `allow` (`[publish] allow_plaintext_beyond_loopback`): then log it, at every start."""
    if curve is not None:
        return
    for name, addr in addresses:
        h = host(addr)
        if h is None or h in LOOPBACK:
            continue
        if not allow:
            raise PlaintextBeyondLoopback(
                f"the {name} socket {addr} would be reachable beyond this machine without encryption or "
                "authentication: set [publish] curve_secret_key and curve_clients_dir (inspectd keys), bind to "
                "127.0.0.1, or set [publish] allow_plaintext_beyond_loopback = true"
            )
        log.warning("bound_beyond_loopback_without_curve", socket=name, address=addr,
                    msg="allowed by [publish] allow_plaintext_beyond_loopback")  # fmt: skip


def curve_setup(cfg: PublishConfig, log) -> tuple[tuple[bytes, bytes] | None, Path | None]:
    """The station's CURVE server keys and clients directory ((None, None) without CURVE), checked,
    and the beyond-loopback policy applied to pub and query; PublishError naming what is wrong."""
    curve, clients = None, None
    try:
        if cfg.curve_secret_key is not None:
            curve = load_secret(cfg.curve_secret_key, "CURVE secret key (publish.curve_secret_key)")
            clients = check_clients_dir(cfg.curve_clients_dir)
        check_beyond_loopback(log, (("pub", cfg.pub), ("query", cfg.query)), curve, cfg.allow_plaintext_beyond_loopback)
    except (CurveKeyError, PlaintextBeyondLoopback) as e:
        raise PublishError(str(e)) from e
    return curve, clients


def server_socket(ctx: zmq.Context, kind: int, curve: tuple[bytes, bytes] | None) -> zmq.Socket:
    """A socket of `kind` with the publisher's options; a CURVE server when `curve` (public, secret) is given."""
    s = ctx.socket(kind)
    s.linger = 0
    # Bounded input: what arrives on a PUB is subscriptions, on the ROUTER requests; a peer sending
    # more is disconnected by libzmq before it is buffered (one 400 MB message once grew the RSS by 450 MB).
    s.setsockopt(zmq.MAXMSGSIZE, 65536 if kind == zmq.PUB else 1 << 20)
    if kind == zmq.PUB:
        # Dead peers (a PLC gateway that lost power) by TCP keepalive, which the peer's kernel answers
        # even while its application is not reading. ZMTP heartbeats are not used here: their PINGs
        # queue behind the verdicts a paused subscriber has not read, its PONG never comes, and it was
        # cut off after 6 s with most of its 10 000-message high-water mark unused (measured with
        # pyzmq: 82 of 400 50 kB messages arrived after a 9 s pause with heartbeats, 400 without).
        for opt, value in ((zmq.TCP_KEEPALIVE, 1), (zmq.TCP_KEEPALIVE_IDLE, 10),
                           (zmq.TCP_KEEPALIVE_INTVL, 5), (zmq.TCP_KEEPALIVE_CNT, 3)):  # fmt: skip
            s.setsockopt(opt, value)
    else:
        # request/reply: a client reads its answer at once, so ZMTP heartbeats drop only dead peers
        s.setsockopt(zmq.HEARTBEAT_IVL, 2000)
        s.setsockopt(zmq.HEARTBEAT_TIMEOUT, 6000)
    if curve is not None:
        s.curve_publickey, s.curve_secretkey = curve
        s.curve_server = True
    return s


def start_socket_thread(name: str, target, threads: list[threading.Thread]) -> str:
    """Start daemon thread `name` running target(ready), add it to `threads`, and return its bound endpoint.

    A ZeroMQ socket is used by one thread only, so the thread binds its own
    socket and puts the endpoint, or the exception that stopped it, on `ready`.
    """
    ready: queue.SimpleQueue = queue.SimpleQueue()
    t = named_thread(target, name, args=(ready,))
    t.start()
    threads.append(t)
    try:
        res = ready.get(timeout=10)
    except queue.Empty as e:
        raise PublishError(f"{name}: thread did not start within 10 s") from e
    if isinstance(res, BaseException):
        raise res
    return res


def start_authenticator(ctx: zmq.Context, clients: Path, log, metrics) -> ThreadAuthenticator:
    """Start zmq.auth's thread on `ctx`, admitting the CURVE clients whose public keys are in `clients`."""
    auth = ThreadAuthenticator(ctx, log=AuthLog(log, metrics))
    auth.start()
    auth.configure_curve(domain="*", location=str(clients))
    return auth


class AuthLog:
    """zmq.auth logs through the stdlib logging API; route it to structlog."""

    REPEAT_S = 60.0  # a refused client retries every ~100 ms: log each one once a minute

    def __init__(self, log, metrics) -> None:
        self._log = log
        self._metrics = metrics
        self._seen: dict[str, float] = {}

    def debug(self, msg, *args, **kw) -> None:
        text = _fmt(msg, args)
        if text.startswith("DENIED"):  # zmq.auth reports refusals at debug level
            self._metrics.error("curve_denied")
            now = time.monotonic()
            if now - self._seen.get(text, -self.REPEAT_S) >= self.REPEAT_S:
                if len(self._seen) > 1000:
                    self._seen.clear()
                self._seen[text] = now
                self._log.warning("curve_client_denied", detail=text, repeats_logged_every_s=self.REPEAT_S)

    def info(self, msg, *args, **kw) -> None:
        pass

    def warning(self, msg, *args, **kw) -> None:
        self._log.warning("curve_auth", message=_fmt(msg, args))

    warn = warning

    def error(self, msg, *args, **kw) -> None:
        self._log.error("curve_auth", message=_fmt(msg, args))

    def exception(self, msg, *args, **kw) -> None:
        self._log.error("curve_auth", message=_fmt(msg, args), exc_info=True)

    def getChild(self, name):  # noqa: N802 - logging API
        return self


def _fmt(msg, args) -> str:
    try:
        return str(msg) % args if args else str(msg)
    except (TypeError, ValueError):
        return f"{msg} {args}"
