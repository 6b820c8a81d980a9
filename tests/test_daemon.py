"""The daemon as it runs on a station: a real subprocess, real ZeroMQ sockets, a real SQLite journal.

Frames are simulated 1000² dumps replayed as a live source; tips come from the
label oracle (ground truth in the sidecars), so verdicts are real OK/NG. A
slow oracle (a module written into tmp and named with --tips MODULE:FACTORY)
makes frames take long enough to be in flight when a worker is killed, or to
miss a tight deadline.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import zmq

from inspectd.config import CornerConfig
from inspectd.sim import SimOptions
from inspectd.sim.dump import simulate_dump

REPO = Path(__file__).resolve().parents[1]
N_GOOD = 12
BAD = "sim-0003-00005-bad"  # sorts between frames 5 and 6
FRAME_IDS = [f"sim-0003-{i:05d}" for i in range(6)] + [BAD] + [f"sim-0003-{i:05d}" for i in range(6, N_GOOD)]

SLOW_TIPS = '''
import os, time
from inspectd.tips.detector import LabelOracle

class SlowOracle(LabelOracle):
    """The label oracle, taking INSPECTD_TEST_DETECT_S seconds per frame."""
    name = "oracle:slow"

    def detect(self, frame, img8, roi):
        time.sleep(float(os.environ.get("INSPECTD_TEST_DETECT_S", "0.5")))
        return super().detect(frame, img8, roi)


class FlakyOracle(LabelOracle):
    """The label oracle whose engine raises on every third frame (a CUDA error, a corrupt model page)."""
    name = "oracle:flaky"

    def detect(self, frame, img8, roi):
        if int(frame.frame_id.rsplit("-", 1)[-1]) % 3 == 1:
            raise RuntimeError("engine fault on this frame")
        return super().detect(frame, img8, roi)
'''


# ---------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def dump(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("dump")
    simulate_dump(d, N_GOOD, 3, SimOptions(size=1000, bit_depth=8, defect_rate=0.3), station="L1-S1")
    (d / f"{BAD}.tiff").write_bytes(b"II*\x00this is not a TIFF")
    return d


@pytest.fixture(scope="module")
def slow_tips(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("slowtips")
    (d / "slowtips.py").write_text(SLOW_TIPS)
    return d


class Daemon:
    """`python -m inspectd.pipeline.run` with its JSON log lines parsed as they come."""

    def __init__(self, cwd: Path, *args: str, env: dict | None = None, pythonpath: Path | None = None):
        e = dict(os.environ)
        e["PYTHONPATH"] = os.pathsep.join(p for p in (str(pythonpath or ""), str(REPO)) if p)
        e.pop("NOTIFY_SOCKET", None)
        e.update(env or {})
        cmd = [sys.executable, "-m", "inspectd.pipeline.run", "--pub", "tcp://127.0.0.1:*",
               "--query", "tcp://127.0.0.1:*", "--metrics-port", "0", "--verdict-log", "all", *args]  # fmt: skip
        self.proc = subprocess.Popen(cmd, cwd=cwd, env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.events: list[dict] = []
        self.raw: list[str] = []
        self.lines: list[str] = []
        self.broken = 0
        self._cond = threading.Condition()
        self._eof = 0
        threading.Thread(target=self._pump, args=(self.proc.stderr, True), daemon=True).start()
        threading.Thread(target=self._pump, args=(self.proc.stdout, False), daemon=True).start()

    def _pump(self, stream, is_log: bool) -> None:
        for line in stream:
            with self._cond:
                if is_log:
                    self.raw.append(line)
                    try:
                        self.events.append(json.loads(line))
                    except ValueError:  # a JSON line spliced with another: said in every failure message
                        self.broken += line.lstrip().startswith("{")  # (native libraries may print plain text)
                else:
                    self.lines.append(line.strip())
                self._cond.notify_all()
        with self._cond:
            self._eof += 1
            self._cond.notify_all()

    def wait_for(self, pred, timeout: float, what: str):
        """The first log event matching `pred` (looking at each event once), within `timeout`."""
        end = time.monotonic() + timeout
        i = 0
        with self._cond:
            while True:
                while i < len(self.events):
                    if pred(self.events[i]):
                        return self.events[i]
                    i += 1
                left = end - time.monotonic()
                if left <= 0 or self._eof == 2:
                    raise AssertionError(
                        f"no {what} within {timeout} s ({self.broken} broken JSON log lines); log tail:\n{self.log_tail()}"
                    )
                self._cond.wait(min(left, 0.5))

    def event(self, name: str, timeout: float = 30.0, **fields):
        return self.wait_for(
            lambda x: x.get("event") == name and all(x.get(k) == v for k, v in fields.items()), timeout, name
        )

    def all(self, name: str) -> list[dict]:
        with self._cond:
            return [x for x in self.events if x.get("event") == name]

    def addresses(self, timeout: float = 60.0) -> dict:
        end = time.monotonic() + timeout
        with self._cond:
            while not self.lines:
                if time.monotonic() > end or self.proc.poll() is not None:
                    raise AssertionError(f"daemon printed no address line; log tail:\n{self.log_tail()}")
                self._cond.wait(0.2)
            words = self.lines[0].split()
        return {k: words[words.index(k) + 1] for k in ("pub", "query", "metrics", "trigger") if k in words}

    def log_tail(self, n: int = 25) -> str:
        return "".join(self.raw[-n:])

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise AssertionError(f"daemon did not exit within {timeout} s; log tail:\n{self.log_tail()}") from None

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


class Sub:
    """A real SUB socket on the daemon's PUB; `pump()` files what arrived into verdicts/heartbeats."""

    def __init__(self, ctx: zmq.Context, address: str, topics=(b"verdict.", b"heartbeat"), **opts):
        self.s = ctx.socket(zmq.SUB)
        self.s.linger = 0
        for k, v in opts.items():
            self.s.setsockopt(getattr(zmq, k), v)
        for t in topics:
            self.s.subscribe(t)
        self.s.connect(address)
        self.verdicts: list[dict] = []
        self.heartbeats: list[dict] = []

    def pump(self, timeout: float) -> None:
        if self.s.poll(int(timeout * 1000)):
            while True:
                try:
                    topic, payload = self.s.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    return
                (self.heartbeats if topic == b"heartbeat" else self.verdicts).append(json.loads(payload))

    def until(self, pred, timeout: float, what: str, daemon: Daemon | None = None) -> None:
        end = time.monotonic() + timeout
        while not pred(self):
            if time.monotonic() > end:
                tail = daemon.log_tail() if daemon else ""
                raise AssertionError(f"no {what} within {timeout} s ({len(self.verdicts)} verdicts)\n{tail}")
            self.pump(0.2)

    def close(self) -> None:
        self.s.close(0)


