"""Figures from raw readings: one run's summary, and the median over a case's repeats.

Warm-up frames (the first ``warmup_frames`` of every run) are left out of every
figure. Latency: p50/p95/p99/max in ms. Sustained fps: measured verdicts over
the span of their receipt (daemon) or of the loop (naive).
"""

from __future__ import annotations

from collections import Counter

import numpy as np

STAGES = ("preprocess", "locate", "detect", "refine", "measure")
TIMINGS = ("source", "queue", "inspect", "return", "publish")
# the figures of one run that repeats are reduced to by their median
RUN_FIGURES = ("fps", "offered_fps", "p50_ms", "p95_ms", "p99_ms", "max_ms", "mean_ms", "cpu_pct",
               "main_cpu_pct", "workers_cpu_pct", "machine_cpu_pct", "peak_rss_mb", "peak_pss_mb",
               "cpu_ms_per_frame", "main_cpu_ms_per_frame")  # fmt: skip


def pct(values, q: float) -> float | None:
    return float(np.percentile(values, q)) if len(values) else None


def latency_figures(lat_ms: list[float]) -> dict:
    a = np.asarray(lat_ms, dtype=float)
    return {
        "p50_ms": pct(a, 50),
        "p95_ms": pct(a, 95),
        "p99_ms": pct(a, 99),
        "max_ms": float(a.max()) if a.size else None,
        "mean_ms": float(a.mean()) if a.size else None,
    }


def _stage_medians(rows: list[dict], keys) -> dict:
    out = {}
    for k in keys:
        vals = [r[k] for r in rows if r.get(k) is not None]
        if vals:
            out[k] = round(float(np.median(vals)), 2)
    return out


def _results(verdicts: list[dict]) -> dict:
    c = Counter(v["result"] for v in verdicts)
    return {k: c.get(k, 0) for k in ("OK", "NG", "ERROR", "TIMEOUT")}


def _cpu_ms_per_frame(pct: float | None, fps: float | None, cores: int) -> float | None:
    """CPU time spent per verdict (all processes of the run), ms: what bounds throughput at cores x 1000 / this."""
    if pct is None or not fps:
        return None
    return round(pct / 100.0 * cores * 1000.0 / fps, 1)


def summarize_naive(raw: dict) -> dict:
    pf = raw["per_frame"]
    measured = pf[raw["warmup"] :]
    lat = [r["latency_ms"] for r in measured]
    return {
        "frames_offered": raw["frames"],
        "verdicts_received": len(pf),
        "measured_frames": len(measured),
        "results": _results(pf),
        "timeouts_overload": 0,
        "timeouts_deadline": 0,
        "fps": raw["fps"],
        "offered_fps": None,
        **latency_figures(lat),
        "cpu_pct": round(raw["cpu_pct"], 1),
        "cpu_ms_per_frame": _cpu_ms_per_frame(raw["cpu_pct"], raw["fps"], raw["cores"]),
        "main_cpu_ms_per_frame": None,
        "machine_cpu_pct": raw.get("machine_cpu_pct"),
        "peak_rss_mb": round(raw["peak_rss_mb"], 1),
        "peak_pss_mb": None,
        "stage_ms": _stage_medians([r["stage_ms"] for r in measured], STAGES),
        "timing_ms": {},
        "detector": raw["detector"],
        "seq_gap_free": True,
        "errors": [],
    }


