"""Checking a proposed labelling tip by tip: zoomed crops with pixel axes, profile readouts, logged edits.

What the 44 proposed real labels went through (engines/labels/README.md): a
person (or a second one, for agreement) walks the stack in crops of a few
tips, reads the intensity profile where a tip is in doubt, moves, adds or
removes tips, and marks the frame checked. Every edit is appended to
``checklog/<stem>.jsonl`` in the labelling folder with a timestamp, so the
time per frame and what a check changed are measured, not remembered.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from inspectd.frames import list_dump, read_frame

__all__ = ["LabelFile", "check_summary", "crop_box", "profile_readout", "render_crop"]

KEYS = {"anode": "anode_tips", "cathode": "cathode_tips"}
COLOURS = {"anode": (255, 255, 0), "cathode": (0, 140, 255)}  # BGR: cyan anodes, orange cathodes (as the sheets)


@dataclass
class LabelFile:
    """One frame of a labelling folder: its image, its label sidecar, its check log."""

    folder: Path
    stem: str
    doc: dict
    image: np.ndarray

    @classmethod
    def open(cls, folder: Path, stem: str) -> LabelFile:
        path = folder / "labels" / f"{stem}.json"
        if not path.exists():
            raise FileNotFoundError(f"{path}: no label file for {stem!r} in {folder}")
        images = [p for p in list_dump(folder / "images") if p.stem == stem] if (folder / "images").is_dir() else []
        if not images:
            raise FileNotFoundError(f"{folder / 'images'}: no image for {stem!r}")
        img = read_frame(images[0]).image
        doc = json.loads(path.read_text())
        doc.setdefault("labels", {}).setdefault("anode_tips", [])
        doc["labels"].setdefault("cathode_tips", [])
        return cls(folder, stem, doc, img)

    def tips(self, cls: str) -> list[list[float]]:
        return self.doc["labels"][_key(cls)]

    @property
    def facing(self) -> int:
        """+1 if the tips point right (anodes right of the cathodes), -1 if left."""
        a, c = np.array(self.tips("anode"), float), np.array(self.tips("cathode"), float)
        if len(a) == 0 or len(c) == 0:
            return 1
        return 1 if a[:, 0].mean() > c[:, 0].mean() else -1

    def _save(self) -> None:
        for key in KEYS.values():  # real stacks are horizontal layers: along the stack = top to bottom
            self.doc["labels"][key].sort(key=lambda q: q[1])
        (self.folder / "labels" / f"{self.stem}.json").write_text(json.dumps(self.doc, indent=1) + "\n")

    def log(self, op: str, **fields) -> None:
        d = self.folder / "checklog"
        d.mkdir(exist_ok=True)
        with open(d / f"{self.stem}.jsonl", "a") as f:
            f.write(json.dumps({"op": op, "t": time.time(), **fields}) + "\n")

    def move(self, cls: str, i: int, x: float, y: float) -> float:
        """Move tip `i` of `cls` to (x, y); returns how far it moved (px)."""
        pts = self.tips(cls)
        _index(pts, i, cls)
        old = pts[i]
        pts[i] = [float(x), float(y)]
        self._save()
        self.log("move", cls=cls, i=i, old=old, new=[x, y])
        return float(np.hypot(x - old[0], y - old[1]))

    def add(self, cls: str, x: float, y: float) -> None:
        self.tips(cls).append([float(x), float(y)])
        self._save()
        self.log("add", cls=cls, new=[x, y])

    def remove(self, cls: str, i: int) -> list[float]:
        pts = self.tips(cls)
        _index(pts, i, cls)
        old = pts.pop(i)
        self._save()
        self.log("remove", cls=cls, i=i, old=old)
        return old

    def done(self, note: str) -> None:
        """Mark the frame checked; `note` says what was changed and which tips are still uncertain."""
        self.doc["label_quality"] = "checked"
        self.doc["notes"] = note
        self._save()
        self.log("done", note=note)


def _key(cls: str) -> str:
    if cls not in KEYS:
        raise ValueError(f"class must be anode or cathode, not {cls!r}")
    return KEYS[cls]


def _index(pts: list, i: int, cls: str) -> None:
    if not 0 <= i < len(pts):
        raise IndexError(f"no {cls} {i}: the frame has {len(pts)} {cls}s (0..{len(pts) - 1})")


def crop_box(points, pad: int = 18) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) around `points` with `pad` px all round (and room for the tip's taper)."""
    a = np.asarray(points, float).reshape(-1, 2)
    if len(a) == 0:
        raise ValueError("no tips to crop around")
    return int(a[:, 0].min()) - pad - 12, int(a[:, 1].min()) - pad, int(a[:, 0].max()) + pad + 13, int(a[:, 1].max()) + pad + 1