def journal_rows(path: Path) -> list[dict]:
    with sqlite3.connect(path) as db:
        return [json.loads(r[0]) for r in db.execute("SELECT json FROM verdicts ORDER BY seq")]


def journal_late(path: Path) -> list[tuple[int, dict]]:
    with sqlite3.connect(path) as db:
        return [(s, json.loads(j)) for s, j in db.execute("SELECT published_seq, json FROM late ORDER BY id")]


def shm_segments(pid: int) -> list[str]:
    return [p.name for p in Path("/dev/shm").glob(f"inspectd-{pid}-*")]


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is not alive
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


@pytest.fixture
def zctx():
    ctx = zmq.Context()
    yield ctx
    ctx.destroy(linger=0)


# ---------------------------------------------------------------------------- a normal run, stopped by SIGTERM


@pytest.fixture(scope="module")
def first_run(dump, tmp_path_factory):
    """13 frames (one unreadable) at 10 fps, oracle tips; observed from every side, then SIGTERM."""
    tmp = tmp_path_factory.mktemp("run1")
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp / "notify.sock"))
    notify.settimeout(0.2)
    msgs: list[str] = []
    stop = threading.Event()

    def listen():  # as systemd does: read every datagram as it comes
        while not stop.is_set():
            try:
                msgs.append(notify.recv(4096).decode())
            except (TimeoutError, OSError):
                pass

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    journal = tmp / "journal.sqlite"
    d = Daemon(tmp, "--source", f"replay:{dump}?fps=10", "--tips", "labels", "--journal", str(journal),
               "--archive-dir", str(tmp / "ng"), "--workers", "2", "--verdict-log", "problems",
               env={"NOTIFY_SOCKET": str(tmp / "notify.sock"), "WATCHDOG_USEC": "400000"})  # fmt: skip
    ctx = zmq.Context()
    out: dict = {"journal": journal, "tmp": tmp}
    try:
        addr = d.addresses()
        out["addr"] = addr
        sub = Sub(ctx, addr["pub"])
        sub.until(lambda s: s.heartbeats, 5, "heartbeat", d)  # subscribed before any frame is acquired
        sub.until(lambda s: len(s.verdicts) >= len(FRAME_IDS), 60, "all verdicts", d)
        sub.until(lambda s: s.heartbeats[-1]["last_seq"] == len(FRAME_IDS), 5, "heartbeat with the last seq", d)
        out["verdicts"], out["heartbeats"] = list(sub.verdicts), list(sub.heartbeats)
        with urllib.request.urlopen(addr["metrics"], timeout=5) as r:
            out["metrics"] = r.read().decode()
        from inspectd.publish.query import QueryClient

        with QueryClient(addr["query"], timeout_s=5) as q:
            out["since"] = list(q.since(5))
        out["pid"] = d.proc.pid
        out["worker_pids"] = [e["pid"] for e in d.all("worker_ready")]
        d.proc.send_signal(signal.SIGTERM)
        out["rc"] = d.wait(30)
        out["events"], out["broken"] = d.events, d.broken
        time.sleep(0.3)
        out["notify"] = list(msgs)
        sub.close()
    finally:
        d.close()
        ctx.destroy(linger=0)
        stop.set()
        listener.join(2)
        notify.close()
    return out


def test_one_verdict_per_frame_in_acquisition_order_with_gap_free_seq(first_run):
    vs = first_run["verdicts"]
    assert [v["frame_id"] for v in vs] == FRAME_IDS
    assert [v["seq"] for v in vs] == list(range(1, len(FRAME_IDS) + 1))
    good = [v for v in vs if v["frame_id"] != BAD]
    assert {v["result"] for v in good} <= {"OK", "NG"} and {"OK", "NG"} <= {v["result"] for v in good}
    assert all(v["model"] == "oracle:labels" and v["station"] == "L1-S1" for v in vs)
    assert all(0 < v["latency_ms"] < 300 and v["t_published_ns"] > v["t_acquired_ns"] for v in good)


