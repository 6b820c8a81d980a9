"""Accuracy of a run's verdicts on the bench dump (the `inspectd eval` figures), so speed knobs cannot hide a loss.

A run loops over the dump, so a frame id comes several times; the first verdict
of each frame is scored (a TIMEOUT or ERROR there is a reject and a frame with
no tips, as `inspectd eval` scores it), over the dump's frames the run offered. The sim source cycles a pool rendered
from the dump's seed: its frame ``sim-SEED-K`` is the dump's ``sim-SEED-(K % pool)``.
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

from inspectd.evaluation.evaluate import evaluate_results
from inspectd.frames import list_dump

KEYS = ("n_images", "nme", "pck", "pcs", "miss_rate", "false_tip_rate", "error_px", "count_accuracy",
        "overhang_mae_mm", "overkill", "escape", "overkill_rate", "escape_rate", "confusion",
        "frames_without_verdict")  # fmt: skip

_SIM_ID = re.compile(r"^sim-(\d+)-(\d+)$")


def remap_sim(frame_id: str, pool: int) -> str:
    m = _SIM_ID.match(frame_id)
    if not m:
        return frame_id
    return f"sim-{m.group(1)}-{int(m.group(2)) % pool:05d}"


def score(dump: Path, verdicts: list[dict], pool: int | None = None, inspected_only: bool = False) -> dict:
    """`inspectd.evaluation.evaluate` figures of the first verdict per frame, over the frames of `dump` the run offered.

    inspected_only: the first verdict per frame that is not a TIMEOUT, over the
    frames that have one (the model's accuracy, apart from missed deadlines).
    """

    first: dict[str, dict] = {}
    for v in verdicts:
        if inspected_only and v["result"] == "TIMEOUT":
            continue
        fid = remap_sim(v["frame_id"], pool) if pool else v["frame_id"]
        first.setdefault(fid, {**v, "frame_id": fid})
    if not first:
        raise ValueError("no inspected frame to score")
    with tempfile.TemporaryDirectory(prefix="inspectd-bench-acc-") as tmp:
        p = Path(tmp) / "verdicts.jsonl"
        p.write_text("".join(json.dumps(v) + "\n" for v in first.values()), encoding="utf-8")
        # score the frames offered (or inspected): a short run is not charged for frames it never saw
        sub = Path(tmp) / "dump"
        sub.mkdir()
        for f in list_dump(dump):
            if f.stem in first:
                for sib in dump.glob(f.stem + ".*"):
                    (sub / sib.name).symlink_to(sib)
        report, _ = evaluate_results(sub, p)
    return {k: report.get(k) for k in KEYS}
