"""Part identity: PLC trigger messages over a real ZeroMQ PUSH/PULL pair, matched to frames by the daemon.

The matcher's rules are checked with explicit clocks; the daemon test runs the
real subprocess with a 0.5 fps simulator and sends triggers timed from the
verdicts it receives (margins of 0.5 s either side of every decision).
"""

from __future__ import annotations

import json
import signal
import time

import numpy as np
import pytest
import zmq
from test_daemon import Daemon, Sub, journal_rows

from inspectd.frames import Frame, Sidecar
from inspectd.frames.dumps import write_frame
from inspectd.pipeline.triggers import Trigger, TriggerError, TriggerListener, TriggerMatcher, parse_trigger

MS = 1_000_000


# ---------------------------------------------------------------------------- parsing and matching rules


def test_parse_trigger_accepts_part_id_and_names_what_is_wrong():
    assert parse_trigger(b'{"part_id": " C-000123 "}', 5) == Trigger("C-000123", 5)
    for raw, needle in [
        (b"\xff\xfe", "UTF-8 JSON"),
        (b"C-1", "UTF-8 JSON"),
        (b"[1]", "JSON object"),
        (b'{"part": "C-1"}', "part_id must be a non-empty string"),
        (b'{"part_id": 7}', "part_id must be a non-empty string"),
        (b'{"part_id": ""}', "part_id must be a non-empty string"),
        (json.dumps({"part_id": "x" * 200}).encode(), "at most 128"),
    ]:
        with pytest.raises(TriggerError, match=needle):
            parse_trigger(raw, 0)


def test_matcher_fifo_window_late_and_expiry():
    m = TriggerMatcher(match_window_ms=600, late_ms=50, no_frame_ms=2000)
    m.push(Trigger("A", 1000 * MS))
    m.push(Trigger("B", 1900 * MS))
    m.push(Trigger("C", 2500 * MS))
    # frame at 2000 ms: A (1000 ms before) is past the 600 ms window -> expired; B matches
    expired, t = m.match(2000 * MS)
    assert [x.part_id for x in expired] == ["A"] and t.part_id == "B"
    # a frame before C (C arrives 40 ms after it: within late_ms) still takes C
    expired, t = m.match(2460 * MS)
    assert expired == [] and t.part_id == "C"
    # nothing waiting: the frame has no trigger
    assert m.match(3000 * MS) == ([], None)
    # a trigger that comes 100 ms after the frame is not that frame's
    m.push(Trigger("D", 3100 * MS))
    assert m.match(3000 * MS) == ([], None) and len(m) == 1
    # idle expiry only after no_frame_ms
    assert m.expire_idle(5000 * MS) == []
    assert [x.part_id for x in m.expire_idle(5101 * MS)] == ["D"]
    m.push(Trigger("E", 6000 * MS))
    assert [x.part_id for x in m.drain()] == ["E"] and len(m) == 0


def test_listener_receives_over_a_real_socket_and_rejects_bad_messages():
    ctx = zmq.Context()
    rejects: list[str] = []
    lis = TriggerListener("tcp://127.0.0.1:*", on_reject=rejects.append, ctx=ctx)
    try:
        addr = lis.start()
        push = ctx.socket(zmq.PUSH)
        push.linger = 0
        push.connect(addr)
        t0 = time.time_ns()
        push.send(b'{"part_id": "P1"}')
        push.send(b"not json")
        push.send(b'{"part_id": "P2"}')
        got: list[Trigger] = []
        end = time.monotonic() + 10
        while len(got) < 2 and time.monotonic() < end:
            got += lis.take()
            time.sleep(0.02)
        assert [t.part_id for t in got] == ["P1", "P2"]
        assert all(t.t_ns >= t0 for t in got)
        assert lis.received == 2 and lis.rejected == 1 and "UTF-8 JSON" in rejects[0]
        push.close(0)
        with pytest.raises(zmq.ZMQError, match="cannot bind the trigger socket"):
            TriggerListener(addr, ctx=ctx).start()  # the address is taken
    finally:
        lis.close()
        ctx.destroy(linger=0)