def test_unreadable_file_gets_error_and_the_stream_goes_on(first_run):
    bad = next(v for v in first_run["verdicts"] if v["frame_id"] == BAD)
    assert bad["result"] == "ERROR" and bad["reasons"][0]["code"] == "UNREADABLE_FRAME"
    assert f"{BAD}.tiff" in bad["reasons"][0]["message"]
    after = [v for v in first_run["verdicts"] if v["seq"] > bad["seq"]]
    assert len(after) == N_GOOD - 6 and all(v["result"] in ("OK", "NG") for v in after)


def test_heartbeats_carry_last_seq_and_health(first_run):
    hb = first_run["heartbeats"]
    assert len(hb) >= 2 and hb[-1]["last_seq"] == len(FRAME_IDS)
    assert [h["last_seq"] for h in hb] == sorted(h["last_seq"] for h in hb)
    health = hb[-1]["health"]
    assert health["workers"] == 2 and health["workers_ready"] == 2 and health["model"] == "oracle:labels"


def test_since_recovers_what_a_subscriber_missed(first_run):
    wire = {v["seq"]: v for v in first_run["verdicts"]}
    got = first_run["since"]
    assert [v["seq"] for v in got] == list(range(6, len(FRAME_IDS) + 1))
    assert all(v == wire[v["seq"]] for v in got)


def test_sigterm_drains_and_the_journal_holds_every_verdict(first_run):
    assert first_run["rc"] == 0
    assert journal_rows(first_run["journal"]) == first_run["verdicts"]
    ev = [e["event"] for e in first_run["events"]]
    assert "draining" in ev and "drained" in ev and ev[-1] == "daemon_exit"
    assert shm_segments(first_run["pid"]) == []
    assert not any(pid_alive(p) for p in first_run["worker_pids"])


def test_ng_frames_are_archived_with_overlays(first_run):
    ng = [v for v in first_run["verdicts"] if v["result"] == "NG"]
    files = {p.name for p in (first_run["tmp"] / "ng").iterdir()}
    for v in ng:
        stem = f"{v['seq']}-{v['frame_id']}"
        assert {f"{stem}.tiff", f"{stem}.jpg", f"{stem}.json"} <= files


def test_problem_verdicts_log_a_line_and_every_verdict_counts_in_metrics(first_run):
    """By default (`verdict_log = "problems"`) only ERROR and TIMEOUT verdicts get a log line, with the reason;
    OK and NG are counted (the journal and the PUB socket carry them). The other daemon tests run with "all"."""
    assert first_run["broken"] == 0  # main and workers share stderr: no JSON line broken
    lines = [e for e in first_run["events"] if e.get("event") == "verdict"]
    problems = [v for v in first_run["verdicts"] if v["result"] in ("ERROR", "TIMEOUT")]
    assert problems and len(problems) < len(first_run["verdicts"])
    assert [(e["frame_id"], e["seq"]) for e in lines] == [(v["frame_id"], v["seq"]) for v in problems]
    assert all({"result", "reasons", "latency_ms", "level", "timestamp", "message"} <= set(e) for e in lines)
    assert all(e["message"] for e in lines)
    m = first_run["metrics"]
    n_ok = sum(v["result"] == "OK" for v in first_run["verdicts"])
    assert f'inspectd_verdicts_total{{result="OK"}} {float(n_ok)}' in m
    assert f"inspectd_frames_in_total {float(len(FRAME_IDS))}" in m
    assert 'inspectd_errors_total{code="UNREADABLE_FRAME"} 1.0' in m
    for name in ("inspectd_stage_latency_seconds_bucket{le=", 'stage="locate"', "inspectd_e2e_latency_seconds_count",
                 'inspectd_queue_depth{queue="pending"}', "inspectd_ring_free_slots", "inspectd_worker_restarts_total",
                 "inspectd_dropped_total", 'inspectd_timeouts_total{cause="deadline"}'):  # fmt: skip
        assert name in m, name


def test_sd_notify_ready_watchdog_stopping(first_run):
    msgs = first_run["notify"]
    joined = "\n".join(msgs)
    assert "READY=1" in joined and "WATCHDOG=1" in joined and "STOPPING=1" in joined
    first = {k: i for i, m in reversed(list(enumerate(msgs))) for k in ("READY=1", "STOPPING=1") if k in m}
    assert first["READY=1"] < first["STOPPING=1"]


