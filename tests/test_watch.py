"""`watch`: live lines, gap detection and recovery through the query socket, stop conditions.

Loss is made real: the watcher subscribes through a forwarder (SUB -> PUB on
loopback) that drops chosen verdicts on their way, as a congested network or
a subscriber past its high-water mark would.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import structlog
import zmq

from inspectd.config import PublishConfig
from inspectd.publish import Publisher
from inspectd.publish.watch import _Watcher, format_verdict, watch
from inspectd.verdict import Verdict

pytestmark = pytest.mark.timeout(60)

STATION = "L1-S1"
REPO = Path(__file__).resolve().parents[1]


def make_cfg(tmp_path: Path, name: str = "journal.sqlite", **kw) -> PublishConfig:
    base = dict(
        pub="tcp://127.0.0.1:*", query="tcp://127.0.0.1:*", journal=tmp_path / name, heartbeat_s=0.05, archive_dir=None
    )
    base.update(kw)
    return PublishConfig(**base)


def quiet():
    return structlog.wrap_logger(structlog.testing.CapturingLogger(), processors=[])


def mk(i: int, result: str = "OK", **kw) -> Verdict:
    return Verdict(seq=0, frame_id=f"f{i:06d}", part_id=f"C-{i:06d}", station=STATION, result=result, **kw)


class Forwarder:
    """SUB from upstream publisher(s) -> PUB to the watcher, dropping verdicts whose seq is in `drop`."""

    def __init__(self, upstream: str, drop: set[int] = frozenset()):
        self.drop = set(drop)
        self.dropped: list[int] = []
        self._cmd: queue.SimpleQueue = queue.SimpleQueue()
        self._cmd.put(upstream)
        self._ready: queue.SimpleQueue = queue.SimpleQueue()
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        self.address = self._ready.get(timeout=5)

    def connect(self, upstream: str) -> None:
        self._cmd.put(upstream)

    def _run(self):
        ctx = zmq.Context()
        sub, pub = ctx.socket(zmq.SUB), ctx.socket(zmq.PUB)
        sub.linger = pub.linger = 0
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        pub.bind("tcp://127.0.0.1:*")
        self._ready.put(pub.getsockopt_string(zmq.LAST_ENDPOINT))
        try:
            while not self._stop.is_set():
                while not self._cmd.empty():
                    sub.connect(self._cmd.get())
                if not sub.poll(20):
                    continue
                topic, payload = sub.recv_multipart()
                if topic.startswith(b"verdict."):
                    seq = json.loads(payload)["seq"]
                    if seq in self.drop:
                        self.dropped.append(seq)
                        continue
                pub.send_multipart([topic, payload])
        finally:
            sub.close()
            pub.close()
            ctx.term()

    def close(self):
        self._stop.set()
        self._t.join(5)


class Bg:
    """watch() in a thread, its lines collected."""

    def __init__(self, address: str, **kw):
        self.lines: list[str] = []
        self.rc: list[int] = []
        kw.setdefault("timeout_s", 20)
        self.t = threading.Thread(target=lambda: self.rc.append(watch(address, out=self.lines.append, **kw)), daemon=True)
        self.t.start()

    def wait_for(self, pred, timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if any(pred(s) for s in list(self.lines)):
                return
            time.sleep(0.01)
        raise AssertionError(f"not seen within {timeout_s} s; lines: {self.lines}")

    def connected(self) -> None:
        self.wait_for(lambda s: s.startswith("! connected") or '"event":"connected"' in s)

    def join(self, timeout_s: float = 20.0) -> int:
        self.t.join(timeout_s)
        assert not self.t.is_alive(), "watch() did not stop"
        return self.rc[0]


def verdict_lines(lines: list[str]) -> list[tuple[int, bool]]:
    """(seq, recovered) for each verdict line."""
    out = []
    for s in lines:
        if s.startswith("!"):
            continue
        rec = s.startswith("[recovered] ")
        out.append((int(s.removeprefix("[recovered] ").split()[0]), rec))
    return out


def test_watch_prints_live_verdicts_and_stops_on_count(tmp_path):
    with Publisher(make_cfg(tmp_path), STATION, log=quiet()) as pub:
        w = Bg(pub.pub_address, count=3)
        w.connected()
        for i in range(5):
            pub.publish(
                mk(
                    i,
                    "NG" if i == 1 else "OK",
                    reasons=[{"code": "OVERHANG_MIN", "index": 7, "value_mm": 0.31, "limit_mm": 0.45}] if i == 1 else [],
                    overhang_mm={"min": 0.31 if i == 1 else 0.92, "mean": 1.2, "max": 1.7},
                    t_acquired_ns=time.time_ns() - 40_000_000,
                )
            )
        assert w.join() == 0
    assert verdict_lines(w.lines) == [(1, False), (2, False), (3, False)]
    ng = [s for s in w.lines if " NG " in s][0]
    for part in ("L1-S1", "frame=f000001", "part=C-000001", "OVERHANG_MIN#7 0.31mm<0.45", "min 0.31mm"):
        assert part in ng, ng
    assert ng.rstrip().endswith("ms") and "-ms" not in ng


def test_watch_recovers_a_gap_and_a_lost_tail(tmp_path):
    with Publisher(make_cfg(tmp_path), STATION, log=quiet()) as pub:
        fwd = Forwarder(pub.pub_address, drop={4, 5, 6, 10})
        try:
            w = Bg(fwd.address, count=10)  # query address learnt from the heartbeats
            w.connected()
            for i in range(10):
                pub.publish(mk(i))
            assert w.join() == 0
        finally:
            fwd.close()
    assert sorted(fwd.dropped) == [4, 5, 6, 10]
    assert verdict_lines(w.lines) == [
        (1, False), (2, False), (3, False),
        (4, True), (5, True), (6, True),  # noticed at 7, fetched with `since`
        (7, False), (8, False), (9, False),
        (10, True),  # nothing came after 10: the heartbeat's last_seq revealed it
    ]
    notes = [s for s in w.lines if s.startswith("! ")]
    assert any("missed 3 verdicts (seq 4..6)" in s for s in notes), notes
    assert any("missed 1 verdict (seq 10..10)" in s for s in notes), notes
    rec = [s for s in w.lines if s.startswith("[recovered]")]
    assert all("frame=f0000" in s for s in rec)


def test_watch_with_explicit_query_and_json_lines(tmp_path):
    with Publisher(make_cfg(tmp_path), STATION, log=quiet()) as pub:
        fwd = Forwarder(pub.pub_address, drop={2})
        try:
            w = Bg(fwd.address, query=pub.query_address, station=STATION, count=3, json_lines=True)
            w.connected()
            sent = [pub.publish(mk(i)) for i in range(3)]
            assert w.join() == 0
        finally:
            fwd.close()
    evs = [json.loads(s) for s in w.lines]
    assert evs[0]["event"] == "connected" and evs[0]["query"] == pub.query_address
    vs = [e for e in evs if e["event"] == "verdict"]
    assert [(e["verdict"]["seq"], e["recovered"]) for e in vs] == [(1, False), (2, True), (3, False)]
    assert [Verdict.model_validate(e["verdict"]) for e in vs] == sent
    assert any(e["event"] == "gap" and (e["first"], e["last"]) == (2, 2) for e in evs)


def test_watch_notices_a_restart_on_another_journal(tmp_path):
    a = Publisher(make_cfg(tmp_path, "a.sqlite"), STATION, log=quiet())
    a.start()
    fwd = Forwarder(a.pub_address)
    try:
        for i in range(5):  # journal a already at seq 5
            a.publish(mk(i))
        time.sleep(0.3)  # let those pass the forwarder: the watcher starts after them
        w = Bg(fwd.address, count=4)
        w.connected()
        a.publish(mk(5))
        a.publish(mk(6))
        w.wait_for(lambda s: s.split()[0] == "7")
        a.close()
        with Publisher(make_cfg(tmp_path, "b.sqlite"), STATION, log=quiet()) as b:
            fwd.connect(b.pub_address)
            w.wait_for(lambda s: "another journal" in s)
            b.publish(mk(100))
            b.publish(mk(101))
            assert w.join() == 0
    finally:
        a.close()
        fwd.close()
    assert verdict_lines(w.lines) == [(6, False), (7, False), (1, False), (2, False)]
    assert not any(s.startswith("[recovered]") for s in w.lines)


def test_watcher_logic_seq_backwards_and_pending_gap_without_query():
    lines: list[str] = []
    w = _Watcher("tcp://127.0.0.1:1", None, None, lines.append, False, (None, None), 1.0)
    v = lambda seq: json.dumps({"seq": seq, "station": STATION, "frame_id": f"f{seq}", "result": "OK"}).encode()  # noqa: E731
    w.on_verdict(v(5))
    w.on_verdict(v(6))
    w.on_verdict(v(2))  # went back: another journal
    w.on_verdict(v(4))  # gap 3..3, no query address known yet: pending
    assert any("seq went back from 6 to 2" in s for s in lines)
    assert any("missed 1 verdict (seq 3..3)" in s and "waiting for a heartbeat" in s for s in lines)
    assert w.pending == [[STATION, 2, 3, 0]]
    w.on_verdict(b"{broken")
    assert lines[-1].startswith("! unreadable verdict")
    assert verdict_lines(lines) == [(5, False), (6, False), (2, False), (4, False)]


def test_format_verdict_handles_every_result():
    err = {"seq": 3, "station": "S", "frame_id": "x", "result": "ERROR",
           "reasons": [{"code": "NO_STACK", "message": "no electrode stack found in the frame " * 3}]}
    s = format_verdict(err)
    assert "NO_STACK: no electrode stack" in s and s.count("...") == 1 and "min -" in s and "part=-" in s
    cnt = {"seq": 4, "station": "S", "frame_id": "y", "result": "NG",
           "reasons": [{"code": "COUNT_MISMATCH", "value": 30, "limit": 31}], "latency_ms": 12.25}
    assert "COUNT_MISMATCH 30 (limit 31)" in format_verdict(cnt, recovered=True)
    assert format_verdict(cnt, recovered=True).startswith("[recovered] ")


def test_watch_times_out_with_1_when_nothing_arrives(ctx_pub):
    t0 = time.monotonic()
    lines: list[str] = []
    assert watch(ctx_pub, timeout_s=0.3, out=lines.append) == 1
    assert time.monotonic() - t0 < 2 and lines == []


def test_watch_times_out_with_0_after_heartbeats_only(tmp_path):
    with Publisher(make_cfg(tmp_path), STATION, log=quiet()) as pub:
        lines: list[str] = []
        assert watch(pub.pub_address, timeout_s=0.5, out=lines.append) == 0
    assert lines and lines[0].startswith("! connected: L1-S1 last seq 0")


@pytest.fixture
def ctx_pub():
    """A bound PUB socket that never sends anything."""
    ctx = zmq.Context()
    s = ctx.socket(zmq.PUB)
    s.linger = 0
    s.bind("tcp://127.0.0.1:*")
    yield s.getsockopt_string(zmq.LAST_ENDPOINT)
    s.close()
    ctx.term()


def test_python_dash_m_watch(tmp_path):
    with Publisher(make_cfg(tmp_path), STATION, log=quiet()) as pub:
        env = dict(os.environ, PYTHONPATH=str(REPO))
        p = subprocess.Popen(
            [sys.executable, "-m", "inspectd.publish.watch", pub.pub_address, "--count", "2", "--timeout", "30"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO,
        )
        try:
            first = p.stdout.readline()  # blocks until it has heard a heartbeat (bounded by --timeout)
            assert first.startswith("! connected: L1-S1"), first + p.stderr.read()
            pub.publish(mk(1))
            pub.publish(mk(2, "NG"))
            out, err = p.communicate(timeout=30)
        finally:
            if p.poll() is None:
                p.kill()
    assert p.returncode == 0, err
    assert verdict_lines(out.splitlines()) == [(1, False), (2, False)]
