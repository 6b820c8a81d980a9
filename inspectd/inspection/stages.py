"""The inspection stages as plain functions, their declared chain (`CHAIN`), and the Inspector that runs it.

The daemon runs these same functions in separate processes; `Inspector` runs
them one after another in one process (replay, eval, and the naive baseline of
the benchmarks). Every stage failure becomes an ERROR verdict that names the
stage: one bad frame never escapes as an exception.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np

from inspectd.config import Config, CornerConfig
from inspectd.frames import Frame, FrameReadError
from inspectd.imaging.region import Roi
from inspectd.imaging.window import to_8bit
from inspectd.inspection import line_end
from inspectd.inspection.corner_select import select_tip_corners
from inspectd.inspection.corner_backends import CornerBackend, OpenCvCorners
from inspectd.inspection.corners import refine_subpix
from inspectd.inspection.confidence import assess, gate_reason, limits, no_plausible_stack
from inspectd.inspection.correction import correct_tips
from inspectd.inspection.layer_slope import front_points
from inspectd.inspection.measure import measure
from inspectd.inspection.roi import find_roi
from inspectd.inspection.rules import judge, summarise_overhang
from inspectd.tips.detector import DetectionUnavailable, TipDetector, Tips
from inspectd.verdict import Reason, ReasonCode, Result, Verdict

# Unit vector of the direction the tips point, per ROI orientation name.
TIP_DIRECTION = {"RIGHT": (1.0, 0.0), "LEFT": (-1.0, 0.0), "UP": (0.0, -1.0), "DOWN": (0.0, 1.0)}


@dataclass
class Inspection:
    """A verdict plus what was seen on the way (for overlays and debugging)."""

    verdict: Verdict
    img8: np.ndarray | None = None
    corners: np.ndarray | None = None
    roi: Roi | None = None
    tips: Tips | None = None
    raw_tips: Tips | None = None
    stage_ms: dict[str, float] = field(default_factory=dict)


class StageError(Exception):
    def __init__(self, code: ReasonCode, message: str):
        super().__init__(message)
        self.code = code


def preprocess(frame: Frame) -> np.ndarray:
    return to_8bit(frame.image, frame.bit_depth)


def locate(img8: np.ndarray, cfg: Config, backend: CornerBackend | None = None) -> tuple[np.ndarray, Roi]:
    """Corners (paper §2.1) and the ROI around the tips; StageError(NO_STACK) if none.

    Tries the corner passes of `corner_attempts` in turn, so a hard frame costs
    a few ms more instead of an ERROR (a good cell thrown away). `backend`:
    where the corners are found (inspection/corner_backends.py; OpenCV if None).
    """

    backend = backend or OpenCvCorners()
    found = _locate_on(img8, cfg, backend)
    if found[1] is None:  # last: a defocused frame's stripes, sharpened (the tips are still read on img8)
        found = _locate_on(sharpened(img8), cfg, backend)
    if found[1] is None:
        raise StageError(ReasonCode.NO_STACK, f"no electrode stack found ({len(found[0])} corners)")
    return found


def _locate_on(img: np.ndarray, cfg: Config, backend: CornerBackend) -> tuple[np.ndarray, Roi | None]:
    corners = np.zeros((0, 3), np.float32)
    for ccfg in corner_attempts(cfg.corners, img.shape):
        corners = backend.detect_corners(img, ccfg)
        roi = find_roi(img, corners, cfg.roi)
        if roi is not None:
            return corners, roi
    return corners, None


SHARPEN_SIGMA = 0.008  # of the frame's long side: the blur the unsharp mask takes away
SHARPEN_GAIN = 4.0


def sharpened(img8: np.ndarray) -> np.ndarray:
    """Unsharp mask for `locate`'s last try. A defocused stack's layers are a stripe texture too faint
    for the ROI's stripe energy and for FAST; taking away a blur of 0.8 % of the frame (8 px at 1000²)
    four times over brings them back. Held-out sim defocus family: ROIs holding the tips 23 -> 26 of 30,
    as a fallback only where every other try found no stack (docs/roi.md)."""
    f = img8.astype(np.float32)
    blur = cv2.GaussianBlur(f, (0, 0), SHARPEN_SIGMA * max(img8.shape))
    return np.clip(f + SHARPEN_GAIN * (f - blur), 0, 255).astype(np.uint8)


def corner_attempts(cc: CornerConfig, shape: tuple[int, ...]) -> list[CornerConfig]:
    """The configured corner pass, then the fallbacks `locate` tries when it finds no stack.

    1. Lower FAST thresholds (halved down to 2): a heavily blurred stack leaves
       too few corners at the configured one.
    2. The configured threshold on a half-size work image: on a noisy frame
       with a small stack the N strongest corners are detector grain all over
       the background (sim-7001-00019, 2048² 12-bit: all three thresholds
       failed); 2x2 averaging removes the grain, the stack's edges stay.
    """
    out = [cc]
    t = cc.fast_threshold
    while t > 2:
        t = max(2, t // 2)
        out.append(cc.model_copy(update={"fast_threshold": t}))
    half = max(shape[:2]) // 2
    if half >= 256 and (cc.work_size == 0 or cc.work_size > half):
        out.append(cc.model_copy(update={"work_size": half}))
    return out


ROI_CORNER_PAD = 32  # px around the ROI, so ORB's border exclusion does not eat tips near its edge
CANDIDATE_FACTOR = 8  # the in-ROI pass detects this many times N before selecting N
CANDIDATES_MAX = 50_000


def roi_corners(img8: np.ndarray, roi: Roi, cfg: Config, backend: CornerBackend | None = None) -> np.ndarray:
    """The correction's corners: OFAST again inside the ROI's tip band (padded), full-frame coordinates.

    Detects CANDIDATE_FACTOR x N corners (Harris top-N), ranks them by
    line-end contrast (`correction.rank`), keeps N after NMS
    (inspection/corner_select.py), then refines them: `cornerSubPix`
    (`correction.subpix_win`, 0 = off) and the snap onto the line end
    (`correction.snap_to_line_end`, inspection/line_end.py). Rows are
    ``[x, y, Harris score]`` in selection order.
    """

    cc = cfg.correction
    h, w = img8.shape
    scale = max(h, w) / 1000.0
    direction = TIP_DIRECTION[roi.orientation.name]
    bx0, by0, bx1, by1 = roi.tip_band or (roi.x0, roi.y0, roi.x1, roi.y1)
    x0, y0 = max(0, bx0 - ROI_CORNER_PAD), max(0, by0 - ROI_CORNER_PAD)
    x1, y1 = min(w, bx1 + ROI_CORNER_PAD), min(h, by1 + ROI_CORNER_PAD)
    band = img8[y0:y1, x0:x1]
    n_candidates = min(CANDIDATES_MAX, cc.n * CANDIDATE_FACTOR)
    ccfg = cfg.corners.model_copy(update={"n": n_candidates, "fast_threshold": cc.fast_threshold, "work_size": 0})
    c, angles = (backend or OpenCvCorners()).detect_oriented_corners(band, ccfg)
    smooth = line_end.smoothed(band, scale) if (cc.rank == "end_contrast" or cc.snap_to_line_end) else None
    rank_by = line_end.end_contrast(smooth, c, direction, scale) if cc.rank == "end_contrast" else None
    c = select_tip_corners(
        c,
        angles,
        roi.orientation,
        cc.n,
        nms_radius=cc.nms_frac * max(h, w),
        max_angle_deg=cc.max_angle_deg,
        rank_by=rank_by,
    )
    c = refine_subpix(band, c, cc.subpix_win)
    if cc.snap_to_line_end and len(c):
        c[:, :2] = line_end.snap_to_line_end(smooth, c, direction, scale, cc.snap_frac)
    c[:, 0] += x0
    c[:, 1] += y0
    return c


def refine(tips: Tips, corners: np.ndarray, img8: np.ndarray, cfg: Config) -> Tips:
    """Corner-guided correction (paper §2.3); one reference pattern over both classes, as the paper."""
    if not cfg.correction.enabled:
        return tips

    a, c = correct_tips(tips.anode, tips.cathode, corners, img8, cfg.correction)
    keep = len(a.points) == len(tips.anode) and len(c.points) == len(tips.cathode)  # one corrected point per tip
    return Tips(
        anode=a.points,
        cathode=c.points,
        anode_score=tips.anode_score if keep else None,
        cathode_score=tips.cathode_score if keep else None,
        doubt=tips.doubt,
    )


def measure_and_judge(
    tips: Tips, roi: Roi, mm_per_px: float, cfg: Config, img8: np.ndarray | None = None, card_gate: dict | None = None
) -> tuple[Result, list[Reason], dict]:
    """Measure, apply the recipe, then the confidence gate (inspection/confidence.py).

    With `img8`, tips are ordered where their layers meet the cathode front
    (inspection/layer_slope.py). A gated frame is ERROR with LOW_CONFIDENCE first
    and the recipe's reasons after it, so the operator still sees what it would have said.
    """
    direction = TIP_DIRECTION[roi.orientation.name]
    order_by = front_points(img8, roi, tips.anode, tips.cathode) if img8 is not None else None
    m = measure(tips.anode, tips.cathode, direction, mm_per_px, order_by=order_by)
    result, reasons = judge(m, cfg.recipe)
    summary = summarise_overhang(m)
    fields = {
        "anode_tips": [tuple(map(float, p)) for p in m.anode_tips],
        "cathode_tips": [tuple(map(float, p)) for p in m.cathode_tips],
        "overhang_mm": summary,
    }
    conf = assess(m, tips.anode_score, tips.cathode_score, tips.doubt)
    if conf is not None:
        fields["confidence"] = conf
        if cfg.gate.enabled and result is not Result.ERROR:
            lim = limits(cfg.gate, card_gate or {})
            low = no_plausible_stack(m) or gate_reason(conf, *lim, would_pass=result is Result.OK)
            if low is not None:
                result, reasons = Result.ERROR, [low, *reasons]
    return result, reasons, fields


@dataclass
class _Work:
    """What the stages hand each other on one frame; a stage reads some fields and fills others."""

    frame: Frame
    img8: np.ndarray | None = None
    corners: np.ndarray | None = None
    roi: Roi | None = None
    raw_tips: Tips | None = None
    tips: Tips | None = None
    result: Result | None = None
    reasons: list[Reason] = field(default_factory=list)
    fields: dict = field(default_factory=dict)
    corner_backend: CornerBackend | None = None  # the Inspector's (OpenCV or CUDA)


@dataclass(frozen=True)
class Stage:
    """One step of the chain: its name (stage_ms keys, error messages), what it reads, what it fills."""

    name: str
    reads: tuple[str, ...]
    fills: tuple[str, ...]
    run: Callable[[_Work, Config, TipDetector], None]


def _preprocess(w: _Work, cfg: Config, det: TipDetector) -> None:
    w.img8 = preprocess(w.frame)
    if cfg.station.polarity == "bright_layers":
        w.img8 = 255 - w.img8


def _locate(w: _Work, cfg: Config, det: TipDetector) -> None:
    w.corners, w.roi = locate(w.img8, cfg, w.corner_backend)


def _detect(w: _Work, cfg: Config, det: TipDetector) -> None:
    try:
        w.raw_tips = det.detect(w.frame, w.img8, w.roi)
    except DetectionUnavailable as e:
        raise StageError(ReasonCode.DETECTION_UNAVAILABLE, str(e)) from e


def _refine(w: _Work, cfg: Config, det: TipDetector) -> None:
    if cfg.correction.enabled:
        w.corners = roi_corners(w.img8, w.roi, cfg, w.corner_backend)
    w.tips = refine(w.raw_tips, w.corners, w.img8, cfg)


def _measure(w: _Work, cfg: Config, det: TipDetector) -> None:
    mm_per_px = w.frame.meta.mm_per_px or cfg.station.mm_per_px
    w.result, w.reasons, w.fields = measure_and_judge(w.tips, w.roi, mm_per_px, cfg, w.img8, getattr(det, "gate", None))


# The chain, in order; tests/test_inspector.py checks every field a stage reads is filled before it.
CHAIN: tuple[Stage, ...] = (
    Stage("preprocess", ("frame",), ("img8",), _preprocess),
    Stage("locate", ("img8",), ("corners", "roi"), _locate),
    Stage("detect", ("frame", "img8", "roi"), ("raw_tips",), _detect),
    Stage("refine", ("raw_tips", "corners", "img8", "roi"), ("tips", "corners"), _refine),
    Stage("measure", ("tips", "roi", "frame", "img8"), ("result", "reasons", "fields"), _measure),
)


class Inspector:
    """Runs the `CHAIN` (preprocess → locate → detect → refine → measure and judge) on one frame."""

    def __init__(self, cfg: Config, detector: TipDetector, corners: CornerBackend | None = None):
        self.cfg = cfg
        self.detector = detector
        self.corners = corners or OpenCvCorners()

    def _verdict(self, seq: int, frame_id: str, meta, result: Result, reasons: list[Reason], **fields) -> Verdict:
        return Verdict(
            seq=seq,
            frame_id=frame_id,
            part_id=getattr(meta, "part_id", None),
            station=(getattr(meta, "station", None) or self.cfg.station.name),
            result=result,
            reasons=reasons,
            t_acquired_ns=(getattr(meta, "t_acquired_ns", None) or 0),
            model=self.detector.name,
            **fields,
        )

    def inspect(self, item: Frame | FrameReadError, seq: int) -> Inspection:
        if isinstance(item, FrameReadError):
            reason = Reason(code=ReasonCode.UNREADABLE_FRAME, message=item.message)
            return Inspection(self._verdict(seq, item.frame_id, None, Result.ERROR, [reason]))
        ins = self._run(item, seq, _Work(item, corner_backend=self.corners), CHAIN)
        if self.cfg.station.polarity == "auto" and ins.img8 is not None and _unreadable(ins.verdict):
            # The same frame with its grey values inverted (a detector that shows layers bright): kept only
            # if it reads as a stack; the first pass's verdict otherwise, so nothing is lost by trying.
            again = self._run(item, seq, _Work(item, img8=255 - ins.img8, corner_backend=self.corners), CHAIN[1:])
            if again.verdict.result is not Result.ERROR:
                again.stage_ms = {**ins.stage_ms, **{f"{k}_inverted": v for k, v in again.stage_ms.items()}}
                return again
        return ins

    def _run(self, frame: Frame, seq: int, w: _Work, chain: tuple[Stage, ...]) -> Inspection:
        times: dict[str, float] = {}
        stage = chain[0].name
        try:
            for st in chain:
                stage, t = st.name, time.perf_counter()
                st.run(w, self.cfg, self.detector)
                times[stage] = _ms(t)
            roi_field = {"roi": (w.roi.x0, w.roi.y0, w.roi.x1, w.roi.y1)}
            verdict = self._verdict(seq, frame.frame_id, frame.meta, w.result, w.reasons, **roi_field, **w.fields)
        except StageError as e:
            roi_field = {"roi": (w.roi.x0, w.roi.y0, w.roi.x1, w.roi.y1)} if w.roi is not None else {}
            verdict = self._verdict(
                seq, frame.frame_id, frame.meta, Result.ERROR, [Reason(code=e.code, message=str(e))], **roi_field
            )
        except Exception as e:  # a stage bug must cost one frame, not the daemon
            reason = Reason(code=ReasonCode.INTERNAL, message=f"stage {stage} failed: {type(e).__name__}: {e}")
            verdict = self._verdict(seq, frame.frame_id, frame.meta, Result.ERROR, [reason])
        return Inspection(verdict, w.img8, w.corners, w.roi, w.tips, w.raw_tips, times)


# ERROR reasons that an inverted frame could turn into a reading (polarity = "auto"). Not LOW_CONFIDENCE:
# a frame the gate stopped is a stack read with doubt, and its inverted image must not overrule that.
_RETRY_INVERTED = {ReasonCode.NO_STACK, ReasonCode.NO_TIPS}


def _unreadable(v: Verdict) -> bool:
    return v.result is Result.ERROR and bool(v.reasons) and v.reasons[0].code in _RETRY_INVERTED


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000.0
