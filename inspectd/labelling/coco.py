"""Tip labels as COCO keypoints, the format CVAT and Label Studio import and export.

A frame's tips vary in number, and COCO keypoint categories have a fixed
keypoint list, so each tip is one annotation with one keypoint: category
``anode_tip`` (id 1) or ``cathode_tip`` (id 2), ``keypoints = [x, y, 2]``
(2: labelled and visible), a small box around it for tools that want one.
Coordinates are COCO's pixel indices, the same convention as our sidecars
(pixel centres at integers), so they go across unchanged. On import the tips
are ordered along the stack again (top to bottom for horizontal layers).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from inspectd.inspection.measure import infer_tip_direction

__all__ = ["CATEGORIES", "from_coco", "to_coco"]

CATEGORIES = [
    {"id": 1, "name": "anode_tip", "supercategory": "tip", "keypoints": ["tip"], "skeleton": []},
    {"id": 2, "name": "cathode_tip", "supercategory": "tip", "keypoints": ["tip"], "skeleton": []},
]
_CLASS_OF = {1: "anode", 2: "cathode", "anode_tip": "anode", "cathode_tip": "cathode"}
BOX_HALF = 3.0  # px: the box a tip annotation carries


def to_coco(frames: list[dict]) -> dict:
    """COCO keypoints document from frames ``{"file_name", "width", "height", "anode": (N,2), "cathode": (M,2)}``."""
    images, anns = [], []
    for img_id, f in enumerate(frames, start=1):
        images.append({"id": img_id, "file_name": f["file_name"], "width": int(f["width"]), "height": int(f["height"])})
        for cat, key in ((1, "anode"), (2, "cathode")):
            for x, y in np.asarray(f[key], np.float64).reshape(-1, 2):
                anns.append({
                    "id": len(anns) + 1, "image_id": img_id, "category_id": cat,
                    "keypoints": [round(float(x), 2), round(float(y), 2), 2], "num_keypoints": 1,
                    "bbox": [round(float(x) - BOX_HALF, 2), round(float(y) - BOX_HALF, 2), 2 * BOX_HALF, 2 * BOX_HALF],
                    "area": (2 * BOX_HALF) ** 2, "iscrowd": 0,
                })  # fmt: skip
    return {
        "info": {"description": "inspectd electrode tip labels", "version": "1"},
        "images": images,
        "annotations": anns,
        "categories": CATEGORIES,
    }


def from_coco(doc: dict | str | Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{image stem: (anode tips, cathode tips)} from a COCO keypoints document (dict or file).

    Categories are matched by name (``anode_tip``/``cathode_tip``, as exported;
    a tool may renumber them); an annotation's points with visibility 0 are
    skipped. Raises ValueError naming what is wrong.
    """
    if not isinstance(doc, dict):
        doc = json.loads(Path(doc).read_text(encoding="utf-8"))
    for key in ("images", "annotations", "categories"):
        if key not in doc:
            raise ValueError(f"not a COCO document: no {key!r}")
    cls_of = {}
    for c in doc["categories"]:
        name = _CLASS_OF.get(c.get("name"))
        if name is not None:
            cls_of[c["id"]] = name
    if set(cls_of.values()) != {"anode", "cathode"}:
        raise ValueError("COCO categories must include anode_tip and cathode_tip")
    stem_of = {im["id"]: Path(im["file_name"]).stem for im in doc["images"]}
    pts: dict[str, dict[str, list]] = {s: {"anode": [], "cathode": []} for s in stem_of.values()}
    for a in doc["annotations"]:
        cls = cls_of.get(a.get("category_id"))
        if cls is None:
            continue
        if a.get("image_id") not in stem_of:
            raise ValueError(f"annotation {a.get('id')}: unknown image_id {a.get('image_id')}")
        kp = list(a.get("keypoints") or [])
        if len(kp) % 3:
            raise ValueError(f"annotation {a.get('id')}: keypoints must be x, y, v triples")
        for i in range(0, len(kp), 3):
            if kp[i + 2] > 0:
                pts[stem_of[a["image_id"]]][cls].append((float(kp[i]), float(kp[i + 1])))
    return {s: _ordered(np.asarray(p["anode"]).reshape(-1, 2), np.asarray(p["cathode"]).reshape(-1, 2))
            for s, p in pts.items()}  # fmt: skip


def _ordered(anode: np.ndarray, cathode: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both classes sorted along the stack (the axis across the tip direction)."""
    d = infer_tip_direction(anode, cathode) if len(anode) and len(cathode) else None
    axis = 0 if d is not None and abs(d[1]) > abs(d[0]) else 1  # tips along x: order by y
    return anode[np.argsort(anode[:, axis], kind="stable")], cathode[np.argsort(cathode[:, axis], kind="stable")]
