"""`inspectd bench` on a tiny scenario: the real CLI, a real daemon subprocess, a real ZMQ subscriber.

Checks the JSON's schema and that every figure is a measurement (present,
positive, counts consistent), never how fast anything is: no timed assertions.
"""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import cli

REPO = Path(__file__).resolve().parents[1]

TINY = """
name = "tiny"
description = "test: 512² 8-bit, naive + daemon flat out + daemon paced, 1 repeat"
repeats = 1
warmup_frames = 2
seed = 5
dump_frames = 6
sim_pool = 3

[defaults]
size = 512
bit_depth = 8
frames = 10
engine_threads = 1

[[cases]]
mode = "naive"

[[cases]]
mode = "daemon"
workers = 1

[[cases]]
mode = "daemon"
workers = 2
fps = 20

[[cases]]
mode = "daemon"
source = "sim"
workers = 1
fps = 20
"""

CASE_KEYS = {"case", "repeats_ok", "summary", "vs_naive", "naive_fps", "accuracy", "runs"}
SUMMARY_KEYS = {"fps", "p50_ms", "p95_ms", "p99_ms", "max_ms", "mean_ms", "cpu_pct", "machine_cpu_pct",
                "peak_rss_mb", "stage_ms", "timing_ms", "results_total", "frames_offered_total",
                "verdicts_received_total", "fps_range", "p99_ms_range"}  # fmt: skip
RUN_KEYS = {"frames_offered", "verdicts_received", "measured_frames", "results", "fps", "p50_ms", "p99_ms",
            "cpu_pct", "peak_rss_mb", "stage_ms", "detector", "seq_gap_free"}  # fmt: skip


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bench")
    scenario = tmp / "tiny.toml"
    scenario.write_text(TINY)
    out = tmp / "results"
    r = subprocess.run(
        [sys.executable, "-m", "inspectd", "bench", "--scenario", str(scenario), "--out", str(out),
         "--cache", str(tmp / "cache")],
        cwd=REPO, capture_output=True, text=True, timeout=280,
    )  # fmt: skip
    assert r.returncode == 0, f"bench failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    jsons = list(out.glob("*-tiny.json"))
    assert len(jsons) == 1, list(out.iterdir())
    return json.loads(jsons[0].read_text()), out, r.stdout


def _positive(x, what):
    assert x is not None and isinstance(x, (int, float)) and math.isfinite(x) and x > 0, f"{what} = {x!r}"


def test_schema_and_machine(bench_run):
    res, out, stdout = bench_run
    assert res["schema"] == "inspectd.bench/1"
    for k in ("scenario", "machine", "background", "started_utc", "finished_utc", "duration_s", "cases",
              "targets", "failures", "plots"):  # fmt: skip
        assert k in res, k
    assert res["failures"] == []
    m = res["machine"]
    assert m["cpu_model"] and m["cpu_count"] >= 1 and isinstance(m["gpus"], list) and m["host_kind"]
    assert out.joinpath(f"{res['started_utc'][:10]}-{m['host_kind']}-tiny.json").is_file()
    assert len(res["cases"]) == 4
    assert "naive 512/8" in stdout and "p99" in stdout  # the table was printed


