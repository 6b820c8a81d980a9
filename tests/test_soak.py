"""Soak (issue #18 item 6): the daemon on a long simulated stream, sampled for leaks. Behind the `soak`
marker: `pytest -m soak tests/test_soak.py` (INSPECTD_SOAK_FRAMES, default 20 000; INSPECTD_SOAK_TIPS,
default `labels` so the run measures the daemon, not the model). Writes bench/results/soak-latest.json.

Every frame in must come out as exactly one journaled verdict; resident memory, open files and shared-memory
segments of the daemon and its workers must stay flat (last third against the second third of the run: the
first third includes warm-up and allocator growth)."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path

import pytest

from test_daemon import Daemon, pid_alive, shm_segments

pytestmark = pytest.mark.soak
REPO = Path(__file__).resolve().parents[1]


def _children(pid: int) -> list[int]:
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if int((p / "stat").read_text().split(") ")[1].split()[1]) == pid:
                    out.append(int(p.name))
            except (OSError, IndexError, ValueError):
                pass
    return out


def _sample(pid: int) -> dict:
    pids = [pid, *_children(pid)]
    rss = fds = 0
    for q in pids:
        try:
            for line in Path(f"/proc/{q}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    rss += int(line.split()[1])
            fds += len(os.listdir(f"/proc/{q}/fd"))
        except OSError:
            pass
    return {"t": time.monotonic(), "rss_mb": rss / 1024.0, "fds": fds, "shm": len(shm_segments(pid)), "procs": len(pids)}


def test_soak_frames_in_equal_verdicts_out_and_resources_stay_flat(tmp_path):
    n = int(os.environ.get("INSPECTD_SOAK_FRAMES", "20000"))
    tips = os.environ.get("INSPECTD_SOAK_TIPS", "labels")
    fps = float(os.environ.get("INSPECTD_SOAK_FPS", "20"))
    journal = tmp_path / "journal.sqlite"
    d = Daemon(tmp_path, "--source", f"sim:?seed=5&fps={fps}&size=1000&count={n}&pool=16", "--tips", tips,
               "--journal", str(journal), "--archive-dir", str(tmp_path / "ng"), "--workers", "2",
               "--exit-at-end")  # fmt: skip
    samples = []
    t0 = time.monotonic()
    try:
        d.addresses()
        while d.proc.poll() is None:
            samples.append(_sample(d.proc.pid))
            time.sleep(2.0)
            assert time.monotonic() - t0 < 6 * 3600, "soak ran past 6 h"
        rc = d.proc.wait(10)
    finally:
        d.close()
    wall = time.monotonic() - t0
    with sqlite3.connect(journal) as db:
        rows = db.execute("SELECT count(*), min(seq), max(seq) FROM verdicts").fetchone()
        results = dict(db.execute("SELECT json_extract(json, '$.result'), count(*) FROM verdicts GROUP BY 1").fetchall())
        owed = db.execute("SELECT count(*) FROM acquired").fetchone()[0]  # frames acquired without a verdict
    k = len(samples) // 3
    mid, last = samples[k : 2 * k], samples[2 * k :]

    def med(xs, key):
        v = sorted(s[key] for s in xs)
        return v[len(v) // 2] if v else float("nan")

    report = {
        "frames": n,
        "tips": tips,
        "source_fps": fps,
        "journaled": rows[0],
        "acquired_without_verdict": owed,
        "seq_range": [rows[1], rows[2]],
        "results": results,
        "exit_code": rc,
        "wall_s": round(wall, 1),
        "fps": round(n / wall, 2),
        "samples": len(samples),
        "rss_mb_mid_last": [round(med(mid, "rss_mb"), 1), round(med(last, "rss_mb"), 1)],
        "rss_mb_max": round(max(s["rss_mb"] for s in samples), 1),
        # the series itself (every 10th sample): a step (a cache filling) and a slope (a leak) look alike in medians
        "rss_mb_series": [round(s["rss_mb"], 1) for s in samples[::10]],
        "fds_mid_last": [med(mid, "fds"), med(last, "fds")],
        "shm_mid_last": [med(mid, "shm"), med(last, "shm")],
        "procs_max": max(s["procs"] for s in samples),
        "shm_left_after_exit": len(shm_segments(d.proc.pid)),
        "daemon_alive_after_exit": pid_alive(d.proc.pid),
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": f"{os.cpu_count()} cores",
    }
    out = REPO / "bench" / "results" / "soak-latest.json"
    out.write_text(json.dumps(report, indent=1) + "\n")
    assert rc == 0, d.log_tail()
    assert rows[0] == n and rows[1] == 1 and rows[2] == n and owed == 0, report
    assert len(samples) >= 6, report
    assert report["rss_mb_mid_last"][1] <= 1.10 * report["rss_mb_mid_last"][0] + 20, report
    assert report["fds_mid_last"][1] <= report["fds_mid_last"][0] + 4, report
    assert report["shm_mid_last"][1] == report["shm_mid_last"][0] and report["shm_left_after_exit"] == 0, report
