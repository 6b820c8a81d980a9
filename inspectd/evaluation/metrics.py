"""Evaluation metrics (docs/accuracy.md, Metricspaper §3.2).

Tip accuracy
------------
Predicted tips are matched to labelled tips one-to-one, per class, by the
Hungarian algorithm on Euclidean distance with a gating radius: pairs farther
apart than the gate are never matched.  The default gate is 3/4 of the labels'
same-class tip pitch (``default_gate``; ~7.5 px on real 1000² frames), so it
scales with the stack, not with whatever normaliser an image has.  Among matchings the largest number of
within-gate pairs wins, then the smallest total distance.  Unmatched labels are
*misses*, unmatched predictions are *false tips*.

The normaliser ``d`` of an image is the diagonal of its ROI (the paper's
reference distance; at a 300×300 ROI, 1 % of it is 4.24 px).  Its source, in
order: ``gt["roi_diagonal"]`` (or ``"roi_diag"``), ``gt["roi"]`` (a box
``[x0, y0, x1, y1]``), the verdict's ``roi``, and as a last resort the diagonal
of the bounding box of the labelled tips; the report counts how many images
used each source.  An image with no usable normaliser (no ROI, fewer than two
distinct label points) is left out of the normalised metrics and counted.

* NME (eq. 7): mean over all matched tips of all images of ``err / d``.
  Misses have no error and are not in NME; they are in miss rate, PCK, PCS.
* PCK@t (eq. 8): fraction of labelled tips with a match and ``err <= t·d``;
  a missed tip is a failure.
* PCS@θ (eq. 9): fraction of images whose largest ``err / d`` is ``<= θ``; an
  image with any missed tip fails.  (False tips do not fail PCS: they have no
  error; they are in the false-tip rate.)
* Pixel errors: median / p95 / p99 over matched tips, in px.
* Miss rate = misses / labelled tips; false-tip rate = false tips / predicted tips.
* Count accuracy per class: fraction of images whose predicted count equals
  the labelled count.

Measurement and line
--------------------
* Overhang MAE (mm): ``measure()`` runs on the labels and on the predictions
  with the same tip direction (``gt["tip_direction"]`` if given, else inferred
  from the labels and snapped to an axis) and ``gt["mm_per_px"]``; for every
  matched cathode pair, ``|min overhang(pred) - min overhang(label)|``.
* Verdict confusion: expected (``gt["expected"]``, OK/NG) × predicted result.
  Every result but OK is a reject (ERROR and TIMEOUT included).  Overkill =
  expected OK but not predicted OK; escape = expected NG but predicted OK.
  Rates are over the expected-OK and expected-NG images respectively.
* Latency p50/p95/p99 of the verdicts' ``latency_ms`` (only values > 0), and
  sustained fps from the span of ``t_published_ns`` (when set).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Iterable, Mapping

import numpy as np
from scipy.optimize import linear_sum_assignment

from inspectd.inspection.measure import infer_tip_direction, measure

__all__ = [
    "match_tips",
    "default_gate",
    "aggregate",
    "ImageEval",
    "EvalReport",
    "evaluate",
    "evaluate_image",
    "format_table",
    "PCK_THRESHOLDS",
]

PCK_THRESHOLDS = (0.005, 0.01)  # 0.5 %, 1 % of the ROI diagonal
CLASSES = ("anode", "cathode")
GATE_PITCH_FRAC = 0.75  # default gate: 3/4 of the labels' same-class tip pitch
DEFAULT_GATE_FRAC = 0.02  # else 2 % of the ROI diagonal
FALLBACK_GATE_PX = 10.0  # else 10 px


def _pts(a) -> np.ndarray:
    arr = np.asarray(a if a is not None else [], dtype=np.float64)
    if arr.size == 0:
        return np.zeros((0, 2))
    return arr.reshape(-1, 2)


def match_tips(pred, gt, gate_px: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One-to-one matching of predicted to labelled tips of one class.

    Returns ``(pairs, unmatched_pred, unmatched_gt)``: ``pairs`` an (M, 2) int
    array of ``[pred_index, gt_index]`` rows sorted by gt index, every pair at
    distance ``<= gate_px``; the other two are sorted int index arrays.
    """
    p, g = _pts(pred), _pts(gt)
    empty = np.zeros((0, 2), dtype=np.int64)
    if len(p) == 0 or len(g) == 0:
        return empty, np.arange(len(p), dtype=np.int64), np.arange(len(g), dtype=np.int64)
    d = np.hypot(p[:, None, 0] - g[None, :, 0], p[:, None, 1] - g[None, :, 1])
    gate = float(gate_px)
    ok = d <= gate
    # A gated-out pair costs more than any set of admissible pairs, so the
    # solver first maximises the number of admissible pairs, then minimises
    # their total distance.
    big = (min(len(p), len(g)) + 1) * max(gate, 1.0) * 4.0 + 1.0
    cost = np.where(ok, d, big)
    r, c = linear_sum_assignment(cost)
    keep = ok[r, c]
    pairs = np.column_stack([r[keep], c[keep]]).astype(np.int64)
    pairs = pairs[np.argsort(pairs[:, 1], kind="stable")] if len(pairs) else empty
    up = np.setdiff1d(np.arange(len(p)), pairs[:, 0]).astype(np.int64)
    ug = np.setdiff1d(np.arange(len(g)), pairs[:, 1]).astype(np.int64)
    return pairs, up, ug


