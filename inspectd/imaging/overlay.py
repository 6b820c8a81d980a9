"""Overlays: the picture a line engineer looks at first.

Downscaled frame with the ROI box, the OFAST corners, anode tips (cyan) and
cathode tips (orange), the result and its first reasons, plus a zoomed inset
of the ROI where tips 4-6 px apart are still visible.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from inspectd.imaging.region import Box

ANODE_BGR = (255, 220, 0)  # cyan
CATHODE_BGR = (0, 140, 255)  # orange
CORNER_BGR = (80, 200, 80)
ROI_BGR = (255, 0, 255)
RESULT_BGR = {"OK": (60, 200, 60), "NG": (40, 40, 230), "ERROR": (0, 200, 230), "TIMEOUT": (0, 200, 230)}


def _draw_points(img: np.ndarray, pts, scale: float, offset: tuple[float, float], colour, r: int) -> None:
    if pts is None:
        return
    for x, y in np.asarray(pts, dtype=np.float64).reshape(-1, 2)[:, :2]:
        c = (int(round((x - offset[0]) * scale)), int(round((y - offset[1]) * scale)))
        cv2.circle(img, c, r, colour, 1, cv2.LINE_AA)


def render_overlay(
    img8: np.ndarray, verdict, corners=None, roi: Box | None = None, tips=None, width: int = 1024
) -> np.ndarray:
    """BGR overlay image: full frame scaled to `width` px, ROI inset on the right."""
    scale = min(1.0, width / img8.shape[1])
    small = cv2.resize(img8, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    canvas = cv2.cvtColor(small, cv2.COLOR_GRAY2BGR)
    anode = tips.anode if tips is not None else verdict.anode_tips
    cathode = tips.cathode if tips is not None else verdict.cathode_tips
    if corners is not None and len(corners):
        for x, y in np.asarray(corners)[:, :2]:
            cv2.drawMarker(canvas, (int(x * scale), int(y * scale)), CORNER_BGR, cv2.MARKER_TILTED_CROSS, 2, 1)
    _draw_points(canvas, anode, scale, (0, 0), ANODE_BGR, 2)
    _draw_points(canvas, cathode, scale, (0, 0), CATHODE_BGR, 2)
    panels = [canvas]
    if roi is not None:
        x0, y0, x1, y1 = roi.x0, roi.y0, roi.x1, roi.y1
        cv2.rectangle(canvas, (int(x0 * scale), int(y0 * scale)), (int(x1 * scale), int(y1 * scale)), ROI_BGR, 1)
        crop = img8[max(0, y0) : max(0, y1), max(0, x0) : max(0, x1)]
        if crop.size:
            zoom = min(4.0, canvas.shape[0] / crop.shape[0], 2 * width / max(crop.shape[1], 1) / 2)
            inset = cv2.cvtColor(
                cv2.resize(crop, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_NEAREST), cv2.COLOR_GRAY2BGR
            )
            _draw_points(inset, anode, zoom, (x0 - 0.5 + 0.5 / zoom, y0 - 0.5 + 0.5 / zoom), ANODE_BGR, 3)
            _draw_points(inset, cathode, zoom, (x0 - 0.5 + 0.5 / zoom, y0 - 0.5 + 0.5 / zoom), CATHODE_BGR, 3)
            pad = np.zeros((canvas.shape[0], inset.shape[1], 3), np.uint8)
            pad[: min(inset.shape[0], pad.shape[0])] = inset[: pad.shape[0]]
            panels.append(pad)
    out = np.hstack(panels)
    result = verdict.result.value
    lines = [f"{verdict.frame_id}  {result}  seq {verdict.seq}  model {verdict.model}"]
    if verdict.overhang_mm is not None:
        o = verdict.overhang_mm
        lines.append(f"overhang mm min {o.min:.2f} mean {o.mean:.2f} max {o.max:.2f}")
    lines.append(f"anodes {len(anode)}  cathodes {len(cathode)}")
    for r in verdict.reasons[:4]:
        detail = r.message or ""
        if r.value_mm is not None:
            detail = f"#{r.index} {r.value_mm:.2f} mm (limit {r.limit_mm:.2f})"
        lines.append(f"{r.code.value} {detail}"[:110])
    box_w = max(cv2.getTextSize(t, cv2.FONT_HERSHEY_SIMPLEX, 0.5, 1)[0][0] for t in lines) + 16
    cv2.rectangle(out, (0, 0), (box_w, 10 + 20 * len(lines)), (0, 0, 0), -1)
    for i, text in enumerate(lines):
        colour = RESULT_BGR.get(result, (255, 255, 255)) if i == 0 else (255, 255, 255)
        cv2.putText(out, text, (8, 22 + 20 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.5, colour, 1, cv2.LINE_AA)
    return out


def write_overlay(path: Path, inspection) -> None:
    img = render_overlay(
        inspection.img8, inspection.verdict, inspection.corners, inspection.roi, inspection.tips
    )
    cv2.imwrite(str(path), img, [cv2.IMWRITE_JPEG_QUALITY, 85])