def test_restart_continues_seq_sighup_reloads_recipe_sigterm_drains_with_a_stalled_subscriber(first_run, dump, zctx):
    """Same journal, frames as fast as the workers take them (block policy), a subscriber that never
    reads; SIGHUP with a bad file keeps the recipe, with a good one changes the verdicts; SIGTERM mid-stream."""
    journal = first_run["journal"]
    n0 = len(journal_rows(journal))
    station = first_run["tmp"] / "station.toml"
    station.write_text('[station]\nname = "L1-S1"\n[recipe]\noverhang_min_mm = 0.45\n')
    d = Daemon(first_run["tmp"], "--config", str(station), "--source", f"replay:{dump}?fps=0&loop=1",
               "--overload", "block", "--tips", "labels", "--journal", str(journal),
               "--archive-dir", str(first_run["tmp"] / "ng2"), "--deadline-ms", "5000")  # fmt: skip
    try:
        addr = d.addresses()
        stalled = Sub(zctx, addr["pub"], RCVHWM=1, RCVBUF=4096)  # connected, never read
        sub = Sub(zctx, addr["pub"])
        sub.until(lambda s: s.heartbeats, 5, "heartbeat", d)
        t0 = time.monotonic()
        sub.until(lambda s: len(s.verdicts) >= 30, 60, "30 verdicts", d)
        rate = 30 / (time.monotonic() - t0)

        station.write_text("[recipe]\noverhang_min_mm = 5.0\n")  # min above max: invalid
        d.proc.send_signal(signal.SIGHUP)
        bad = d.event("reload_failed", 30)
        assert any("overhang_min_mm must be below overhang_max_mm" in p for p in bad["problems"])
        station.write_bytes(b"[recipe]\noverhang_min_mm = \xff\n")  # not UTF-8: used to crash the daemon
        d.proc.send_signal(signal.SIGHUP)
        d.wait_for(lambda e: e.get("event") == "reload_failed" and "not UTF-8" in " ".join(e["problems"]), 30, "utf-8")
        station.write_text('[station]\nname = "L1-S1"\n[recipe]\noverhang_min_mm = 3.9\noverhang_max_mm = 4.0\n')
        d.proc.send_signal(signal.SIGHUP)
        ok = d.event("recipe_reloaded", 30)
        assert ok["recipe"]["overhang_min_mm"] == 3.9 and ok["changed"] is True
        d.wait_for(lambda e: e.get("event") == "recipe_applied" and e["proc"] == "worker-1", 10, "recipe at worker 1")

        def reloaded(s):
            last = s.verdicts[-6:]
            return len(last) == 6 and all("OVERHANG_MIN" in [r["code"] for r in v["reasons"]] for v in last)

        sub.until(reloaded, 30, "verdicts judged with the new recipe", d)
        d.proc.send_signal(signal.SIGTERM)
        assert d.wait(30) == 0
        sub.pump(0.5)
        drained = d.event("drained", 1)
    finally:
        d.close()
    rows = journal_rows(journal)
    assert [r["seq"] for r in rows] == list(range(1, len(rows) + 1))  # gap-free across the restart
    assert rows[n0]["seq"] == n0 + 1 and rows[n0]["frame_id"] == FRAME_IDS[0]
    assert len(rows) - n0 == drained["frames"]  # every frame acquired before the stop has its verdict
    assert [v["seq"] for v in sub.verdicts] == [r["seq"] for r in rows[n0:]][: len(sub.verdicts)]
    assert rate > 2, rate  # the stalled subscriber did not hold the pipeline back
    assert not any(r["result"] == "TIMEOUT" for r in rows[n0:])
    stalled.close()
    sub.close()


# ---------------------------------------------------------------------------- crashes


def test_worker_kill9_in_flight_frame_errors_stage_restarts_stream_continues(dump, slow_tips, tmp_path, zctx):
    """kill -9 of a busy worker: its frame gets ERROR, a new worker starts, frames keep coming.
    A second crash exceeds max_restarts_per_min=1: the daemon says so loudly and exits 1."""
    journal = tmp_path / "j.sqlite"
    d = Daemon(tmp_path, "--source", f"replay:{dump}?fps=4&loop=1", "--tips", "slowtips:SlowOracle",
               "--journal", str(journal), "--workers", "2", "--deadline-ms", "30000", "--max-restarts-per-min", "1",
               pythonpath=slow_tips, env={"INSPECTD_TEST_DETECT_S": "1.0"})  # fmt: skip
    try:
        sub = Sub(zctx, d.addresses()["pub"])
        w0 = d.event("worker_ready", 60, worker=0, generation=0)
        d.event("daemon_ready", 60)
        time.sleep(0.3)  # 4 fps in, 2 fps of capacity: worker 0 is always in the middle of a frame
        os.kill(w0["pid"], signal.SIGKILL)
        crash = d.event("worker_crashed", 10)
        assert crash["pid"] == w0["pid"] and crash["frame_id"] is not None and "SIGKILL" in crash["how"]
        d.event("worker_restarted", 10)
        w0b = d.event("worker_ready", 60, worker=0, generation=1)
        sub.until(lambda s: any(v["result"] in ("OK", "NG") for v in s.verdicts[1:]), 30, "verdicts after the crash", d)
        os.kill(w0b["pid"], signal.SIGKILL)
        rc = d.wait(30)
        failed = d.event("daemon_failed", 1)
        sub.pump(0.5)
    finally:
        d.close()
    assert rc == 1 and failed["level"] == "critical" and "restart budget" in failed["msg"]
    rows = journal_rows(journal)
    assert [r["seq"] for r in rows] == list(range(1, len(rows) + 1))
    assert len(rows) == d.event("daemon_exit", 1)["frames"]  # every acquired frame got its verdict
    crashed = [r for r in rows if r["result"] == "ERROR" and "crashed" in r["reasons"][0]["message"]]
    lost = crashed[0]  # the frame worker 0 held at the first kill
    assert lost["frame_id"] == crash["frame_id"] and lost["reasons"][0]["code"] == "INTERNAL"
    assert "SIGKILL" in lost["reasons"][0]["message"] and f"pid {w0['pid']}" in lost["reasons"][0]["message"]
    assert any(r["result"] in ("OK", "NG") for r in rows if r["seq"] > lost["seq"])  # the stream went on
    assert [v["seq"] for v in sub.verdicts] == [r["seq"] for r in rows][: len(sub.verdicts)]
    assert shm_segments(d.proc.pid) == []
    time.sleep(0.5)
    assert not any(pid_alive(e["pid"]) for e in d.all("worker_ready"))