def default_gate(anode_gt, cathode_gt, frac: float = GATE_PITCH_FRAC) -> float | None:
    """``frac`` × the median distance from each labelled tip to the nearest
    labelled tip of its own class (the layer pitch of one class, ~10 px on real
    frames).  A prediction farther than that from a label is nearer to another
    layer's tip than a localisation of this one.  None with < 2 tips per class.
    """
    nn = []
    for g in (_pts(anode_gt), _pts(cathode_gt)):
        if len(g) >= 2:
            d = np.hypot(g[:, None, 0] - g[None, :, 0], g[:, None, 1] - g[None, :, 1])
            np.fill_diagonal(d, np.inf)
            nn.append(d.min(axis=1))
    if not nn:
        return None
    m = float(np.median(np.concatenate(nn)))
    return frac * m if m > 0 else None


# --------------------------------------------------------------------------- per image


@dataclass
class ImageEval:
    frame_id: str
    diag: float | None  # ROI diagonal (px) used as normaliser
    diag_source: str  # "gt_roi" | "verdict_roi" | "gt_bbox" | "none"
    gate_px: float
    n_gt: dict[str, int]
    n_pred: dict[str, int]
    n_matched: dict[str, int]
    errors_px: dict[str, list[float]]  # matched errors, per class (gt order)
    n_missed: int
    n_false: int
    max_norm_error: float | None  # largest err/d over matched tips (None if no match or no diag)
    pck_hits: dict[float, int]  # labelled tips within t·d, per threshold
    pcs_pass: dict[float, bool | None]  # None when no diag
    overhang_abs_err_mm: list[float]
    expected: str | None
    predicted: str
    latency_ms: float | None
    t_published_ns: int | None

    @property
    def count_ok(self) -> dict[str, bool]:
        return {k: self.n_pred[k] == self.n_gt[k] for k in CLASSES}

    @property
    def pck(self) -> dict[float, float | None]:
        """Per-image PCK: labelled tips within t·d over labelled tips (misses fail)."""
        n = sum(self.n_gt.values())
        return {t: (h / n if (n and self.diag) else None) for t, h in self.pck_hits.items()}

    @property
    def nme(self) -> float | None:
        e = [x for k in CLASSES for x in self.errors_px[k]]
        if not e or not self.diag:
            return None
        return float(np.mean(e) / self.diag)


def _get_tips(d: Mapping[str, Any], key: str) -> np.ndarray:
    if d is None:
        return np.zeros((0, 2))
    v = d.get(key)
    if v is None and isinstance(d.get("labels"), Mapping):
        v = d["labels"].get(key)
    return _pts(v)


def _box_diag(box) -> float | None:
    try:
        x0, y0, x1, y1 = (float(v) for v in box)
    except (TypeError, ValueError):
        return None
    d = math.hypot(x1 - x0, y1 - y0)
    return d if d > 0 and math.isfinite(d) else None


