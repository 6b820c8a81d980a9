"""One daemon run: `python -m inspectd.pipeline.run` as a real subprocess, watched by a real ZeroMQ subscriber.

Latency is measured where the line sees it: from the frame's acquisition stamp
(``t_acquired_ns``, set by the source when the frame is due) to the moment this
process receives the verdict from the PUB socket (``time.time_ns()``, the same
clock on the same machine). The SUB socket connects to a PUB port picked before
the daemon starts, so it is subscribed long before the workers are warm and the
first frame is acquired (a heartbeat before the first verdict proves it).

CPU: the daemon's process tree (main process + workers) between the first
measured verdict and the last, from /proc; memory: peak RSS and PSS of the tree.
Per-stage times come from the daemon's own ``verdict`` log lines (``stage_ms``
inside the worker, ``timing_ms`` source/queue/inspect/return/publish), so the
bench runs with ``--verdict-log all`` (a line per frame, ~0.02 ms of the main
process each; by default only ERROR/TIMEOUT verdicts get one).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from inspectd.bench.machine import REPO, TreeMonitor, utilisation
from inspectd.bench.scenarios import Case, Scenario

VERDICT_KEYS = ("seq", "frame_id", "result", "reasons", "anode_tips", "cathode_tips", "roi", "overhang_mm",
                "t_acquired_ns", "t_published_ns", "latency_ms", "model")  # fmt: skip


class BenchRunError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def source_uri(case: Case, scenario: Scenario, dump: Path) -> str:
    if case.source == "replay":
        return f"replay:{dump}?fps={case.fps:g}&loop=1&preload=1"
    return (
        f"sim:?seed={scenario.seed}&fps={case.fps:g}&size={case.size}&bit_depth={case.bit_depth}"
        f"&pool={scenario.sim_pool}&station=BENCH"
    )


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    return json.dumps(str(v))


def write_config(path: Path, case: Case) -> None:
    """The station file of the run: engine threads plus the case's dotted overrides."""
    # Heartbeats every 0.2 s: the subscriber's connection completes some ms after the
    # daemon binds and misses the bind-time heartbeat; at the default 1 s a worker
    # warm in under a second let the first verdict beat the next one (flaky
    # `heartbeat_before_first_verdict` on a 512² case, 2 of 3 runs).
    tables: dict[str, dict] = {"engine": {"threads": case.engine_threads}, "publish": {"heartbeat_s": 0.2}}
    for key, val in case.config.items():
        table, _, name = key.rpartition(".")
        if not table:
            raise BenchRunError(f"case {case.name!r}: config key {key!r} must be dotted (table.key)")
        tables.setdefault(table, {})[name] = val
    lines = []
    for table, kv in tables.items():
        lines.append(f"[{table}]")
        lines.extend(f"{k} = {_toml_value(v)}" for k, v in kv.items())
        lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")


class _LogPump:
    """Reads the daemon's JSON log lines (stderr) as they come."""

    def __init__(self, stream, keep_tail: int = 60):
        self.verdict_events: dict[int, dict] = {}
        self.events: dict[str, dict] = {}  # first event of each interesting kind
        self.errors: list[str] = []
        self.tail: list[str] = []
        self.keep_tail = keep_tail
        self.t_ready: float | None = None
        self._t = threading.Thread(target=self._run, args=(stream,), daemon=True)
        self._t.start()

    def _run(self, stream) -> None:
        for line in stream:
            self.tail.append(line)
            if len(self.tail) > self.keep_tail:
                del self.tail[0]
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            name = ev.get("event")
            if name == "verdict" and ev.get("proc") == "main":
                self.verdict_events[int(ev.get("seq", -1))] = {
                    "stage_ms": ev.get("stage_ms") or {},
                    "timing_ms": ev.get("timing_ms") or {},
                    "worker": ev.get("worker"),
                }
            elif name in ("daemon_ready", "sim_pool", "drained", "daemon_exit", "ring_created"):
                if name == "daemon_ready":
                    self.t_ready = time.monotonic()
                self.events.setdefault(name, ev)
            if ev.get("level") in ("error", "critical"):
                self.errors.append(f"{name}: {ev.get('msg', '')}"[:300])

    def join(self, timeout: float) -> None:
        self._t.join(timeout)