def test_hostile_triggers_are_rejected_and_the_listener_keeps_reading():
    """A 5000-digit integer or deep nesting used to raise out of parse_trigger and end the thread for good."""
    hostile = [
        b'{"part_id": ' + b"9" * 5000 + b"}",  # ValueError: exceeds the int digit limit
        b"[" * 100_000 + b"]" * 100_000,  # nesting: RecursionError in the parser (and over the size cap)
        b"[" * 2000 + b"]" * 2000,  # nesting within the size cap: reaches the parser
        b'{"part_id": "' + b"x" * 5000 + b'"}',  # over MAX_TRIGGER_BYTES: the socket drops the peer
    ]
    for raw in hostile[:3]:
        with pytest.raises(TriggerError):
            parse_trigger(raw, 0)
    ctx = zmq.Context()
    rejects: list[str] = []
    lis = TriggerListener("tcp://127.0.0.1:*", on_reject=rejects.append, ctx=ctx)
    try:
        addr = lis.start()
        for raw in hostile:
            push = ctx.socket(zmq.PUSH)
            push.linger = 0
            push.connect(addr)
            push.send(raw)
            push.close(linger=500)
        push = ctx.socket(zmq.PUSH)
        push.linger = 0
        push.connect(addr)
        push.send(b'{"part_id": "AFTER"}')
        got: list[Trigger] = []
        end = time.monotonic() + 10
        while not got and time.monotonic() < end:
            got += lis.take()
            time.sleep(0.02)
        assert [t.part_id for t in got] == ["AFTER"] and lis.alive
        # the oversized ones never reach the parser (MAXMSGSIZE drops them); the deep one is rejected by it
        assert lis.rejected == 1 and "RecursionError" in rejects[0]
        push.close(0)
    finally:
        lis.close()
        ctx.destroy(linger=0)


# ---------------------------------------------------------------------------- the daemon


def test_daemon_ties_frames_to_plc_triggers_and_gives_lonely_triggers_no_frame(tmp_path):
    zctx = zmq.Context()
    period_ns = 2000 * MS  # sim at 0.5 fps: frame k+1 is acquired 2 s after frame k (the pacer does not drift)
    d = Daemon(tmp_path, "--source", "sim:?seed=5&fps=0.5&size=512&bit_depth=8&count=4&pool=4",
               "--tips", "labels", "--workers", "1", "--journal", str(tmp_path / "j.sqlite"),
               "--archive-dir", str(tmp_path / "ng"), "--trigger", "tcp://127.0.0.1:*", "--station", "L9")  # fmt: skip
    try:
        addrs = d.addresses()
        sub = Sub(zctx, addrs["pub"], topics=(b"verdict.",))
        push = zctx.socket(zmq.PUSH)
        push.linger = 0
        push.connect(addrs["trigger"])

        def frames(s):
            return [v for v in s.verdicts if v["frame_id"]]

        def at(t_ns):  # sleep until host time t_ns
            time.sleep(max(0.0, (t_ns - time.time_ns()) / 1e9))

        sub.until(lambda s: len(frames(s)) >= 1, 60, "the first frame's verdict", d)
        t0 = frames(sub)[0]["t_acquired_ns"]
        # frame 1: its trigger 0.5 s before it
        at(t0 + period_ns - 500 * MS)
        push.send_json({"part_id": "P1"})
        sub.until(lambda s: len(frames(s)) >= 2, 30, "frame 1", d)
        t1 = frames(sub)[1]["t_acquired_ns"]
        # frame 2: no trigger at all. frame 3: a stray trigger 1.7 s early (outside the 1 s window), then its own
        at(t1 + period_ns + 300 * MS)
        push.send_json({"part_id": "STRAY"})
        at(t1 + 2 * period_ns - 500 * MS)
        push.send_json({"part_id": "P3"})
        sub.until(lambda s: len(frames(s)) >= 4, 30, "frame 3", d)
        # after the last frame: a trigger no frame will ever come for -> NO_FRAME within no_frame_ms (2 s)
        push.send_json({"part_id": "LONELY"})
        push.send(b'{"part_id": ')  # malformed: rejected and logged, no verdict
        sub.until(lambda s: any(v.get("part_id") == "LONELY" for v in s.verdicts), 30, "LONELY's NO_FRAME", d)
        d.event("trigger_rejected", timeout=10)
        got = [(v["frame_id"] != "", v.get("part_id"), v["result"]) for v in sub.verdicts]
        assert got[0][:2] == (True, None), got  # before any trigger: untriggered
        assert got[1][:2] == (True, "P1"), got
        assert got[2][:2] == (True, None), got
        assert got[3] == (False, "STRAY", "ERROR"), got
        assert got[4][:2] == (True, "P3"), got
        assert got[5] == (False, "LONELY", "ERROR"), got
        for v in (sub.verdicts[3], sub.verdicts[5]):
            assert v["reasons"][0]["code"] == "NO_FRAME" and v["part_id"] in v["reasons"][0]["message"]
        assert [v["seq"] for v in sub.verdicts] == list(range(sub.verdicts[0]["seq"], sub.verdicts[0]["seq"] + 6))
        assert d.all("untriggered_frame") and d.all("part_id_mismatch")  # sim frames carry SIM-... part ids
        # a trigger still waiting at shutdown is owed its verdict too
        push.send_json({"part_id": "AT-STOP"})
        time.sleep(0.3)
        d.proc.send_signal(signal.SIGTERM)
        assert d.wait(30) == 0
        rows = journal_rows(tmp_path / "j.sqlite")
        assert [r.get("part_id") for r in rows][-1] == "AT-STOP" and rows[-1]["reasons"][0]["code"] == "NO_FRAME"
        assert [r["seq"] for r in rows] == list(range(1, len(rows) + 1))
        sub.close()
    finally:
        d.close()
        zctx.destroy(linger=0)