def test_an_engine_that_raises_costs_that_frame_an_error_and_the_stream_goes_on(dump, slow_tips, tmp_path):
    journal = tmp_path / "j.sqlite"
    d = Daemon(tmp_path, "--source", f"replay:{dump}?fps=20", "--tips", "slowtips:FlakyOracle", "--journal",
               str(journal), "--exit-at-end", pythonpath=slow_tips, env={"INSPECTD_TEST_DETECT_S": "0"})  # fmt: skip
    try:
        assert d.wait(60) == 0, d.log_tail()
    finally:
        d.close()
    rows = journal_rows(journal)
    assert [r["frame_id"] for r in rows] == FRAME_IDS  # every frame, in order
    for r in rows:
        if r["frame_id"] == BAD:
            continue
        if int(r["frame_id"].rsplit("-", 1)[-1]) % 3 == 1:
            assert r["result"] == "ERROR" and r["reasons"][0]["code"] == "INTERNAL"
            assert "stage detect failed: RuntimeError: engine fault on this frame" in r["reasons"][0]["message"]
        else:
            assert r["result"] in ("OK", "NG"), r
    assert not d.all("worker_crashed")


# ---------------------------------------------------------------------------- deadline and overload


def test_tight_deadline_gives_timeout_and_late_results_go_to_the_journal_not_the_wire(dump, slow_tips, tmp_path, zctx):
    """0.6 s per frame against a 150 ms deadline, 2 workers, 2 ring slots, 10 fps: every frame is
    TIMEOUT (by the deadline watchdog, or at once for lack of a slot), the unreadable one ERROR."""
    journal = tmp_path / "j.sqlite"
    d = Daemon(tmp_path, "--source", f"replay:{dump}?fps=10", "--tips", "slowtips:SlowOracle", "--exit-at-end",
               "--journal", str(journal), "--workers", "2", "--ring-slots", "2", "--deadline-ms", "150",
               pythonpath=slow_tips, env={"INSPECTD_TEST_DETECT_S": "0.6"})  # fmt: skip
    try:
        sub = Sub(zctx, d.addresses()["pub"])
        sub.until(lambda s: s.heartbeats, 10, "heartbeat", d)
        sub.until(lambda s: len(s.verdicts) >= len(FRAME_IDS), 60, "all verdicts", d)
        assert d.wait(30) == 0
        sub.pump(0.3)
    finally:
        d.close()
    vs = sub.verdicts
    assert [v["frame_id"] for v in vs] == FRAME_IDS and [v["seq"] for v in vs] == list(range(1, 14))
    assert all(v["result"] == "TIMEOUT" for v in vs if v["frame_id"] != BAD)
    reasons = [v["reasons"][0] for v in vs if v["frame_id"] != BAD]
    assert all(r["code"] == "DEADLINE" and r["limit"] == 150 for r in reasons)
    assert any("overload" in r["message"] for r in reasons)  # no free slot: TIMEOUT at once, not silence
    assert any(r["message"].startswith("no verdict 150 ms") and r["value"] >= 150 for r in reasons)
    late = journal_late(journal)
    assert late, "no late result journaled"
    by_seq = {r["seq"]: r for r in journal_rows(journal)}
    for published_seq, lv in late:
        assert by_seq[published_seq]["result"] == "TIMEOUT" and by_seq[published_seq]["frame_id"] == lv["frame_id"]
        assert lv["result"] in ("OK", "NG")
    assert len(by_seq) == len(FRAME_IDS)  # late results are not verdicts
    assert sum(v["frame_id"] == late[0][1]["frame_id"] for v in vs) == 1  # and never on the wire
    assert np.all(np.diff([v["t_published_ns"] for v in vs]) >= 0)


def test_a_start_up_failure_exits_1_and_daemon_exit_says_so(tmp_path):
    """The journal's folder is a file: the publisher cannot start; the exit code and its log line agree."""
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    d = Daemon(tmp_path, "--source", "sim:?seed=1&fps=5&size=512", "--journal", str(blocker / "j.db"), "--tips", "labels")
    assert d.proc.wait(timeout=60) == 1
    assert d.event("publisher_failed", 10)
    assert d.event("daemon_exit", 10)["exit_code"] == 1


def test_a_journal_deleted_under_the_daemon_stops_it_loudly(tmp_path):
    """SQLite went on writing into the deleted file: no log line, and the next start began again at seq 1."""
    journal = tmp_path / "j.sqlite"
    d = Daemon(tmp_path, "--source", "sim:?seed=1&fps=20&size=512", "--journal", str(journal), "--tips", "labels")
    try:
        d.event("daemon_ready", 60)
        d.wait_for(lambda e: e.get("event") == "verdict", 30, "a verdict")
        journal.unlink()
        failed = d.event("daemon_failed", 15)
        assert "was deleted while in use" in failed["msg"] and str(journal) in failed["msg"]
        assert d.proc.wait(timeout=30) == 1
        ex = d.event("daemon_exit", 5)
        assert ex["exit_code"] == 1 and ex["frames"] == ex["published"] > 0  # every frame taken got its verdict out
    finally:
        if d.proc.poll() is None:
            d.proc.kill()


