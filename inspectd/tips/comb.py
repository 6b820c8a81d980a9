"""Complete the comb: take a tip the model half-saw where the stack's alternation says one must be.

A stack alternates anode, cathode, anode along its length. Where the model
reports two tips of one class in a row, the layer between them is either
missing from the cell (a defect) or missing from the model's reading: a tip
too faint, too blurred or on too long a tail to clear the threshold. In the
second case the model has usually seen it anyway, as a peak between half the
threshold and the threshold (the confidence gate's "doubt" peaks). A peak of
the missing class that lies inside such a break, away from the two tips
around it, and level with its own class's neighbouring tips along the layer
is taken as that tip. Nothing else below the threshold is.

Off unless the card or `[engine] fill_breaks` turns it on: on frames no model
was trained on it trades missed tips for false ones about one for one
(docs/accuracy.md, "Completing the comb"; real family folds: missed 6.70 ->
5.65 %, false 4.78 -> 5.54 %; held-out simulator families: the tail family's
missed 21.1 -> 11.9 %, false 3.8 -> 5.6 %), and a filled tip, which passes a
frame the gate would have stopped for its doubt peak, must then be stopped by
its own low score. Where a person checks every tip anyway (`inspectd label`
proposals), a miss costs more to fix than a false tip: turn it on there.
"""

from __future__ import annotations

import numpy as np

from inspectd.imaging.canonical import points_to_canonical

__all__ = ["fill_alternation_breaks"]

INNER = 0.25  # a candidate must sit this share of the break's length away from either tip around it
LEVEL = 0.5  # and within this share of the overhang (clipped to LEVEL_PX) of its own class's tips along the layer
LEVEL_PX = (4.0, 30.0)
NEIGHBOURS = 4  # own-class tips nearest the break that set the level


def fill_alternation_breaks(
    anode: np.ndarray, cathode: np.ndarray, low_anode: np.ndarray, low_cathode: np.ndarray, plan
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(anode, cathode, low_anode, low_cathode) with the peaks that fill a break moved from low to tips.

    All (N, 3) [x, y, score] in full-frame px; `plan` (tips/crop.CropPlan) gives the orientation. At
    most one peak per break, the strongest; anodes first, then cathodes against the completed anodes.
    """
    if len(anode) < 3 or len(cathode) < 3:
        return anode, cathode, low_anode, low_cathode

    def canon(p: np.ndarray) -> np.ndarray:
        return points_to_canonical(p[:, :2], plan.orientation, plan.frame_shape) if len(p) else np.zeros((0, 2))

    ca, cc = canon(anode), canon(cathode)
    overhang = abs(float(np.median(ca[:, 0]) - np.median(cc[:, 0])))
    level = float(np.clip(LEVEL * overhang, *LEVEL_PX))
    tips = {"a": [anode, ca], "c": [cathode, cc]}
    low = {"a": [low_anode, canon(low_anode)], "c": [low_cathode, canon(low_cathode)]}
    for k, o in (("a", "c"), ("c", "a")):
        own, own_c = tips[k]
        other_c = tips[o][1]
        cand, cand_c = low[k]
        if len(cand) == 0:
            continue
        seq = np.concatenate([own_c[:, 1], other_c[:, 1]])
        cls = np.concatenate([np.zeros(len(own_c), bool), np.ones(len(other_c), bool)])
        order = np.argsort(seq, kind="stable")
        seq, cls = seq[order], cls[order]
        taken: list[int] = []
        for i in np.flatnonzero(cls[:-1] & cls[1:]):  # two tips of the other class in a row
            y1, y2 = seq[i], seq[i + 1]
            w = y2 - y1
            inside = (cand_c[:, 1] > y1 + INNER * w) & (cand_c[:, 1] < y2 - INNER * w)
            if not inside.any():
                continue
            near = np.argsort(np.abs(own_c[:, 1] - 0.5 * (y1 + y2)))[:NEIGHBOURS]
            inside &= np.abs(cand_c[:, 0] - np.median(own_c[near, 0])) <= level
            inside[taken] = False
            if inside.any():
                taken.append(int(np.flatnonzero(inside)[np.argmax(cand[inside, 2])]))
        if taken:
            keep = np.ones(len(cand), bool)
            keep[taken] = False
            tips[k] = [np.vstack([own, cand[taken]]), np.vstack([own_c, cand_c[taken]])]
            low[k] = [cand[keep], cand_c[keep]]
    return tips["a"][0], tips["c"][0], low["a"][0], low["c"][0]