def test_without_a_trigger_socket_part_ids_come_from_the_frame_or_are_generated(tmp_path):
    dump = tmp_path / "dump"
    img = np.full((300, 300), 40, np.uint8)
    for i in range(3):
        write_frame(dump, Frame(f"f{i}", img, Sidecar(part_id="FROM-SIDECAR" if i == 1 else None)))
    d = Daemon(tmp_path, "--source", f"replay:{dump}", "--tips", "labels", "--workers", "1", "--exit-at-end",
               "--journal", str(tmp_path / "j.sqlite"), "--archive-dir", str(tmp_path / "ng"), "--station", "S7")  # fmt: skip
    try:
        assert d.wait(60) == 0, d.log_tail()
        rows = journal_rows(tmp_path / "j.sqlite")
        assert [(r["frame_id"], r.get("part_id")) for r in rows] == [("f0", "S7-1"), ("f1", "FROM-SIDECAR"), ("f2", "S7-3")]
    finally:
        d.close()


def test_daemon_refuses_a_plaintext_trigger_beyond_loopback(tmp_path):
    import subprocess
    import sys

    from helpers import REPO

    r = subprocess.run(
        [sys.executable, "-m", "inspectd.pipeline.run", "--source", "sim:?seed=1&fps=5&size=512", "--tips", "labels",
         "--pub", "tcp://127.0.0.1:*", "--query", "tcp://127.0.0.1:*", "--metrics-port", "-1", "--verdict-log", "all",
         "--journal", str(tmp_path / "j.sqlite"), "--trigger", "tcp://0.0.0.0:*"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 2 and "trigger socket tcp://0.0.0.0:* would be reachable" in r.stderr


def test_a_trigger_reader_that_dies_is_restarted_counted_and_reads_on():
    """The reader thread dying (here: the daemon's own callback raising) used to end part ids for good."""
    ctx = zmq.Context()
    calls = {"n": 0}

    def wake_that_fails_once() -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("wake pipe closed")

    lis = TriggerListener("tcp://127.0.0.1:*", on_message=wake_that_fails_once, ctx=ctx)
    try:
        push = ctx.socket(zmq.PUSH)
        push.linger = 0
        push.connect(lis.start())
        push.send(b'{"part_id": "FIRST"}')
        end = time.monotonic() + 10
        while lis.alive and time.monotonic() < end:
            time.sleep(0.02)
        assert not lis.alive and lis.last_death == "RuntimeError: wake pipe closed"
        assert lis.supervise() and lis.restarts == 1 and lis.alive
        assert not lis.supervise()  # alive: nothing to do
        push.send(b'{"part_id": "SECOND"}')
        got: list[Trigger] = []
        while len(got) < 2 and time.monotonic() < end + 10:
            got += lis.take()
            time.sleep(0.02)
        assert [t.part_id for t in got] == ["FIRST", "SECOND"]
        push.close(0)
    finally:
        lis.close()
        ctx.destroy(linger=0)
