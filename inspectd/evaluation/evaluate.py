"""`inspectd eval`: join a dump's labels with replay verdicts and score them (inspectd.evaluation.metrics)."""

from __future__ import annotations

import json
from pathlib import Path

from inspectd.evaluation.metrics import evaluate
from inspectd.evaluation.report_table import format_table
from inspectd.frames import FrameReadError, iter_dump

# Sidecar `sim.orientation` -> tip direction, so overhang is measured along the right axis.
_DIRECTIONS = {"right": (1.0, 0.0), "left": (-1.0, 0.0), "up": (0.0, -1.0), "down": (0.0, 1.0)}


def load_verdicts(results: Path) -> dict[str, dict]:
    if not results.is_file():
        raise FileNotFoundError(f"results file not found: {results}")
    verdicts: dict[str, dict] = {}
    for no, line in enumerate(results.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            v = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{results}:{no}: not a JSON verdict ({e})") from e
        if not isinstance(v, dict) or "frame_id" not in v:
            raise ValueError(f"{results}:{no}: verdict without frame_id")
        verdicts[v["frame_id"]] = v
    return verdicts


def evaluate_results(dump: Path, results: Path, gate_px: float | None = None) -> tuple[dict, str]:
    """Score every labelled frame of `dump` that has a verdict in `results`.

    A labelled frame without a verdict counts as a frame with no tips (every
    tip missed) and an ERROR result: a replay that skips frames cannot score well.
    """
    verdicts = load_verdicts(results)
    records = []
    missing = 0
    for item in iter_dump(dump):
        if isinstance(item, FrameReadError) or item.meta.labels is None:
            continue
        meta = item.meta
        gt = {
            "labels": meta.labels.model_dump(),
            "expected": meta.expected,
            "mm_per_px": meta.mm_per_px,
        }
        extra = meta.model_extra or {}
        orient = (extra.get("sim") or {}).get("orientation")
        if orient in _DIRECTIONS:
            gt["tip_direction"] = _DIRECTIONS[orient]
        v = verdicts.get(item.frame_id)
        if v is None:
            missing += 1
            v = {"frame_id": item.frame_id, "result": "ERROR", "anode_tips": [], "cathode_tips": []}
        records.append((item.frame_id, gt, v))
    if not records:
        raise ValueError(f"{dump}: no labelled frames to evaluate")
    report = evaluate(records, gate_px=gate_px)
    data = report.to_dict()
    data["frames_without_verdict"] = missing
    text = format_table(report)
    if missing:
        text += f"\n{missing} labelled frame(s) had no verdict in {results} (scored as ERROR with no tips)"
    return data, text
