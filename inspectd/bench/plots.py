"""PNG plots of a bench result (matplotlib, the optional ``bench`` extra): latency CDF, throughput vs load, stages."""

from __future__ import annotations

from pathlib import Path

import numpy as np

STAGE_COLOURS = {"preprocess": "#4c72b0", "locate": "#dd8452", "detect": "#55a868", "refine": "#c44e52",
                 "measure": "#8172b3", "queue": "#937860", "publish": "#da8bc3", "other": "#bbbbbb"}  # fmt: skip


def make_plots(result: dict, latencies: dict[str, list[float]], out_dir: Path, base: str) -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker  # noqa: F401

    m = result["machine"]
    where = f"{m['cpu_model']} × {m['cpu_count']}" + (f", {m['gpus'][0]}" if m["gpus"] else "")
    paths = {}

    # 1. latency CDF, one line per case: paced (line rate) cases left, flat-out cases and the naive loop right
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.5), sharey=True)
    for ax in axes:
        ax.set_prop_cycle(color=plt.cm.tab20.colors)
    for c in result["cases"]:
        lat = np.sort(np.asarray(latencies.get(c["case"]["name"], []), dtype=float))
        if lat.size == 0:
            continue
        y = np.arange(1, lat.size + 1) / lat.size
        paced = c["case"]["mode"] == "daemon" and c["case"]["fps"]
        ax = axes[0] if paced else axes[1]
        style = "--" if c["case"]["mode"] == "naive" else "-"
        ax.plot(lat, y, style, label=c["case"]["name"], linewidth=1.4)
    for ax, title in zip(axes, ("paced (a line's rate): acquisition → verdict at a SUB",
                                "as fast as possible (queueing included); naive: frame → verdict")):  # fmt: skip
        ax.axvline(80, color="grey", linestyle=":", linewidth=1)
        ax.text(80, 0.02, " 80 ms", color="grey", fontsize=8)
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel("latency, ms")
        ax.set_title(title, fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="lower right")
    axes[0].set_ylabel("fraction of frames")
    fig.suptitle(f"Latency CDF · {result['scenario']['name']} · {where}", fontsize=10)
    fig.tight_layout()
    paths["latency_cdf"] = out_dir / f"{base}-latency-cdf.png"
    fig.savefig(paths["latency_cdf"], dpi=110)
    plt.close(fig)

    # 2. throughput vs offered load, per (size, bits, source, workers, threads); naive as a horizontal line
    fig, ax = plt.subplots(figsize=(8, 5.5))
    ax.set_prop_cycle(color=plt.cm.tab20.colors)
    series: dict[tuple, list] = {}
    max_offered = 1.0
    for c in result["cases"]:
        k, s = c["case"], c["summary"]
        if not s or s.get("fps") is None:
            continue
        if k["mode"] == "naive":
            ax.axhline(s["fps"], linestyle="--", linewidth=1, color="grey")
            ax.text(0.5, s["fps"], f" {k['name']}: {s['fps']:.1f}", fontsize=7, va="bottom")
            continue
        offered = k["fps"] if k["fps"] else (s.get("offered_fps") or s["fps"])
        max_offered = max(max_offered, offered)
        key = (k["size"], k["bit_depth"], k["source"], k["workers"], k["engine_threads"])
        series.setdefault(key, []).append((offered, s["fps"], not k["fps"]))
    for (size, bits, src, w, th), pts in sorted(series.items()):
        pts.sort()
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        line, = ax.plot(xs, ys, "-o", label=f"{src} {size}²/{bits}b w{w} t{th}", markersize=4)
        for x, y, unpaced in pts:
            if unpaced:
                ax.plot([x], [y], "s", color=line.get_color(), markersize=8, fillstyle="none")
    ax.plot([0, max_offered * 1.1], [0, max_offered * 1.1], ":", color="grey", linewidth=1, label="delivered = offered")
    ax.set_xlabel("offered load, fps (squares: as fast as possible, plotted at the rate it reached)")
    ax.set_ylabel("verdicts per second, sustained")
    ax.set_title(f"Throughput vs offered load · {where}", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    paths["throughput"] = out_dir / f"{base}-throughput.png"
    fig.savefig(paths["throughput"], dpi=110)
    plt.close(fig)

    # 3. stage breakdown: stacked ms per frame; daemon adds queue and publish from its timing
    rows = []
    for c in result["cases"]:
        s = c["summary"]
        if not s:
            continue
        parts = dict(s.get("stage_ms") or {})
        tm = s.get("timing_ms") or {}
        if tm:
            parts["queue"] = tm.get("queue", 0.0)
            parts["publish"] = (tm.get("return", 0.0) or 0.0) + (tm.get("publish", 0.0) or 0.0)
        rows.append((c["case"]["name"], parts))
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(rows) + 1.8))
    names = [r[0] for r in rows]
    left = np.zeros(len(rows))
    for stage, colour in STAGE_COLOURS.items():
        vals = np.array([float(r[1].get(stage) or 0.0) for r in rows])
        if not vals.any():
            continue
        ax.barh(names, vals, left=left, color=colour, label=stage)
        left += vals
    ax.invert_yaxis()
    ax.set_xlabel("median ms per frame (daemon: stages inside a worker; queue; return + publish)")
    ax.set_title(f"Where the time goes · {where}", fontsize=10)
    ax.tick_params(axis="y", labelsize=7)
    ax.grid(True, axis="x", alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    paths["stages"] = out_dir / f"{base}-stages.png"
    fig.savefig(paths["stages"], dpi=110)
    plt.close(fig)
    return paths
