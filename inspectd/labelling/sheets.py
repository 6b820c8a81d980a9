"""Review sheets: a frame's proposed tips, zoomed and numbered, with the ones to check flagged.

Drawn in the canonical view (layers horizontal, tips to the right, whatever
the frame's orientation) so every sheet reads the same way: the stack's tip
region cut into strips of a few layers, each zoomed until a layer pitch is
about 36 screen px, anodes cyan and numbered ``a<i>``, cathodes orange
``c<i>``, anything in the sidecar's ``review`` list boxed in red with its
number, and where the model put a tip elsewhere, its position as a red cross. Indices are the sidecar's (ordered along the stack), so a person
corrects "c7" in the JSON or in their labelling tool.
"""

from __future__ import annotations

import cv2
import numpy as np

from inspectd.imaging.canonical import Orientation, points_to_canonical, to_canonical

__all__ = ["render_sheet"]

ANODE, CATHODE, FLAG = (255, 220, 0), (0, 140, 255), (40, 40, 230)
PER_STRIP = 8  # anode tips per strip
TARGET_PITCH_PX = 36


def render_sheet(img8: np.ndarray, anode, cathode, orientation: Orientation, review: list[dict] | None = None,
                 title: str = "") -> np.ndarray:  # fmt: skip
    """BGR image of the review sheet for one frame."""
    o = Orientation(orientation)
    canon = to_canonical(np.asarray(img8), o)
    a = points_to_canonical(np.asarray(anode, np.float64).reshape(-1, 2), o, img8.shape)
    c = points_to_canonical(np.asarray(cathode, np.float64).reshape(-1, 2), o, img8.shape)
    flagged = {(r["class"], int(r["index"])) for r in (review or [])}
    alts = {(r["class"], int(r["index"])): points_to_canonical(np.asarray([r["alt"]], np.float64), o, img8.shape)[0]
            for r in (review or []) if r.get("alt") is not None}  # fmt: skip
    allp = np.vstack([a, c]) if len(a) + len(c) else np.zeros((0, 2))
    if len(allp) == 0:
        return _banner(cv2.cvtColor(canon, cv2.COLOR_GRAY2BGR), title + "  (no tips)")
    ys = np.sort(a[:, 1]) if len(a) > 1 else np.sort(allp[:, 1])
    pitch = float(np.median(np.diff(ys))) if len(ys) > 1 else 10.0
    zoom = int(np.clip(round(TARGET_PITCH_PX / max(pitch, 1.0)), 2, 8))
    x0 = int(max(0, allp[:, 0].min() - 4 * pitch))
    x1 = int(min(canon.shape[1], allp[:, 0].max() + 3 * pitch))
    strips = []
    bounds = ys[::PER_STRIP]
    for k, yb in enumerate(bounds):
        ye = bounds[k + 1] if k + 1 < len(bounds) else ys[-1] + 1
        y0 = int(max(0, yb - 1.5 * pitch))
        y1 = int(min(canon.shape[0], ye + 0.5 * pitch))
        crop = cv2.resize(canon[y0:y1, x0:x1], None, fx=zoom, fy=zoom, interpolation=cv2.INTER_NEAREST)
        crop = cv2.cvtColor(crop, cv2.COLOR_GRAY2BGR)
        for cls, pts, col in (("anode", a, ANODE), ("cathode", c, CATHODE)):
            for i, (x, y) in enumerate(pts):
                if not (y0 <= y < y1):
                    continue
                p = (int(round((x - x0 + 0.5) * zoom)), int(round((y - y0 + 0.5) * zoom)))
                cv2.circle(crop, p, max(2, zoom // 2), col, 1, cv2.LINE_AA)
                label = f"{cls[0]}{i}"
                dx = 6 if cls == "anode" else -8 * len(label) - 6
                cv2.putText(crop, label, (p[0] + dx, p[1] + 4), cv2.FONT_HERSHEY_PLAIN, 0.9, col, 1, cv2.LINE_AA)
                if (cls, i) in flagged:
                    r = 3 * zoom
                    cv2.rectangle(crop, (p[0] - r, p[1] - r), (p[0] + r, p[1] + r), FLAG, 1)
                if (cls, i) in alts:  # the model's position, where it differs: a red cross
                    ax, ay = alts[(cls, i)]
                    q = (int(round((ax - x0 + 0.5) * zoom)), int(round((ay - y0 + 0.5) * zoom)))
                    cv2.drawMarker(crop, q, FLAG, cv2.MARKER_TILTED_CROSS, 2 * zoom, 1)
        strips.append(crop)
        strips.append(np.full((6, crop.shape[1], 3), 90, np.uint8))
    sheet = np.vstack(strips[:-1])
    counts = f"{len(a)} anodes, {len(c)} cathodes, {len(flagged)} to check, zoom {zoom}x"
    return _banner(sheet, f"{title}  {counts}")


def _banner(img: np.ndarray, text: str) -> np.ndarray:
    bar = np.full((22, img.shape[1], 3), 30, np.uint8)
    cv2.putText(bar, text[: max(10, img.shape[1] // 8)], (4, 16), cv2.FONT_HERSHEY_PLAIN, 1.0, (240, 240, 240), 1)
    return np.vstack([bar, img])