def _normaliser(gt: Mapping[str, Any], verdict: Mapping[str, Any], gt_all: np.ndarray) -> tuple[float | None, str]:
    for key in ("roi_diagonal", "roi_diag"):
        v = gt.get(key)
        if v is not None and float(v) > 0:
            return float(v), "gt_roi"
    if gt.get("roi") is not None:
        d = _box_diag(gt["roi"])
        if d:
            return d, "gt_roi"
    if verdict.get("roi") is not None:
        d = _box_diag(verdict["roi"])
        if d:
            return d, "verdict_roi"
    if len(gt_all) >= 2:
        span = gt_all.max(axis=0) - gt_all.min(axis=0)
        d = float(math.hypot(*span))
        if d > 0:
            return d, "gt_bbox"
    return None, "none"


def _as_dict(obj: Any) -> dict:
    if obj is None:
        return {}
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="json", by_alias=True)
    return dict(obj)


def evaluate_image(
    frame_id: str,
    gt: Mapping[str, Any],
    verdict: Mapping[str, Any] | Any,
    gate_px: float | None = None,
    gate_frac: float = DEFAULT_GATE_FRAC,
) -> ImageEval:
    """Match and score one image (see the module docstring)."""
    gt = _as_dict(gt)
    v = _as_dict(verdict)
    g = {"anode": _get_tips(gt, "anode_tips"), "cathode": _get_tips(gt, "cathode_tips")}
    p = {"anode": _get_tips(v, "anode_tips"), "cathode": _get_tips(v, "cathode_tips")}
    diag, source = _normaliser(gt, v, np.concatenate([g["anode"], g["cathode"]]))
    if gate_px is not None:
        gate = float(gate_px)
    else:
        gate = default_gate(g["anode"], g["cathode"])
        if gate is None:
            gate = gate_frac * diag if diag else FALLBACK_GATE_PX

    errors: dict[str, list[float]] = {}
    pairs_by: dict[str, np.ndarray] = {}
    n_missed = n_false = 0
    for k in CLASSES:
        pairs, up, ug = match_tips(p[k], g[k], gate)
        pairs_by[k] = pairs
        errors[k] = [float(np.hypot(*(p[k][i] - g[k][j]))) for i, j in pairs]
        n_missed += len(ug)
        n_false += len(up)

    all_err = np.array([e for k in CLASSES for e in errors[k]])
    n_gt_total = sum(len(g[k]) for k in CLASSES)
    max_norm = float(all_err.max() / diag) if (diag and all_err.size) else None
    pck_hits = {t: (int(np.sum(all_err <= t * diag)) if diag else 0) for t in PCK_THRESHOLDS}
    pcs: dict[float, bool | None] = {}
    for t in PCK_THRESHOLDS:
        if not diag:
            pcs[t] = None
        elif n_missed:
            pcs[t] = False
        elif n_gt_total == 0:
            pcs[t] = True
        else:
            pcs[t] = bool(max_norm is not None and max_norm <= t)

    # Overhang error per matched cathode.
    ov_err: list[float] = []
    mm = gt.get("mm_per_px")
    if mm and len(pairs_by["cathode"]) and len(g["anode"]) and len(p["anode"]):
        direction = gt.get("tip_direction") or infer_tip_direction(g["anode"], g["cathode"])
        if direction is not None:
            mg = measure(g["anode"], g["cathode"], direction, float(mm))
            mp = measure(p["anode"], p["cathode"], direction, float(mm))
            # measure() reorders: map input index -> ordered index.
            g_pos = np.empty(len(g["cathode"]), np.int64)
            g_pos[mg.cathode_input_index] = np.arange(len(g["cathode"]))
            p_pos = np.empty(len(p["cathode"]), np.int64)
            p_pos[mp.cathode_input_index] = np.arange(len(p["cathode"]))
            for i, j in pairs_by["cathode"]:
                a, b = mp.overhang_min_mm[p_pos[i]], mg.overhang_min_mm[g_pos[j]]
                if np.isfinite(a) and np.isfinite(b):
                    ov_err.append(float(abs(a - b)))

    expected = gt.get("expected")
    lat = v.get("latency_ms")
    tpub = v.get("t_published_ns")
    return ImageEval(
        frame_id=str(frame_id),
        diag=diag,
        diag_source=source,
        gate_px=gate,
        n_gt={k: int(len(g[k])) for k in CLASSES},
        n_pred={k: int(len(p[k])) for k in CLASSES},
        n_matched={k: int(len(pairs_by[k])) for k in CLASSES},
        errors_px=errors,
        n_missed=int(n_missed),
        n_false=int(n_false),
        max_norm_error=max_norm,
        pck_hits=pck_hits,
        pcs_pass=pcs,
        overhang_abs_err_mm=ov_err,
        expected=str(expected) if expected is not None else None,
        predicted=str(v.get("result", "ERROR")),
        latency_ms=float(lat) if lat is not None and float(lat) > 0 else None,
        t_published_ns=int(tpub) if tpub else None,
    )