# ---------------------------------------------------------------------------- every acquired frame accounted for


def journal_acquired(path: Path) -> list[str]:
    with sqlite3.connect(path) as db:
        return [r[0] for r in db.execute("SELECT frame_id FROM acquired ORDER BY id")]


def test_kill9_of_the_daemon_costs_no_verdict_interrupted_frames_go_out_first_and_replay_resumes(
    dump, slow_tips, tmp_path
):
    """kill -9 with frames acquired but not answered: `sim-0003-00012` used to get no verdict at all, and a
    restarted replay played the dump from frame 0 again. Now each such frame is journaled when acquired;
    the next start publishes it as ERROR INTERRUPTED before any new frame, and the replay goes on after it."""
    journal = tmp_path / "j.sqlite"
    d = Daemon(tmp_path, "--source", f"replay:{dump}?fps=8", "--tips", "slowtips:SlowOracle",
               "--journal", str(journal), "--workers", "2", "--deadline-ms", "60000",
               pythonpath=slow_tips, env={"INSPECTD_TEST_DETECT_S": "2.0"})  # fmt: skip
    try:
        d.event("daemon_ready", 60)
        end = time.monotonic() + 30
        while len(journal_acquired(journal)) < 5:  # 8 fps in, 1 fps out: frames pile up owed
            assert time.monotonic() < end, d.log_tail()
            time.sleep(0.1)
        workers = [e["pid"] for e in d.all("worker_ready")]
        d.proc.kill()
        d.proc.wait(10)
    finally:
        d.close()
    owed = journal_acquired(journal)
    before = journal_rows(journal)
    assert len(owed) >= 5 and not {r["frame_id"] for r in before} & set(owed)
    time.sleep(1.0)
    assert not any(pid_alive(p) for p in workers)  # the workers saw their parent go

    d2 = Daemon(tmp_path, "--source", f"replay:{dump}?fps=50", "--tips", "labels", "--journal", str(journal),
                "--exit-at-end")  # fmt: skip
    try:
        assert d2.wait(60) == 0, d2.log_tail()
    finally:
        d2.close()
    rows = journal_rows(journal)
    assert [r["seq"] for r in rows] == list(range(1, len(rows) + 1))  # gap-free across the crash
    interrupted = rows[len(before): len(before) + len(owed)]  # published first, in acquisition order
    assert [r["frame_id"] for r in interrupted] == owed
    for r in interrupted:
        assert r["result"] == "ERROR" and r["reasons"][0]["code"] == "INTERRUPTED"
        assert "previous run" in r["reasons"][0]["message"] and "restart" in r["reasons"][0]["message"]
    assert d2.event("interrupted_frames_published", 1)["frames"] == len(owed)
    resumed = d2.event("source_resumed", 1)
    assert resumed["after"] == owed[-1]
    # frames in = verdicts out: every file of the dump exactly once, nothing replayed twice
    assert sorted(r["frame_id"] for r in rows) == sorted(FRAME_IDS)
    assert journal_acquired(journal) == []


