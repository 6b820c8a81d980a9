"""Calibrate and score the confidence gate (inspection/confidence.py) on labelled dumps.

Calibration reads the verdicts of good held-out frames (sidecar `expected` OK)
and sets the limits so that at most 1 % of them would be stopped. Scoring
asks the two questions a process engineer asks of such a gate: how often does
it stop a good frame whose tips were all found (a needless re-inspection),
and what share of the frames with a tip error (a missed or a false tip, or a
wrong OK/NG) does it catch.
"""

from __future__ import annotations

import json
from pathlib import Path

from inspectd.evaluation.evaluate import load_verdicts
from inspectd.evaluation.image_eval import evaluate_image
from inspectd.frames import FrameReadError, iter_dump
from inspectd.inspection.confidence import FIRE_RATE, calibrate
from inspectd.tips.card import card_path

__all__ = ["calibrate_gate", "gate_report", "write_gate"]


def _records(dump: Path, results: Path):
    verdicts = load_verdicts(results)
    for item in iter_dump(dump):
        if isinstance(item, FrameReadError) or item.meta.labels is None:
            continue
        v = verdicts.get(item.frame_id)
        if v is not None:
            yield item, v


def calibrate_gate(dumps: list[tuple[Path, Path]], rate: float = FIRE_RATE) -> dict:
    """Limits from the weakest tip / tightest gap of every good frame (expected OK) with a scored verdict."""
    tips, gaps, doubts = [], [], []
    for dump, results in dumps:
        for item, v in _records(dump, results):
            conf = v.get("confidence")
            if item.meta.expected != "OK" or not conf:
                continue
            tips.append(float(conf["tip_min"]))
            if conf.get("gap_min") is not None:
                gaps.append(float(conf["gap_min"]))
            doubts.append(float(conf.get("doubt_max") or 0.0))
    if not tips:
        raise ValueError("no good (expected OK) frames with a confidence in their verdicts: replay with a model first")
    out = calibrate(tips, gaps, doubts, rate)
    out["calibrated_on"] = [str(d) for d, _ in dumps]
    return out


def write_gate(model_or_card: Path, gate: dict) -> Path:
    """Store the calibrated limits in the model card's `gate` (the card beside the model)."""
    p = card_path(model_or_card) if Path(model_or_card).suffix != ".json" else Path(model_or_card)
    card = json.loads(p.read_text(encoding="utf-8"))
    card["gate"] = gate
    p.write_text(json.dumps(card, indent=1) + "\n", encoding="utf-8")
    return p


def _fires(conf: dict | None, tip_min: float | None, gap_min: float | None, doubt_max: float | None) -> bool:
    if not conf:
        return False
    if tip_min is not None and conf["tip_min"] < tip_min:
        return True
    if doubt_max is not None and (conf.get("doubt_max") or 0.0) > doubt_max:
        return True
    return gap_min is not None and conf.get("gap_min") is not None and conf["gap_min"] < gap_min


def gate_report(dump: Path, results: Path, tip_min: float | None, gap_min: float | None, doubt_max: float | None) -> dict:
    """Per dump: frames, frames with a tip error, how many the gate catches, how many clean frames it stops."""
    n = n_err = caught = clean = stopped_clean = good = stopped_good = 0
    for item, v in _records(dump, results):
        gt = {"labels": item.meta.labels.model_dump(), "expected": item.meta.expected, "mm_per_px": item.meta.mm_per_px}
        ev = evaluate_image(item.frame_id, {**gt["labels"], **gt}, v)
        fired = _fires(v.get("confidence"), tip_min, gap_min, doubt_max)
        wrong = item.meta.expected is not None and v.get("result") in ("OK", "NG") and v["result"] != item.meta.expected
        n += 1
        if ev.n_missed or ev.n_false or wrong:
            n_err += 1
            caught += fired
        else:
            clean += 1
            stopped_clean += fired
        if item.meta.expected == "OK":
            good += 1
            stopped_good += fired
    return {
        "frames": n,
        "frames_with_tip_error": n_err,
        "caught": caught,
        "caught_share": (caught / n_err) if n_err else None,
        "clean_frames": clean,
        "clean_stopped": stopped_clean,
        "good_frames": good,
        "good_stopped": stopped_good,
        "tip_score_min": tip_min,
        "gap_ratio_min": gap_min,
        "doubt_max": doubt_max,
    }
