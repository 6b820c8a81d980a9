"""`inspectd eval`'s terminal table: an `EvalReport` as the rows a process engineer reads."""

from __future__ import annotations

from inspectd.evaluation.metrics import CLASSES, EvalReport

__all__ = ["format_table"]


def _f(x, fmt="{:.3f}", none="-") -> str:
    return none if x is None else fmt.format(x)


def _p(x) -> str:
    return _f(None if x is None else 100.0 * x, "{:.2f} %")


def format_table(report: EvalReport) -> str:
    """Plain-text table of the report (no colour, fits 80 columns)."""
    r = report
    rows: list[tuple[str, str]] = [
        ("images", str(r.n_images)),
        ("tips: labelled / predicted / matched", f"{r.n_gt_tips} / {r.n_pred_tips} / {r.n_matched}"),
        ("NME", _p(r.nme)),
    ]
    rows += [(f"PCK@{t}", _p(v)) for t, v in r.pck.items()]
    rows += [(f"PCS@{t}", _p(v)) for t, v in r.pcs.items()]
    rows += [
        ("miss rate", f"{_p(r.miss_rate)} ({r.n_missed})"),
        ("false-tip rate", f"{_p(r.false_tip_rate)} ({r.n_false})"),
        (
            "pixel error median / p95 / p99",
            " / ".join(_f(r.error_px[k], "{:.2f}") for k in ("median", "p95", "p99")) + " px",
        ),
    ]
    for k in CLASSES:
        c = r.per_class[k]
        rows.append(
            (
                f"  {k}: NME / miss / count acc",
                f"{_p(c['nme'])} / {_p(c['miss_rate'])} / {_p(r.count_accuracy[k])}",
            )
        )
    rows += [
        ("overhang MAE", f"{_f(r.overhang_mae_mm, '{:.4f}')} mm ({r.n_overhang_pairs} cathodes)"),
        ("overkill (expected OK, rejected)", f"{r.overkill} / {r.n_expected_ok} ({_p(r.overkill_rate)})"),
        ("escape (expected NG, passed)", f"{r.escape} / {r.n_expected_ng} ({_p(r.escape_rate)})"),
    ]
    if any(v is not None for v in r.latency_ms.values()):
        rows.append(
            ("latency p50 / p95 / p99", " / ".join(_f(r.latency_ms[k], "{:.1f}") for k in ("p50", "p95", "p99")) + " ms")
        )
    if r.fps is not None:
        rows.append(("sustained fps", f"{r.fps:.1f}"))
    rows.append(("normaliser", ", ".join(f"{k}: {v}" for k, v in r.diag_sources.items()) or "-"))
    w = max(len(a) for a, _ in rows)
    lines = [f"{a:<{w}}  {b}" for a, b in rows]
    if r.confusion:
        preds = sorted({p for c in r.confusion.values() for p in c})
        lines.append("")
        lines.append("verdicts (rows expected, columns predicted)")
        lines.append("          " + "".join(f"{p:>9}" for p in preds))
        for e, c in r.confusion.items():
            lines.append(f"{e:<10}" + "".join(f"{c.get(p, 0):>9}" for p in preds))
    for note in r.notes:
        lines.append(f"note: {note}")
    return "\n".join(lines)