# --------------------------------------------------------------------------- aggregate


def _pct(values, q) -> float | None:
    return float(np.percentile(values, q)) if len(values) else None


def _ratio(num: float, den: float) -> float | None:
    return float(num) / float(den) if den else None


@dataclass
class EvalReport:
    n_images: int
    n_gt_tips: int
    n_pred_tips: int
    n_matched: int
    n_missed: int
    n_false: int
    nme: float | None
    pck: dict[str, float | None]  # "0.5%" / "1%" -> fraction of labelled tips
    pcs: dict[str, float | None]  # fraction of images (with a normaliser)
    miss_rate: float | None
    false_tip_rate: float | None
    error_px: dict[str, float | None]  # median / p95 / p99 / mean over matched tips
    per_class: dict[str, dict[str, Any]]
    count_accuracy: dict[str, float | None]
    overhang_mae_mm: float | None
    n_overhang_pairs: int
    confusion: dict[str, dict[str, int]]  # expected -> predicted -> count
    overkill: int
    escape: int
    overkill_rate: float | None
    escape_rate: float | None
    n_expected_ok: int
    n_expected_ng: int
    latency_ms: dict[str, float | None]
    fps: float | None
    diag_sources: dict[str, int]  # how many images used each normaliser source
    n_no_diag: int
    notes: list[str] = field(default_factory=list)
    images: list[ImageEval] = field(default_factory=list, repr=False)

    def to_dict(self, include_images: bool = False) -> dict:
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "images"}
        if include_images:
            d["images"] = [_image_dict(im) for im in self.images]
        return _jsonable(d)


def _image_dict(im: ImageEval) -> dict:
    d = asdict(im)
    d["pck_hits"] = {_tname(t): v for t, v in im.pck_hits.items()}
    d["pcs_pass"] = {_tname(t): v for t, v in im.pcs_pass.items()}
    d["pck"] = {_tname(t): v for t, v in im.pck.items()}
    d["nme"] = im.nme
    d["count_ok"] = im.count_ok
    return d


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.floating, float)):
        return float(x) if math.isfinite(float(x)) else None
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x


def _tname(t: float) -> str:
    return f"{t * 100:g}%"


def evaluate(
    records: Iterable[tuple[str, Mapping[str, Any], Mapping[str, Any] | Any]],
    gate_px: float | None = None,
    gate_frac: float = DEFAULT_GATE_FRAC,
) -> EvalReport:
    """Score a set of frames.

    `records`: ``(frame_id, gt, verdict)`` with ``gt`` a dict holding
    ``anode_tips``, ``cathode_tips`` (or a sidecar's ``labels`` with them),
    optional ``expected`` ("OK"/"NG"), ``mm_per_px``, ``roi_diagonal`` (px) or
    ``roi`` box, ``tip_direction``; ``verdict`` a docs/contracts.md §4 dict (or a
    ``Verdict``).  Gate: `gate_px` if given, else ``default_gate`` (3/4 of the
    labels' same-class pitch), else ``gate_frac`` × the diagonal, else 10 px.
    """
    ims = [evaluate_image(fid, gt, v, gate_px=gate_px, gate_frac=gate_frac) for fid, gt, v in records]
    return aggregate(ims)


