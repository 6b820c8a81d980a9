"""The bench report: JSON + CSV under bench/results/, PNG plots, and the terminal table."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

CSV_FIELDS = ("case", "mode", "source", "size", "bit_depth", "workers", "engine_threads", "offered", "repeats_ok",
              "fps", "fps_min", "fps_max", "vs_naive", "p50_ms", "p95_ms", "p99_ms", "max_ms", "cpu_pct",
              "main_cpu_pct", "machine_cpu_pct", "cpu_ms_per_frame", "main_cpu_ms_per_frame", "peak_rss_mb", "peak_pss_mb", "frames_offered", "verdicts_received", "ok", "ng",
              "error", "timeout", "preprocess_ms", "locate_ms", "detect_ms", "refine_ms", "measure_ms",
              "queue_ms", "publish_ms", "pck_1pct", "median_err_px", "miss_rate", "overkill_rate",
              "escape_rate")  # fmt: skip


def stem(result: dict) -> str:
    date = result["started_utc"][:10]
    return f"{date}-{result['machine']['host_kind']}-{result['scenario']['name']}"


def _r(x, nd=2):
    return None if x is None else round(float(x), nd)


def csv_rows(result: dict) -> list[dict]:
    rows = []
    for c in result["cases"]:
        k, s, a = c["case"], c["summary"] or {}, c["accuracy"] or {}
        res = s.get("results_total") or {}
        st, tm = s.get("stage_ms") or {}, s.get("timing_ms") or {}
        rows.append({
            "case": k["name"], "mode": k["mode"], "source": k["source"] if k["mode"] == "daemon" else "memory",
            "size": k["size"], "bit_depth": k["bit_depth"],
            "workers": k["workers"] if k["mode"] == "daemon" else 1, "engine_threads": k["engine_threads"],
            "offered": "max" if not k["fps"] or k["mode"] == "naive" else f"{k['fps']:g}",
            "repeats_ok": c["repeats_ok"], "fps": _r(s.get("fps")),
            "fps_min": _r((s.get("fps_range") or [None, None])[0]), "fps_max": _r((s.get("fps_range") or [None, None])[1]),
            "vs_naive": _r(c.get("vs_naive")),
            "p50_ms": _r(s.get("p50_ms"), 1), "p95_ms": _r(s.get("p95_ms"), 1), "p99_ms": _r(s.get("p99_ms"), 1),
            "max_ms": _r(s.get("max_ms"), 1), "cpu_pct": _r(s.get("cpu_pct"), 1),
            "main_cpu_pct": _r(s.get("main_cpu_pct"), 1),
            "cpu_ms_per_frame": _r(s.get("cpu_ms_per_frame"), 1),
            "main_cpu_ms_per_frame": _r(s.get("main_cpu_ms_per_frame"), 1),
            "machine_cpu_pct": _r(s.get("machine_cpu_pct"), 1), "peak_rss_mb": _r(s.get("peak_rss_mb"), 0),
            "peak_pss_mb": _r(s.get("peak_pss_mb"), 0),
            "frames_offered": s.get("frames_offered_total"), "verdicts_received": s.get("verdicts_received_total"),
            "ok": res.get("OK", 0), "ng": res.get("NG", 0), "error": res.get("ERROR", 0), "timeout": res.get("TIMEOUT", 0),
            **{f"{x}_ms": st.get(x) for x in ("preprocess", "locate", "detect", "refine", "measure")},
            "queue_ms": tm.get("queue"), "publish_ms": tm.get("publish"),
            "pck_1pct": _r(a.get("pck_1pct"), 4), "median_err_px": _r(a.get("median_err_px"), 3),
            "miss_rate": _r(a.get("miss_rate"), 4), "overkill_rate": _r(a.get("overkill_rate"), 4),
            "escape_rate": _r(a.get("escape_rate"), 4),
        })  # fmt: skip
    return rows


def write_outputs(result: dict, out_dir: Path, *, latencies: dict, plots: bool = True) -> dict[str, Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    base = stem(result)
    paths: dict[str, Path] = {}
    result["plots"] = {}
    result["plots_skipped"] = None
    if plots:
        try:
            from inspectd.bench import plots as plotmod

            made = plotmod.make_plots(result, latencies, out_dir, base)
            paths.update(made)
            result["plots"] = {k: p.name for k, p in made.items()}
        except ImportError as e:
            result["plots_skipped"] = f"matplotlib not installed (pip install 'inspectd[bench]'): {e}"
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_FIELDS)
    w.writeheader()
    w.writerows(csv_rows(result))
    paths["csv"] = out_dir / f"{base}.csv"
    paths["csv"].write_text(buf.getvalue(), encoding="utf-8")
    paths["json"] = out_dir / f"{base}.json"
    paths["json"].write_text(json.dumps(result, indent=1, default=str) + "\n", encoding="utf-8")
    return paths


def _f(x, fmt="{:.1f}", none="–"):
    return none if x is None else fmt.format(x)


def print_table(result: dict, console) -> None:
    from rich.table import Table

    m = result["machine"]
    gpu = ", ".join(m["gpus"]) or "no GPU"
    rows = csv_rows(result)
    t = Table(
        title=f"inspectd bench · {result['scenario']['name']} · {m['cpu_model']} × {m['cpu_count']} · {gpu} · "
        f"medians of {result['scenario']['repeats']} repeat(s); latency ms",
        title_justify="left",
    )
    for col in ("case", "load", "fps", "×naive", "p50", "p95", "p99", "max", "CPU%", "RSS MB", "TIMEOUT"):
        t.add_column(col, justify="left" if col == "case" else "right")
    for row in rows:
        t.add_row(
            row["case"], row["offered"], _f(row["fps"]), _f(row["vs_naive"], "{:.2f}×"), _f(row["p50_ms"], "{:.0f}"),
            _f(row["p95_ms"], "{:.0f}"), _f(row["p99_ms"], "{:.0f}"), _f(row["max_ms"], "{:.0f}"),
            _f(row["cpu_pct"], "{:.0f}"), _f(row["peak_rss_mb"], "{:.0f}"),
            f"{row['timeout']}" + ("" if row["verdicts_received"] == row["frames_offered"]
                                    else f" ({row['verdicts_received']}/{row['frames_offered']} recv)"),
        )  # fmt: skip
    console.print(t)
    st = Table(title="where the time goes (median ms per frame) and accuracy on the bench dump", title_justify="left")
    for col in ("case", "prep", "locate", "detect", "refine", "meas", "queue", "publ", "CPU ms/fr", "PCK@1%",
                "err px", "overkill", "escape"):  # fmt: skip
        st.add_column(col, justify="left" if col == "case" else "right")
    for row in rows:
        st.add_row(
            row["case"], *(_f(row[f"{x}_ms"]) for x in ("preprocess", "locate", "detect", "refine", "measure",
                                                         "queue", "publish")),
            _f(row["cpu_ms_per_frame"], "{:.0f}"), _f(row["pck_1pct"], "{:.3f}"), _f(row["median_err_px"], "{:.2f}"), _f(row["overkill_rate"], "{:.2f}"),
            _f(row["escape_rate"], "{:.2f}"),
        )  # fmt: skip
    console.print(st)
    tg = result.get("targets") or {}
    for key, label, unit in (("sustained_fps", "sustained fps", "fps"), ("vs_naive", "× naive", "×"),
                             ("p99_at_10fps_ms", "p99 at 10 fps", "ms")):  # fmt: skip
        x = tg.get(key)
        if x:
            ok = "[green]met[/green]" if x["met"] else "[red]not met[/red]"
            console.print(f"target {label} at {tg['size']}²/{tg['bit_depth']}b: {x['measured']:.2f} {unit} "
                          f"(target {x['target']:g}) {ok} — {x['case']}")  # fmt: skip
    bg = result["background"]
    console.print(f"machine CPU busy before the runs: {bg['machine_cpu_pct_before']} %"
                  + (f"; busiest: {bg['busiest_processes_before'][0]['cmd'][:60]}" if bg["busiest_processes_before"] else ""))  # fmt: skip
    for f in result["failures"]:
        console.print(f"[red]failure:[/red] {f}")


def markdown(result: dict) -> str:
    """The README's tables from a result JSON (``python -m inspectd.bench.report FILE.json``)."""
    rows = csv_rows(result)
    m = result["machine"]
    lines = [
        f"{result['scenario']['name']} · {result['started_utc']} · {m['cpu_model']} × {m['cpu_count']} · "
        f"{', '.join(m['gpus']) or 'no GPU'} · medians of {result['scenario']['repeats']} repeats · "
        f"machine CPU busy before: {result['background']['machine_cpu_pct_before']} %",
        "",
        "| case | load | fps | × naive | p50 ms | p95 ms | p99 ms | max ms | CPU % (main) | RSS MB | verdicts | TIMEOUT |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['case']} | {r['offered']} | {_f(r['fps'])} | {_f(r['vs_naive'], '{:.2f}×')} | "
            f"{_f(r['p50_ms'], '{:.0f}')} | {_f(r['p95_ms'], '{:.0f}')} | {_f(r['p99_ms'], '{:.0f}')} | "
            f"{_f(r['max_ms'], '{:.0f}')} | {_f(r['cpu_pct'], '{:.0f}')}"
            + (f" ({_f(r['main_cpu_pct'], '{:.0f}')})" if r["main_cpu_pct"] is not None else "")
            + f" | {_f(r['peak_rss_mb'], '{:.0f}')} | "
            f"{r['verdicts_received']}/{r['frames_offered']} | {r['timeout']} |"
        )
    lines += [
        "",
        "| case | preprocess | locate | detect | refine | measure | queue | publish | CPU ms/frame (main) | PCK@1% | median err px | miss | overkill | escape |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['case']} | "
            + " | ".join(_f(r[f"{x}_ms"]) for x in ("preprocess", "locate", "detect", "refine", "measure", "queue", "publish"))
            + f" | {_f(r['cpu_ms_per_frame'], '{:.0f}')}"
            + (f" ({_f(r['main_cpu_ms_per_frame'], '{:.0f}')})" if r["main_cpu_ms_per_frame"] is not None else "")
            + f" | {_f(r['pck_1pct'], '{:.3f}')} | {_f(r['median_err_px'], '{:.2f}')} | {_f(r['miss_rate'], '{:.3f}')} | "
            f"{_f(r['overkill_rate'], '{:.2f}')} | {_f(r['escape_rate'], '{:.2f}')} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    import sys

    if len(sys.argv) > 2 and sys.argv[2] == "--rewrite":  # re-derive ratios/targets, rewrite JSON, CSV, plots
        from inspectd.bench.runner import derive

        res = derive(json.loads(Path(sys.argv[1]).read_text()))
        lats = {c["case"]["name"]: c.get("latencies_ms") or [] for c in res["cases"]}
        keep_cdf = not any(lats.values())  # an older result without latencies: keep its CDF plot
        if keep_cdf:
            cdf = Path(sys.argv[1]).with_name(stem(res) + "-latency-cdf.png")
            saved = cdf.read_bytes() if cdf.is_file() else None
        write_outputs(res, Path(sys.argv[1]).parent, latencies=lats)
        if keep_cdf and saved is not None:
            cdf.write_bytes(saved)
    print(markdown(json.loads(Path(sys.argv[1]).read_text())), end="")
