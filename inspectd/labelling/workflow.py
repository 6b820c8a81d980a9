"""The labelling workflow on folders: propose into a labelled dump, redraw sheets, COCO out and back in, compare.

A labelling folder is a dump in the ``images/`` + ``labels/`` layout (what
`replay`, `eval` and `train` read), plus ``sheets/`` with one review sheet per
frame. `propose_dump` makes one from any dump; a person corrects the labels
(the JSON, or in CVAT / Label Studio through `export_coco` / `import_coco`),
`write_sheets` redraws the sheets, and `compare` scores two labellings of
the same frames against each other (how far two passes agree).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from inspectd.config import Config
from inspectd.evaluation.matching import default_gate, match_tips
from inspectd.frames import FrameReadError, TipLabels, iter_dump, list_dump, read_frame
from inspectd.frames.dumps import read_sidecar
from inspectd.frames.model import Sidecar
from inspectd.imaging.canonical import Orientation
from inspectd.imaging.window import to_8bit
from inspectd.inspection.measure import infer_tip_direction
from inspectd.labelling.coco import from_coco, to_coco
from inspectd.inspection.stages import TIP_DIRECTION
from inspectd.labelling.propose import propose
from inspectd.labelling.sheets import render_sheet
from inspectd.tips.detector import TipDetector

__all__ = ["assemble", "compare", "export_coco", "import_coco", "propose_dump", "write_sheets"]


def _place_image(src: Path, images: Path, copy: bool) -> Path:
    images.mkdir(parents=True, exist_ok=True)
    dst = images / src.name
    if dst.exists() or dst.is_symlink():
        dst.unlink()
    if copy:
        shutil.copy2(src, dst)
    else:
        dst.symlink_to(os.path.relpath(src.resolve(), images.resolve()))
    return dst


def _write_label(labels: Path, stem: str, meta: Sidecar, anode, cathode, **extra) -> Path:
    labels.mkdir(parents=True, exist_ok=True)
    data = json.loads(meta.to_json())
    data["labels"] = TipLabels(
        anode_tips=[tuple(map(float, p)) for p in np.asarray(anode).reshape(-1, 2)],
        cathode_tips=[tuple(map(float, p)) for p in np.asarray(cathode).reshape(-1, 2)],
    ).model_dump()
    data.update(extra)
    path = labels / f"{stem}.json"
    path.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    return path


def propose_dump(dump: Path, out: Path, detector: TipDetector | None, cfg: Config, *, copy: bool = False,
                 on_frame: Callable[[str, dict], None] | None = None) -> dict:  # fmt: skip
    """Propose tips for every frame of `dump` into the labelling folder `out`; returns a summary.

    Frames whose stem already has a label file in `out` are left alone (a
    person may have corrected it); delete the file to propose it again.
    """
    out = Path(out)
    summary = {"frames": 0, "proposed": 0, "kept": 0, "failed": [], "tips": 0, "agreed": 0, "to_check": 0, "seconds": 0.0}
    for path in list_dump(dump):
        t0 = time.perf_counter()
        summary["frames"] += 1
        if (out / "labels" / f"{path.stem}.json").exists():
            summary["kept"] += 1
            continue
        try:
            frame = read_frame(path)
        except Exception as e:
            summary["failed"].append(f"{path.name}: {e}")
            continue
        p = propose(frame, detector, cfg)
        if p.error and not (len(p.anode) or len(p.cathode)):
            summary["failed"].append(f"{path.name}: {p.error}")
            continue
        _place_image(path, out / "images", copy)
        source = "profile+model" if detector is not None else "profile"
        _write_label(out / "labels", path.stem, frame.meta, p.anode, p.cathode,
                     label_quality="proposed", label_source=source, review=p.review, dropped=p.dropped)  # fmt: skip
        _sheet(out, path.stem, to_8bit(frame.image, frame.bit_depth), p.anode, p.cathode, p.orientation, p.review)
        n = len(p.anode) + len(p.cathode)
        summary["proposed"] += 1
        summary["tips"] += n
        summary["agreed"] += p.agreed
        summary["to_check"] += len(p.review)
        summary["seconds"] += time.perf_counter() - t0
        if on_frame:
            on_frame(path.stem, {"tips": n, "to_check": len(p.review), "error": p.error})
    summary["seconds"] = round(summary["seconds"], 1)
    return summary


def _orientation_of(anode: np.ndarray, cathode: np.ndarray) -> Orientation:
    """Which way labelled tips point (anodes stick out beyond cathodes); RIGHT when it cannot be told."""
    d = infer_tip_direction(anode, cathode) if len(anode) and len(cathode) else None
    by_direction = {v: Orientation[name] for name, v in TIP_DIRECTION.items()}
    return by_direction[(float(d[0]), float(d[1]))] if d is not None else Orientation.RIGHT


def _sheet(out: Path, stem: str, img8, anode, cathode, orientation, review) -> Path:
    (out / "sheets").mkdir(parents=True, exist_ok=True)
    path = out / "sheets" / f"{stem}.png"
    cv2.imwrite(str(path), render_sheet(img8, anode, cathode, orientation, review, title=stem))
    return path


def write_sheets(folder: Path) -> int:
    """Redraw the review sheet of every labelled frame in a labelling folder (after corrections)."""
    n = 0
    for fr in iter_dump(folder):
        if isinstance(fr, FrameReadError) or fr.meta.labels is None:
            continue
        a, c = fr.meta.labels.arrays()
        review = (fr.meta.model_extra or {}).get("review") or []
        _sheet(Path(folder), fr.frame_id, to_8bit(fr.image, fr.bit_depth), a, c, _orientation_of(a, c), review)
        n += 1
    return n


def export_coco(folder: Path, out_json: Path) -> int:
    """Write the labelled frames of a dump as a COCO keypoints file; returns the number of frames."""
    frames = []
    for path in list_dump(folder):
        fr = read_frame(path)
        if fr.meta.labels is None:
            continue
        a, c = fr.meta.labels.arrays()
        h, w = fr.image.shape
        frames.append({"file_name": path.name, "width": w, "height": h, "anode": a, "cathode": c})
    Path(out_json).write_text(json.dumps(to_coco(frames), indent=1) + "\n", encoding="utf-8")
    return len(frames)


def import_coco(coco: Path, images: Path, out: Path, *, copy: bool = False) -> int:
    """Make a labelling folder from a COCO keypoints file and the folder its images are in."""
    labels = from_coco(coco)
    files = {p.stem: p for p in list_dump(images)}
    missing = sorted(set(labels) - set(files))
    if missing:
        raise FileNotFoundError(f"{len(missing)} images of {coco} are not in {images}: {missing[:5]}")
    for stem, (a, c) in labels.items():
        src = files[stem]
        side = src.with_suffix(".json")
        meta = read_sidecar(side) if side.exists() else Sidecar()
        _place_image(src, Path(out) / "images", copy)
        _write_label(Path(out) / "labels", stem, meta, a, c, label_quality="imported", label_source=f"coco:{Path(coco).name}")
    return len(labels)


def assemble(images: Path, labels: Path, out: Path, *, only: set[str] | None = None, copy: bool = False) -> int:
    """A labelled dump in `out` from images kept in one place and label files in another (e.g. in git).

    Only images with a label file are taken (and, with `only`, only those stems); returns how many.
    """
    out = Path(out)
    n = 0
    for path in list_dump(images):
        side = Path(labels) / f"{path.stem}.json"
        if not side.exists() or (only is not None and path.stem not in only):
            continue
        _place_image(path, out / "images", copy)
        (out / "labels").mkdir(parents=True, exist_ok=True)
        dst = out / "labels" / side.name
        if dst.exists() or dst.is_symlink():
            dst.unlink()
        dst.symlink_to(os.path.relpath(side.resolve(), (out / "labels").resolve()))
        n += 1
    return n


def compare(a: Path, b: Path) -> dict:
    """Two labellings of the same frames against each other: matched-tip distances, tips only one has."""
    def load(folder):
        out = {}
        for fr in iter_dump(folder):
            if not isinstance(fr, FrameReadError) and fr.meta.labels is not None:
                out[fr.frame_id] = fr.meta.labels.arrays()
        return out

    la, lb = load(a), load(b)
    common = sorted(set(la) & set(lb))
    dist: list[float] = []
    only_a = only_b = 0
    per_frame = {}
    for stem in common:
        gate = default_gate(*la[stem]) or 7.5
        fd = []
        for k in (0, 1):
            pairs, ua, ub = match_tips(la[stem][k], lb[stem][k], gate)
            fd += [float(np.hypot(*(la[stem][k][i] - lb[stem][k][j]))) for i, j in pairs]
            only_a += len(ua)
            only_b += len(ub)
        dist += fd
        per_frame[stem] = round(float(np.mean(fd)), 2) if fd else None
    d = np.asarray(dist)
    return {
        "frames": len(common), "matched": len(d),
        "mean_px": round(float(d.mean()), 2) if len(d) else None,
        "median_px": round(float(np.median(d)), 2) if len(d) else None,
        "p95_px": round(float(np.percentile(d, 95)), 2) if len(d) else None,
        "only_in_a": only_a, "only_in_b": only_b, "per_frame_mean_px": per_frame,
    }  # fmt: skip