def test_every_figure_is_a_measurement(bench_run):
    res, _, _ = bench_run
    for c in res["cases"]:
        assert CASE_KEYS <= set(c), c.keys()
        name, case, s = c["case"]["name"], c["case"], c["summary"]
        assert c["repeats_ok"] == 1 == len(c["runs"]), name
        assert SUMMARY_KEYS <= set(s), (name, SUMMARY_KEYS - set(s))
        for k in ("fps", "p50_ms", "p95_ms", "p99_ms", "max_ms", "cpu_pct", "peak_rss_mb"):
            _positive(s[k], f"{name}: {k}")
        assert s["p50_ms"] <= s["p95_ms"] <= s["p99_ms"] <= s["max_ms"], name
        # counts: every frame offered got exactly one verdict, and the results add up
        assert s["verdicts_received_total"] == s["frames_offered_total"] == case["frames"], name
        assert sum(s["results_total"].values()) == case["frames"], name
        run = c["runs"][0]
        assert RUN_KEYS <= set(run), (name, RUN_KEYS - set(run))
        assert run["measured_frames"] == case["frames"] - res["scenario"]["warmup_frames"], name
        assert run["seq_gap_free"] is True, name
        assert run["detector"] and run["detector"] != "none", name  # the real model ran
        for stage in ("preprocess", "locate", "detect", "measure"):
            _positive(s["stage_ms"].get(stage), f"{name}: stage {stage}")
        if case["mode"] == "daemon":
            assert run["heartbeat_before_first_verdict"] is True, name  # subscribed before the first frame
            assert run["exit_code"] == 0, name
            for k in ("source", "queue", "inspect", "publish"):
                _positive(s["timing_ms"].get(k), f"{name}: timing {k}")
            _positive(s["peak_pss_mb"], f"{name}: pss")
            if case["fps"]:
                _positive(run["offered_fps"], f"{name}: offered fps")
        acc = c["accuracy"]
        offered = min(case["frames"], res["scenario"]["dump_frames"])
        if case["source"] == "sim" and case["mode"] == "daemon":
            offered = min(case["frames"], res["scenario"]["sim_pool"])
        assert acc["n_images"] == offered, name
        assert acc["first_run"]["frames_without_verdict"] == 0, name
        _positive(acc["pck_1pct"], f"{name}: PCK@1%")
    flat_out = [c for c in res["cases"] if c["case"]["mode"] == "daemon" and not c["case"]["fps"]]
    for c in flat_out:
        _positive(c["vs_naive"], "daemon/naive throughput ratio")
        assert c["vs_naive"] == pytest.approx(c["summary"]["fps"] / c["naive_fps"])
        assert c["naive_case"] == "naive 512/8 t1"  # the baseline: the naive case of that size, default engine
    for c in res["cases"]:
        assert len(c["latencies_ms"]) == c["case"]["frames"] - res["scenario"]["warmup_frames"], c["case"]["name"]


def test_csv_and_plots(bench_run):
    res, out, _ = bench_run
    base = f"{res['started_utc'][:10]}-{res['machine']['host_kind']}-tiny"
    rows = list(csv.DictReader(out.joinpath(f"{base}.csv").open()))
    assert [r["case"] for r in rows] == [c["case"]["name"] for c in res["cases"]]
    for r in rows:
        assert float(r["fps"]) > 0 and float(r["p99_ms"]) > 0 and r["verdicts_received"] == r["frames_offered"]
    pytest.importorskip("matplotlib")
    assert set(res["plots"]) == {"latency_cdf", "throughput", "stages"}
    for name in res["plots"].values():
        png = out / name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


def test_bad_scenario_is_a_usage_error(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "bad"\n[[cases]]\nmode = "naive"\nframes = 3\nwarmup = 1\n')
    r = subprocess.run([sys.executable, "-m", "inspectd", "bench", "--scenario", str(bad), "--out", str(tmp_path)],
                       cwd=REPO, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert r.returncode == 2, r.stderr
    assert "warmup" in r.stderr


def test_replay_preload_serves_memory_with_fresh_stamps(tmp_path):
    from inspectd.sim import SimOptions
    from inspectd.sim.dump import simulate_dump
    from inspectd.sources import open_source

    simulate_dump(tmp_path, 2, 3, SimOptions(size=256, bit_depth=8))
    src = open_source(f"replay:{tmp_path}?fps=0&loop=1&preload=1")
    src.open()
    for p in tmp_path.glob("*.tif*"):
        p.unlink()  # preloaded: the files are no longer needed
    a, b, a2 = src.read(1.0), src.read(1.0), src.read(1.0)
    src.close()
    assert a.frame_id == a2.frame_id != b.frame_id
    assert a.image is a2.image  # the same pixels in memory, no decode
    assert a.meta is not a2.meta and a2.meta.t_acquired_ns >= a.meta.t_acquired_ns > 0


def test_bench_writes_outside_the_checkout_unless_told_to_save():
    """An ad-hoc `inspectd bench` must not dirty the tracked bench/results (first-hour item, #17)."""
    from inspectd.cli.tools import BENCH_RESULTS, BENCH_SCRATCH

    assert BENCH_RESULTS == Path("bench/results") and BENCH_SCRATCH == Path("runs/bench")
    ignored = subprocess.run(["git", "check-ignore", "-q", str(BENCH_SCRATCH)], cwd=REPO)
    assert ignored.returncode == 0, f"{BENCH_SCRATCH} must be git-ignored"
    r = cli("bench", "--save", "--out", "elsewhere")
    assert r.returncode == 2 and "either --save or --out" in r.stderr