@pytest.fixture
def small_fs(tmp_path):
    """A real 24 MiB tmpfs to fill up (needs root: CAP_SYS_ADMIN to mount)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip()}): run the suite as root for the disk-full test")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_a_journal_disk_filling_up_stops_acquisition_before_a_frame_is_lost_and_resumes(small_fs, tmp_path, zctx):
    """A journal filesystem that filled mid-run: 10 s of retries, exit 1, 41 acquired frames with no verdict.
    Now no frame is taken while the journal's filesystem is below its reserve: health, heartbeat and metrics
    say so at once, every frame already taken gets its verdict, and acquisition resumes when space returns."""
    journal = small_fs / "j.sqlite"
    station = tmp_path / "station.toml"
    station.write_text("[publish]\njournal_min_free_mb = 8\n")
    d = Daemon(tmp_path, "--config", str(station), "--source", "sim:?seed=1&fps=20&size=512", "--journal",
               str(journal), "--tips", "labels", "--archive-dir", str(tmp_path / "ng"))  # fmt: skip
    filler = small_fs / "filler"
    try:
        addr = d.addresses()
        sub = Sub(zctx, addr["pub"])
        d.event("daemon_ready", 60)
        sub.until(lambda s: len(s.verdicts) >= 5, 30, "5 verdicts", d)
        st = os.statvfs(small_fs)
        free = st.f_bavail * st.f_frsize
        with open(filler, "wb") as f:  # leave ~5 MiB: below the 8 MiB reserve, room for what is in flight
            f.write(b"\0" * (free - 5 * 2**20))
        paused = d.event("acquisition_paused", 10)
        assert "below the 8 MB reserve" in paused["msg"] and str(journal) in paused["msg"]
        sub.until(lambda s: any(h["health"].get("state") == "paused" for h in s.heartbeats[-2:]), 5, "paused", d)
        hb = sub.heartbeats[-1]["health"]
        assert "journal_min_free_mb" in hb["acquisition_paused"]
        metrics = urllib.request.urlopen(addr["metrics"], timeout=5).read().decode()
        assert "inspectd_acquisition_paused 1.0" in metrics
        time.sleep(1.0)
        n_paused = len(journal_rows(journal))
        time.sleep(1.5)  # 20 fps offered: 30 frames would have been taken
        assert len(journal_rows(journal)) == n_paused and journal_acquired(journal) == []
        filler.unlink()
        d.event("acquisition_resumed", 10)
        sub.until(lambda s: len(s.verdicts) >= n_paused + 5, 30, "verdicts after the space came back", d)
        d.proc.send_signal(signal.SIGTERM)
        assert d.wait(30) == 0
    finally:
        d.close()
        if filler.exists():
            filler.unlink()
    rows = journal_rows(journal)
    assert [r["seq"] for r in rows] == list(range(1, len(rows) + 1))
    assert len(rows) == d.event("daemon_exit", 1)["frames"] and journal_acquired(journal) == []  # in = out
    assert not any(r["result"] in ("ERROR", "TIMEOUT") for r in rows)


def test_a_journal_disk_that_is_full_stops_the_daemon_loudly_and_the_restart_accounts_for_every_frame(
    small_fs, tmp_path
):
    """No reserve and a disk filled to the last block: the frame that cannot be journaled stops acquisition
    at once and is named; the daemon exits 1; after space is freed, the restart publishes every frame that
    was journaled as acquired as ERROR INTERRUPTED. Frames in = verdicts out + the one named frame."""
    journal = small_fs / "j.sqlite"
    station = tmp_path / "station.toml"
    station.write_text("[publish]\njournal_min_free_mb = 0\n")
    args = ("--config", str(station), "--journal", str(journal), "--tips", "labels", "--archive-dir",
            str(tmp_path / "ng"))  # fmt: skip
    d = Daemon(tmp_path, *args, "--source", "sim:?seed=1&fps=20&size=512")
    filler = small_fs / "filler"
    try:
        d.event("daemon_ready", 60)
        d.wait_for(lambda e: e.get("event") == "verdict" and e["seq"] >= 5, 30, "5 verdicts")
        with open(filler, "wb") as f:
            with contextlib.suppress(OSError):
                while True:
                    f.write(b"\0" * 65536)
                    f.flush()
        rc = d.wait(60)
        lost = d.event("frame_not_journaled", 1)
        failed = d.event("daemon_failed", 1)
    finally:
        d.close()
    assert rc == 1 and str(journal) in failed["msg"] and lost["level"] == "critical"
    filler.unlink()
    frames_in = d.event("daemon_exit", 1)["frames"]
    d2 = Daemon(tmp_path, *args, "--source", "sim:?seed=1&fps=20&size=512", "--stop-after", "3")
    try:
        assert d2.wait(60) == 0, d2.log_tail()
    finally:
        d2.close()
    rows = journal_rows(journal)
    assert [r["seq"] for r in rows] == list(range(1, len(rows) + 1))
    first_run = rows[: len(rows) - 3]
    assert len(first_run) + 1 == frames_in  # every frame the first run took, but the one it named
    assert lost["frame_id"] not in {r["frame_id"] for r in rows}
    assert journal_acquired(journal) == []


def test_an_archive_disk_that_fills_up_skips_ng_images_and_no_verdict_is_lost(small_fs, tmp_path):
    """The NG archive on a real filesystem that is full: each NG image not archived is counted and logged
    (disk_full); inspection and the journal go on; frames in = verdicts out."""
    filler = small_fs / "filler"
    with open(filler, "wb") as f:
        with contextlib.suppress(OSError):
            while True:
                f.write(b"\0" * 65536)
                f.flush()
    journal = tmp_path / "j.sqlite"
    d = Daemon(tmp_path, "--source", "sim:?seed=4&fps=20&size=512&count=30", "--journal", str(journal), "--tips",
               "labels", "--archive-dir", str(small_fs / "ng"), "--exit-at-end")  # fmt: skip
    try:
        rc = d.wait(60)
    finally:
        d.close()
    rows = journal_rows(journal)
    assert rc == 0 and len(rows) == 30 and [r["seq"] for r in rows] == list(range(1, 31))
    ng = [r for r in rows if r["result"] == "NG"]
    failed = [e for e in d.all("ng_archive_save_failed") if e.get("reason") == "disk_full"]
    assert ng and failed, d.log_tail()  # the archive could not take them, and said why


def test_the_ng_archive_writer_is_its_own_niced_process_and_a_kill9_of_it_costs_no_verdict(tmp_path):
    """The NG archive's overlays and zlib run in a child process at nice +10 (not in the main process's CPU).
    Killed -9 mid-run: the daemon says so at the next NG frame, starts it again and archives the NG frames
    after that; frames in = verdicts out, and each NG frame is archived or counted as not archived."""
    journal, ng = tmp_path / "j.sqlite", tmp_path / "ng"
    d = Daemon(tmp_path, "--source", "sim:?seed=4&fps=10&size=512&count=60", "--journal", str(journal), "--tips",
               "labels", "--archive-dir", str(ng), "--exit-at-end", "--workers", "1")  # fmt: skip
    try:
        first = d.event("archive_writer_started", 60)
        pid = first["pid"]
        assert open(f"/proc/{pid}/comm").read().strip() == "archive"
        assert first["nice"] == min(19, os.getpriority(os.PRIO_PROCESS, 0) + 10)
        d.wait_for(lambda e: e.get("event") == "ng_archived", 30, "an NG frame archived")
        os.kill(pid, signal.SIGKILL)
        died = d.event("archive_writer_died", 60)
        assert "starting it again" in died["msg"]
        again = d.wait_for(lambda e: e.get("event") == "archive_writer_started" and e["pid"] != pid, 30, "a new writer")
        assert again["pid"] != pid
        rc = d.wait(60)
    finally:
        d.close()
    rows = journal_rows(journal)
    assert rc == 0 and len(rows) == 60 and [r["seq"] for r in rows] == list(range(1, 61))
    ng_seqs = {r["seq"] for r in rows if r["result"] == "NG"}
    archived = {int(p.name.split("-")[0]) for p in ng.glob("*.json")}
    assert archived <= ng_seqs
    assert any(e.get("pid") == again["pid"] for e in d.all("ng_archived")), "nothing archived after the restart"
    skipped = len(d.all("archive_skipped"))
    assert len(archived) + skipped + died["lost"] >= len(ng_seqs), (len(archived), skipped, died, len(ng_seqs))


def test_the_loops_wait_set_follows_objects_that_come_and_go():
    """The persistent epoll set (pipeline/waitset.py): a readable pipe is reported, a closed and replaced one
    (its fd number reused) is followed, and an object that left the set is never reported again."""
    from inspectd.pipeline.waitset import WaitSet

    ws = WaitSet()
    r1, w1 = os.pipe()
    r2, w2 = os.pipe()
    try:
        assert ws.wait([r1, r2], 0.0) == []
        os.write(w2, b"x")
        assert ws.wait([r1, r2], 1.0) == [r2]
        os.close(r2)
        os.close(w2)
        r3, w3 = os.pipe()  # likely takes r2's number
        os.write(w3, b"y")
        assert ws.wait([r1, r3], 1.0) == [r3]
        os.read(r3, 1)
        os.write(w1, b"z")
        assert ws.wait([r3], 0.05) == []  # r1 left the set: not reported although readable
        assert ws.wait([r1, r3], 1.0) == [r1]
        os.close(r3)
        os.close(w3)
    finally:
        ws.close()
        for fd in (r1, w1):
            os.close(fd)


def _corners_cfg(tmp_path: Path, on_unavailable: str) -> Path:
    p = tmp_path / "station.toml"
    p.write_text(f'[corners]\nbackend = "cuda"\non_unavailable = "{on_unavailable}"\n')
    return p


def test_cuda_corners_without_a_gpu_refuse_to_start_with_the_reason(tmp_path):
    """Issue #19 item 6: [corners] backend = "cuda" where it cannot run (no numba-cuda or no GPU, as on CI) is
    a clear error at start, not OpenCV numbers under a CUDA label and not a restart loop."""
    cc = pytest.importorskip("inspectd.inspection.corner_backends")
    from inspectd.inspection.corners_cuda import cuda_available

    if cuda_available()[0]:
        pytest.skip("a GPU is usable here: nothing falls back")
    d = Daemon(tmp_path, "--config", str(_corners_cfg(tmp_path, "error")), "--source", "sim:?seed=1&fps=5&size=512",
               "--journal", str(tmp_path / "j.sqlite"), "--archive-dir", str(tmp_path / "ng"), "--tips", "labels")  # fmt: skip
    assert d.proc.wait(timeout=60) == 1
    failed = d.event("daemon_failed", 10)
    assert "cannot start" in failed["msg"] and 'backend = "cuda"' in failed["msg"] and "on_unavailable" in failed["msg"]
    assert d.all("worker_restarted") == [] and d.event("daemon_exit", 10)["frames"] == 0
    with pytest.raises(cc.CornerBackendUnavailable, match="on_unavailable"):  # replay and the bench choose alike
        cc.choose_corner_backend(CornerConfig(backend="cuda"))


def test_cuda_corners_fall_back_to_opencv_when_allowed_and_say_so(tmp_path, dump):
    from inspectd.inspection.corners_cuda import cuda_available

    if cuda_available()[0]:
        pytest.skip("a GPU is usable here: nothing falls back")
    d = Daemon(tmp_path, "--config", str(_corners_cfg(tmp_path, "opencv")), "--source", f"replay:{dump}?fps=10",
               "--journal", str(tmp_path / "j.sqlite"), "--archive-dir", str(tmp_path / "ng"), "--tips", "labels",
               "--workers", "2")  # fmt: skip
    try:
        addr = d.addresses()
        d.wait_for(lambda e: e.get("event") == "verdict" and e["seq"] >= 5, 60, "5 verdicts")
        with urllib.request.urlopen(addr["metrics"], timeout=5) as r:
            metrics = r.read().decode()
        d.proc.send_signal(signal.SIGTERM)
        assert d.wait(30) == 0
    finally:
        d.close()
    assert "inspectd_corner_backend_fallbacks_total 2.0" in metrics
    warned = [e for e in d.all("corner_backend_fallback") if e.get("proc") == "main"]
    assert len(warned) == 2 and all(e["running"] == "opencv" and "CUDA" in e["msg"] for e in warned)
    assert all(e["corners"] == "opencv" for e in d.all("worker_ready") if e.get("proc") == "main")
    vs = d.all("verdict")
    assert len(vs) >= 5 and {e["result"] for e in vs} <= {"OK", "NG"}  # every frame found its stack on OpenCV corners