def aggregate(ims: list[ImageEval]) -> EvalReport:
    n = len(ims)
    n_gt = sum(sum(im.n_gt.values()) for im in ims)
    n_pred = sum(sum(im.n_pred.values()) for im in ims)
    n_match = sum(sum(im.n_matched.values()) for im in ims)
    n_miss = sum(im.n_missed for im in ims)
    n_false = sum(im.n_false for im in ims)
    with_diag = [im for im in ims if im.diag]
    n_no_diag = n - len(with_diag)

    norm_err = [e / im.diag for im in with_diag for k in CLASSES for e in im.errors_px[k]]
    gt_with_diag = sum(sum(im.n_gt.values()) for im in with_diag)
    pck = {_tname(t): _ratio(sum(im.pck_hits[t] for im in with_diag), gt_with_diag) for t in PCK_THRESHOLDS}
    pcs = {_tname(t): _ratio(sum(bool(im.pcs_pass[t]) for im in with_diag), len(with_diag)) for t in PCK_THRESHOLDS}
    err_px = [e for im in ims for k in CLASSES for e in im.errors_px[k]]

    per_class: dict[str, dict[str, Any]] = {}
    for k in CLASSES:
        ek = [e for im in ims for e in im.errors_px[k]]
        nk = [e / im.diag for im in with_diag for e in im.errors_px[k]]
        gk = sum(im.n_gt[k] for im in ims)
        pk = sum(im.n_pred[k] for im in ims)
        mk = sum(im.n_matched[k] for im in ims)
        per_class[k] = {
            "n_gt": gk,
            "n_pred": pk,
            "n_matched": mk,
            "nme": float(np.mean(nk)) if nk else None,
            "miss_rate": _ratio(gk - mk, gk),
            "false_tip_rate": _ratio(pk - mk, pk),
            "error_px_median": _pct(ek, 50),
            "error_px_p95": _pct(ek, 95),
        }
    count_acc = {k: _ratio(sum(im.count_ok[k] for im in ims), n) for k in CLASSES}

    ov = [e for im in ims for e in im.overhang_abs_err_mm]

    confusion: dict[str, dict[str, int]] = {}
    for im in ims:
        if im.expected is None:
            continue
        confusion.setdefault(im.expected, Counter())[im.predicted] += 1
    confusion = {e: dict(sorted(c.items())) for e, c in sorted(confusion.items())}
    n_ok = sum(confusion.get("OK", {}).values())
    n_ng = sum(confusion.get("NG", {}).values())
    overkill = n_ok - confusion.get("OK", {}).get("OK", 0)
    escape = confusion.get("NG", {}).get("OK", 0)

    lat = [im.latency_ms for im in ims if im.latency_ms is not None]
    tp = sorted(im.t_published_ns for im in ims if im.t_published_ns)
    fps = (len(tp) - 1) / ((tp[-1] - tp[0]) / 1e9) if len(tp) >= 2 and tp[-1] > tp[0] else None

    sources = Counter(im.diag_source for im in ims)
    notes = []
    if sources.get("gt_bbox"):
        notes.append(
            f"{sources['gt_bbox']} of {n} images had no ROI: normalised by the diagonal of the labelled tips' "
            "bounding box (smaller than an ROI: stricter PCK/PCS, larger NME)"
        )
    if n_no_diag:
        notes.append(f"{n_no_diag} images had no usable normaliser and are left out of NME/PCK/PCS")
    other = sorted(set(confusion) - {"OK", "NG"})
    if other:
        notes.append(f"expected values other than OK/NG ({', '.join(other)}) are in the confusion only")

    return EvalReport(
        n_images=n,
        n_gt_tips=n_gt,
        n_pred_tips=n_pred,
        n_matched=n_match,
        n_missed=n_miss,
        n_false=n_false,
        nme=float(np.mean(norm_err)) if norm_err else None,
        pck=pck,
        pcs=pcs,
        miss_rate=_ratio(n_miss, n_gt),
        false_tip_rate=_ratio(n_false, n_pred),
        error_px={
            "mean": float(np.mean(err_px)) if err_px else None,
            "median": _pct(err_px, 50),
            "p95": _pct(err_px, 95),
            "p99": _pct(err_px, 99),
        },
        per_class=per_class,
        count_accuracy=count_acc,
        overhang_mae_mm=float(np.mean(ov)) if ov else None,
        n_overhang_pairs=len(ov),
        confusion=confusion,
        overkill=int(overkill),
        escape=int(escape),
        overkill_rate=_ratio(overkill, n_ok),
        escape_rate=_ratio(escape, n_ng),
        n_expected_ok=n_ok,
        n_expected_ng=n_ng,
        latency_ms={"p50": _pct(lat, 50), "p95": _pct(lat, 95), "p99": _pct(lat, 99)},
        fps=fps,
        diag_sources=dict(sorted(sources.items())),
        n_no_diag=n_no_diag,
        notes=notes,
        images=ims,
    )


# --------------------------------------------------------------------------- table


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