def render_crop(lf: LabelFile, box: tuple[int, int, int, int], zoom: int = 8) -> np.ndarray:
    """A `zoom`× nearest-neighbour crop (contrast-stretched for display) with full-frame px ticks and every
    label inside drawn as a cross at its exact position, named a<i> / c<i> clear of the layer ends."""
    img = lf.image
    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    h, w = img.shape
    x0, y0, x1, y1 = max(0, box[0]), max(0, box[1]), min(w, box[2]), min(h, box[3])
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"box {box} is outside the {w}x{h} frame")
    crop = img[y0:y1, x0:x1].astype(np.float32)
    lo, hi = np.percentile(crop, [1, 99.5])
    crop = np.clip((crop - lo) * 255.0 / max(hi - lo, 1.0), 0, 255).astype(np.uint8)
    big = cv2.cvtColor(cv2.resize(crop, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_NEAREST), cv2.COLOR_GRAY2BGR)
    m = 44
    canvas = np.full((big.shape[0] + 2 * m, big.shape[1] + 2 * m, 3), 255, np.uint8)
    canvas[m : m + big.shape[0], m : m + big.shape[1]] = big
    step = 5 if zoom >= 6 else 10 if zoom >= 3 else 20
    font = cv2.FONT_HERSHEY_SIMPLEX
    for gx in range((x0 // step + 1) * step, x1, step):
        u = m + (gx - x0) * zoom + zoom // 2
        for v0, v1 in ((m - 8, m), (m + big.shape[0], m + big.shape[0] + 8)):
            cv2.line(canvas, (u, v0), (u, v1), (0, 0, 0), 1)
        cv2.putText(canvas, str(gx), (u - 12, m - 12), font, 0.38, (0, 0, 0), 1)
    for gy in range((y0 // step + 1) * step, y1, step):
        v = m + (gy - y0) * zoom + zoom // 2
        for u0, u1 in ((m - 8, m), (m + big.shape[1], m + big.shape[1] + 8)):
            cv2.line(canvas, (u0, v), (u1, v), (0, 0, 0), 1)
        cv2.putText(canvas, str(gy), (2, v + 4), font, 0.38, (0, 0, 0), 1)
    side, thick = lf.facing, 2 if zoom >= 6 else 1
    for cls in KEYS:
        for i, (x, y) in enumerate(lf.tips(cls)):
            if not (x0 - 2 <= x < x1 + 2 and y0 - 2 <= y < y1 + 2):
                continue
            u, v = int(round(m + (x - x0) * zoom + zoom / 2)), int(round(m + (y - y0) * zoom + zoom / 2))
            r = max(3, zoom // 2)
            cv2.line(canvas, (u - r, v), (u + r, v), COLOURS[cls], thick)
            cv2.line(canvas, (u, v - r), (u, v + r), COLOURS[cls], thick)
            name = f"{cls[0]}{i}"
            off = (r + 4) if (cls == "anode") == (side > 0) else -(r + 4 + 8 * len(name))
            cv2.putText(canvas, name, (u + off, v + 4), font, 0.5 if zoom >= 6 else 0.4, COLOURS[cls], 1)
    return canvas


def profile_readout(lf: LabelFile, cls: str, i: int) -> str:
    """The raw values around tip `i` (rows y-2..y+2 along the layer, a column behind the tip) and where the
    3-row mean crosses the convention's level: 25 % of the line's darkness left (anode), half-maximum of
    block against gap (cathode). A guide for the eye, not the answer."""
    pts = lf.tips(cls)
    _index(pts, i, cls)
    img = lf.image if lf.image.ndim == 2 else cv2.cvtColor(lf.image, cv2.COLOR_BGR2GRAY)
    x, y = pts[i]
    side = lf.facing
    xi, yi = int(round(x)), int(round(y))
    xs = list(range(xi - 16 * side, xi + 12 * side, side))
    h, w = img.shape
    val = lambda r, c: int(img[r, c]) if 0 <= r < h and 0 <= c < w else -1  # noqa: E731
    lines = [f"{cls} {i} at ({x:.1f}, {y:.1f}); tips face {'right' if side > 0 else 'left'}",
             "x     " + " ".join(f"{v:5d}" for v in xs)]  # fmt: skip
    lines += [f"y{yi + dy:4d} " + " ".join(f"{val(yi + dy, v):5d}" for v in xs) for dy in (-2, -1, 0, 1, 2)]
    xb = xi - 4 * side
    lines.append(f"column x={xb}, y {yi - 6}..{yi + 6}: " + " ".join(str(val(r, xb)) for r in range(yi - 6, yi + 7)))
    rows = [r for r in (yi - 1, yi, yi + 1) if 0 <= r < h]
    seg = np.array([np.mean([img[r, v] for r in rows]) if 0 <= v < w else np.nan for v in xs], float)
    if cls == "anode":
        line, ahead = np.nanmin(seg[:16]), np.nanmedian(seg[-6:])
        level, name = line + 0.75 * (ahead - line), "25 % darkness level"
    else:
        block, gap = np.nanmedian(seg[:8]), np.nanmax(seg[8:])
        level, name = (block + gap) / 2, "half maximum"
    for k in range(1, len(seg)):
        a, b = seg[k - 1], seg[k]
        if np.isfinite(a) and np.isfinite(b) and a != b and min(a, b) <= level <= max(a, b):
            xc = xs[k - 1] + (level - a) / (b - a) * side
            lines.append(f"3-row mean crosses the {name} ({level:.0f}) at x = {xc:.1f} (label x = {x:.1f})")
            break
    return "\n".join(lines)


def check_summary(folder: Path) -> dict:
    """Per frame of a labelling folder: minutes from the first edit (or `start`) to `done`, tips moved > 1 px,
    added, removed; and the totals. Read from ``checklog/``."""
    frames = {}
    for p in sorted((folder / "checklog").glob("*.jsonl")):
        ev = [json.loads(line) for line in p.read_text().splitlines() if line.strip()]
        done = [e["t"] for e in ev if e["op"] == "done"]
        moved = sum(1 for e in ev if e["op"] == "move" and np.hypot(*np.subtract(e["new"], e["old"])) > 1.0)
        frames[p.stem] = {
            "minutes": round((done[-1] - ev[0]["t"]) / 60.0, 1) if done else None,
            "moved_over_1px": moved,
            "added": sum(e["op"] == "add" for e in ev),
            "removed": sum(e["op"] == "remove" for e in ev),
            "checked": bool(done),
        }
    mins = [f["minutes"] for f in frames.values() if f["minutes"] is not None]
    return {
        "frames": frames,
        "checked": sum(f["checked"] for f in frames.values()),
        "median_minutes": float(np.median(mins)) if mins else None,
        "moved_over_1px": sum(f["moved_over_1px"] for f in frames.values()),
        "added": sum(f["added"] for f in frames.values()),
        "removed": sum(f["removed"] for f in frames.values()),
    }