def run_daemon_case(
    case: Case,
    scenario: Scenario,
    dump: Path,
    workdir: Path,
    on_verdict: Callable[[int], None] | None = None,
    start_timeout_s: float = 180.0,
) -> dict:
    """Run the daemon on `case` for `case.frames` frames; return the raw readings (see `stats.summarize_daemon`)."""
    import zmq

    workdir.mkdir(parents=True, exist_ok=True)
    cfg_path = workdir / "station.toml"
    write_config(cfg_path, case)
    port = free_port()
    pub = f"tcp://127.0.0.1:{port}"
    uri = source_uri(case, scenario, dump)
    cmd = [
        sys.executable, "-m", "inspectd.pipeline.run", "--config", str(cfg_path), "--source", uri,
        "--pub", pub, "--query", "tcp://127.0.0.1:*", "--journal", str(workdir / "journal.sqlite"),
        "--archive-dir", str(workdir / "ng"), "--station", "BENCH",
        "--deadline-ms", f"{case.effective_deadline_ms():g}", "--workers", str(case.workers),
        "--ring-slots", str(case.ring_slots), "--overload", "timeout" if case.paced else "block",
        "--metrics-port", "-1", "--log-level", "info", "--verdict-log", "all", "--stop-after", str(case.frames), "--tips", "model",
    ]  # fmt: skip
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env.pop("NOTIFY_SOCKET", None)
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.linger = 0
    sub.rcvhwm = 100000
    sub.subscribe(b"verdict.")
    sub.subscribe(b"heartbeat")
    sub.connect(pub)
    t_start = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    logs = _LogPump(proc.stderr)
    mon = TreeMonitor(proc.pid)
    verdicts: list[dict] = []
    recv_ns: list[int] = []
    heartbeats = 0
    heartbeat_before_first = False
    s_first = s_last = None
    warmup = scenario.warmup_frames
    budget_s = start_timeout_s + case.frames * (2.0 + case.effective_deadline_ms() / 1000.0)
    last_mem = 0.0
    exited_at: float | None = None
    try:
        while len(verdicts) < case.frames:
            now = time.monotonic()
            if now - t_start > budget_s:
                raise BenchRunError(f"{case.name}: {len(verdicts)}/{case.frames} verdicts after {budget_s:.0f} s")
            if proc.poll() is not None:
                exited_at = exited_at or now
                if now - exited_at > 2.0:  # what was sent before the exit has arrived by now
                    break
            if logs.t_ready is not None and now - last_mem > 0.5:
                if not mon.pids or len(mon.pids) < case.workers + 1:
                    mon.refresh_tree()
                mon.sample(memory=True)
                last_mem = now
            if not sub.poll(100):
                continue
            while True:
                try:
                    topic, payload = sub.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                t_ns = time.time_ns()
                if topic == b"heartbeat":
                    heartbeats += 1
                    continue
                v = json.loads(payload)
                if not verdicts:
                    heartbeat_before_first = heartbeats > 0
                verdicts.append({k: v.get(k) for k in VERDICT_KEYS})
                recv_ns.append(t_ns)
                n = len(verdicts)
                if n == warmup + 1:
                    mon.refresh_tree()
                    s_first = mon.sample()
                elif n == case.frames:
                    s_last = mon.sample(memory=True)
                if on_verdict:
                    on_verdict(n)
        try:
            rc = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = proc.wait(10)
            logs.errors.append("daemon did not exit within 60 s of its last verdict (killed)")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        sub.close(0)
        ctx.term()
    logs.join(5.0)
    cpu = utilisation(s_first, s_last, os.cpu_count() or 1, root=proc.pid) if s_first and s_last else None
    return {
        "case": case.name,
        "source_uri": uri,
        "exit_code": rc,
        "frames_offered": case.frames,
        "verdicts": verdicts,
        "recv_ns": recv_ns,
        "stage_events": logs.verdict_events,
        "heartbeat_before_first_verdict": heartbeat_before_first,
        "start_to_ready_s": round(logs.t_ready - t_start, 2) if logs.t_ready else None,
        "cpu": cpu,
        "cores": os.cpu_count() or 1,
        "peak_rss_mb": round(mon.peak_rss_mb, 1),
        "peak_pss_mb": round(mon.peak_pss_mb, 1),
        "processes": len(mon.pids),
        "sim_pool": (logs.events.get("sim_pool") or {}).get("pool"),
        "errors": logs.errors[:20],
        "log_tail": "".join(logs.tail[-15:]) if rc not in (0, None) else "",
    }