def summarize_daemon(raw: dict, warmup: int) -> dict:
    vs, recv = raw["verdicts"], raw["recv_ns"]
    n = len(vs)
    idx = list(range(min(warmup, n), n))
    lat = [(recv[i] - vs[i]["t_acquired_ns"]) / 1e6 for i in idx if vs[i].get("t_acquired_ns")]
    fps = offered = None
    if len(idx) >= 2:
        span = (recv[idx[-1]] - recv[idx[0]]) / 1e9
        fps = (len(idx) - 1) / span if span > 0 else None
        acq = sorted(vs[i]["t_acquired_ns"] for i in idx if vs[i].get("t_acquired_ns"))
        if len(acq) >= 2 and acq[-1] > acq[0]:
            offered = (len(acq) - 1) / ((acq[-1] - acq[0]) / 1e9)
    seqs = [v["seq"] for v in vs]
    gap_free = seqs == list(range(seqs[0], seqs[0] + n)) if n else False
    to_overload = sum(
        1 for v in vs if v["result"] == "TIMEOUT" and any("overload" in (r.get("message") or "") for r in v["reasons"] or [])
    )
    to_total = sum(1 for v in vs if v["result"] == "TIMEOUT")
    measured_seqs = {vs[i]["seq"] for i in idx}
    ev = [e for s, e in raw["stage_events"].items() if s in measured_seqs]
    cpu = raw.get("cpu") or {}
    return {
        "frames_offered": raw["frames_offered"],
        "verdicts_received": n,
        "measured_frames": len(idx),
        "results": _results(vs),
        "timeouts_overload": to_overload,
        "timeouts_deadline": to_total - to_overload,
        "fps": fps,
        "offered_fps": offered,
        **latency_figures(lat),
        "cpu_pct": cpu.get("cpu_pct"),
        "machine_cpu_pct": cpu.get("machine_cpu_pct"),
        "main_cpu_pct": cpu.get("main_cpu_pct"),
        "workers_cpu_pct": cpu.get("workers_cpu_pct"),
        "cpu_ms_per_frame": _cpu_ms_per_frame(cpu.get("cpu_pct"), fps, raw["cores"]),
        "main_cpu_ms_per_frame": _cpu_ms_per_frame(cpu.get("main_cpu_pct"), fps, raw["cores"]),
        "main_threads_ms_per_frame": {
            name: _cpu_ms_per_frame(pct, fps, raw["cores"]) for name, pct in (cpu.get("main_threads_pct") or {}).items()
        },
        "peak_rss_mb": raw["peak_rss_mb"],
        "peak_pss_mb": raw["peak_pss_mb"],
        "stage_ms": _stage_medians([e["stage_ms"] for e in ev], STAGES),
        "timing_ms": _stage_medians([e["timing_ms"] for e in ev], TIMINGS),
        "detector": vs[0].get("model") if vs else None,
        "seq_gap_free": gap_free,
        "heartbeat_before_first_verdict": raw["heartbeat_before_first_verdict"],
        "start_to_ready_s": raw["start_to_ready_s"],
        "exit_code": raw["exit_code"],
        "sim_pool": raw.get("sim_pool"),
        "errors": raw["errors"],
    }


def median_of(runs: list[dict]) -> dict:
    """The median of every figure over repeats, plus min/max of throughput and p99 (the spread)."""
    out: dict = {}
    for k in RUN_FIGURES:
        vals = [r[k] for r in runs if r.get(k) is not None]
        out[k] = float(np.median(vals)) if vals else None
    for k in ("fps", "p99_ms"):
        vals = [r[k] for r in runs if r.get(k) is not None]
        out[f"{k}_range"] = [min(vals), max(vals)] if vals else None
    for part in ("stage_ms", "timing_ms", "main_threads_ms_per_frame"):
        keys = sorted({k for r in runs for k in (r.get(part) or {}) if r[part][k] is not None})
        out[part] = {k: round(float(np.median([r[part][k] for r in runs if (r.get(part) or {}).get(k) is not None])), 2)
                     for k in keys}  # fmt: skip
    tot: Counter = Counter()
    for r in runs:
        tot.update(r["results"])
    out["results_total"] = dict(tot)
    out["timeouts_total"] = sum(r["results"].get("TIMEOUT", 0) for r in runs)
    out["frames_offered_total"] = sum(r["frames_offered"] for r in runs)
    out["verdicts_received_total"] = sum(r["verdicts_received"] for r in runs)
    return out


def latencies_ms(raw: dict, mode: str, warmup: int) -> list[float]:
    """Per-frame latencies of one run (measured frames), for the CDF plot."""
    if mode == "naive":
        return [r["latency_ms"] for r in raw["per_frame"][warmup:]]
    vs, recv = raw["verdicts"], raw["recv_ns"]
    return [(recv[i] - vs[i]["t_acquired_ns"]) / 1e6 for i in range(min(warmup, len(vs)), len(vs))]
