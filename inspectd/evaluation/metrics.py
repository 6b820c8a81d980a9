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

from inspectd.evaluation.image_eval import CLASSES, DEFAULT_GATE_FRAC, PCK_THRESHOLDS, ImageEval, evaluate_image

__all__ = ["EvalReport", "ImageEval", "PCK_THRESHOLDS", "aggregate", "evaluate", "evaluate_image"]


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
