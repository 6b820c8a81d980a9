"""Calibrate and score the confidence gate (inspection/confidence.py) on labelled dumps.

Calibration reads the verdicts of held-out frames whose tips the model got
right (none missed, none false: the frames the gate must let through, good
cells and defective ones alike, since a correct NG must stay NG) and sets the
limits so that at most 1 % of them would be stopped. Frames the model got
wrong are what the gate is for: counting them would push the limits out
until it caught nothing. Scoring
asks the two questions a process engineer asks of such a gate: how often does
it stop a good frame whose tips were all found (a needless re-inspection),
and what share of the frames with a tip error (a missed or a false tip, or a
wrong OK/NG) does it catch.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from inspectd.config import GateConfig
from inspectd.evaluation.evaluate import load_verdicts
from inspectd.evaluation.image_eval import evaluate_image
from inspectd.frames import FrameReadError, iter_dump
from inspectd.evaluation.gate_calibration import FIRE_RATE, calibrate
from inspectd.inspection.confidence import gate_reason, limits
from inspectd.tips.card import card_path
from inspectd.verdict import Confidence

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
    """Limits from the scores of every frame whose tips are all right (clean), the frames with a missed or false
    tip choosing which criteria get the fire budget (evaluation/gate_calibration.py)."""
    clean, errors = [], []
    for dump, results in dumps:
        for item, v in _records(dump, results):
            conf = v.get("confidence")
            if not conf:
                continue
            ev = evaluate_image(item.frame_id, item.meta.labels.model_dump(), v)
            (errors if ev.n_missed or ev.n_false else clean).append(_scores(conf, v.get("result") == "OK"))
    if not clean:
        raise ValueError(
            "no frames with every tip right and a confidence in their verdicts: replay with a model first"
        )
    out = calibrate(np.array(clean), np.array(errors).reshape(-1, 5), rate)
    out["calibrated_on"] = [str(d) for d, _ in dumps]
    return out


def _scores(conf: dict, would_pass: bool) -> list[float]:
    """One verdict's confidence in gate_calibration.CRITERIA order, NaN where a criterion does not apply."""
    nan = float("nan")
    gap, sq = conf.get("gap_min"), conf.get("squeeze")
    return [
        float(conf["tip_min"]),
        nan if gap is None else float(gap),
        nan if sq is None or not would_pass else float(sq),  # squeeze gates passing frames only
        float(conf.get("doubt_max") or 0.0),
        float(conf.get("alternation") or 0.0),
    ]


def write_gate(model_or_card: Path, gate: dict) -> Path:
    """Store the calibrated limits in the model card's `gate` (the card beside the model)."""
    p = card_path(model_or_card) if Path(model_or_card).suffix != ".json" else Path(model_or_card)
    card = json.loads(p.read_text(encoding="utf-8"))
    card["gate"] = gate
    p.write_text(json.dumps(card, indent=1) + "\n", encoding="utf-8")
    return p


def _fires(conf: dict | None, lim: tuple, would_pass: bool) -> bool:
    """Whether the daemon's gate (`confidence.gate_reason`) stops a verdict replayed with the gate off."""
    return bool(conf) and gate_reason(Confidence.model_validate(conf), *lim, would_pass=would_pass) is not None


def gate_report(dump: Path, results: Path, gate: dict) -> dict:
    """Per dump: frames, frames with a tip error, how many the gate catches, how many clean frames it stops."""
    lim = limits(GateConfig(), gate)
    n = n_err = caught = clean = stopped_clean = good = stopped_good = overkill = escape = n_ng = 0
    for item, v in _records(dump, results):
        ev = evaluate_image(item.frame_id, item.meta.labels.model_dump(), v)
        fired = _fires(v.get("confidence"), lim, would_pass=v.get("result") == "OK")
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
            overkill += fired or v.get("result") != "OK"
        elif item.meta.expected == "NG":
            n_ng += 1
            escape += (not fired) and v.get("result") == "OK"
    return {
        "frames": n,
        "frames_with_tip_error": n_err,
        "caught": caught,
        "caught_share": (caught / n_err) if n_err else None,
        "clean_frames": clean,
        "clean_stopped": stopped_clean,
        "good_frames": good,
        "good_stopped": stopped_good,
        "overkill_gated": overkill,  # good frames not passed (gate or verdict)
        "escape_gated": escape,  # bad frames passed (the gate did not stop them and the verdict said OK)
        "ng_frames": n_ng,
        "gate": {k: gate.get(k) for k in GateConfig.model_fields if k != "enabled"},
    }
