"""Measure the corner + ROI stage on the real development frames.

    python -m inspectd.evaluation.roi_eval [--data ../shared/data/real] [--mosaic docs/roi_real.png] [--timing]

prints: per-image rows (IoU with the mask box, mask coverage, labelled tips
inside), the summary (mean IoU, fraction of masks >= 95 % covered, fraction of
labelled tips inside), corner recall of the labelled tips for N = 128/256/512
at δ = 3 and 5 px, and optionally the stage's time per frame.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np

from inspectd.config import CornerConfig, RoiConfig
from inspectd.frames.dumps import read_image
from inspectd.imaging.window import to_8bit
from inspectd.inspection.corners import detect_corners
from inspectd.inspection.roi import Roi, find_roi_detail

__all__ = ["evaluate_roi_on_masks", "corner_recall", "time_stage", "write_mosaic", "mask_box", "box_iou_cover"]

_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}


def mask_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """Bounding box (x0, y0, x1, y1), inclusive-exclusive, of a binary mask's non-zero pixels."""
    ys, xs = np.nonzero(mask)
    if xs.size == 0:
        return None
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def _load_tips(labels_dir: Path | None, stem: str) -> np.ndarray | None:
    if labels_dir is None:
        return None
    p = labels_dir / f"{stem}.json"
    if not p.exists():
        return None
    lab = json.loads(p.read_text())["labels"]
    tips = list(lab.get("anode_tips", [])) + list(lab.get("cathode_tips", []))
    return np.asarray(tips, dtype=np.float64).reshape(-1, 2)


def _images(images_dir: Path) -> list[Path]:
    return sorted(p for p in Path(images_dir).iterdir() if p.suffix.lower() in _EXTS)


def box_iou_cover(roi: Roi | None, box: tuple[int, int, int, int] | list[int]) -> tuple[float, float]:
    """(IoU, fraction of `box` inside `roi`) for a Roi and an (x0, y0, x1, y1) box; (0, 0) without a Roi."""
    if roi is None:
        return 0.0, 0.0
    ix = max(0, min(roi.x1, box[2]) - max(roi.x0, box[0]))
    iy = max(0, min(roi.y1, box[3]) - max(roi.y0, box[1]))
    inter = ix * iy
    area_m = (box[2] - box[0]) * (box[3] - box[1])
    union = roi.width * roi.height + area_m - inter
    return inter / union, inter / area_m


def evaluate_roi_on_masks(
    images_dir: str | Path,
    masks_dir: str | Path,
    labels_dir: str | Path | None = None,
    corner_cfg: CornerConfig | None = None,
    roi_cfg: RoiConfig | None = None,
    **roi_kwargs,
) -> dict:
    """Run window -> corners -> ROI on every image that has a mask; compare with the mask's box.

    labels_dir defaults to ``images_dir/../labels`` when that exists. Returns
    ``{"rows": [per image], "summary": {...}}``; a row has stem, shape,
    orientation, roi ([x0, y0, x1, y1] or None), mask ([x0, y0, x1, y1]), iou,
    coverage (fraction of the mask box inside the ROI), tips / tips_inside
    (labelled images only) and the canonical-frame intermediates.
    """
    images_dir, masks_dir = Path(images_dir), Path(masks_dir)
    if labels_dir is None and (images_dir.parent / "labels").is_dir():
        labels_dir = images_dir.parent / "labels"
    labels_dir = Path(labels_dir) if labels_dir is not None else None
    corner_cfg = corner_cfg or CornerConfig()
    roi_cfg = roi_cfg or RoiConfig()
    rows = []
    for path in _images(images_dir):
        mpath = masks_dir / f"{path.stem}.png"
        if not mpath.exists():
            continue
        box = mask_box(read_image(mpath))
        if box is None:
            continue
        img8 = to_8bit(read_image(path))
        corners = detect_corners(img8, corner_cfg)
        detail = find_roi_detail(img8, corners, roi_cfg, **roi_kwargs)
        roi = detail.roi if detail else None
        iou, cover = box_iou_cover(roi, box)
        row = {
            "stem": path.stem,
            "shape": list(img8.shape),
            "orientation": roi.orientation.value if roi else None,
            "roi": roi.as_list() if roi else None,
            "mask": list(box),
            "iou": iou,
            "coverage": cover,
            "corners": int(len(corners)),
        }
        if detail:
            row.update(top=detail.top, bottom=detail.bottom, tip_front=detail.tip_front,
                       cathode_front=detail.cathode_front, layers=detail.layers)
        tips = _load_tips(labels_dir, path.stem)
        if tips is not None:
            row["tips"] = int(len(tips))
            row["tips_inside"] = int(roi.contains(tips).sum()) if roi else 0
        rows.append(row)
    n = len(rows)
    n_tips = sum(r.get("tips", 0) for r in rows)
    summary = {
        "images": n,
        "found": sum(r["roi"] is not None for r in rows),
        "mean_iou": float(np.mean([r["iou"] for r in rows])) if n else 0.0,
        "min_iou": float(np.min([r["iou"] for r in rows])) if n else 0.0,
        "covered_95": float(np.mean([r["coverage"] >= 0.95 for r in rows])) if n else 0.0,
        "min_coverage": float(np.min([r["coverage"] for r in rows])) if n else 0.0,
        "tips": n_tips,
        "tips_inside": float(sum(r.get("tips_inside", 0) for r in rows) / n_tips) if n_tips else None,
    }
    return {"rows": rows, "summary": summary}


def corner_recall(
    images_dir: str | Path,
    labels_dir: str | Path,
    ns: tuple[int, ...] = (128, 256, 512),
    deltas: tuple[float, ...] = (3.0, 5.0),
    corner_cfg: CornerConfig | None = None,
) -> dict:
    """Fraction of labelled tips with a corner within δ px, for each N (top-N by Harris score).

    Returns ``{N: {"all": {δ: r}, "anode": {...}, "cathode": {...}}, "tips": count}``.
    """
    from scipy.spatial import cKDTree

    base = corner_cfg or CornerConfig()
    labels_dir = Path(labels_dir)
    frames = []
    for lp in sorted(labels_dir.glob("*.json")):
        cands = [p for p in _images(Path(images_dir)) if p.stem == lp.stem]
        if not cands:
            continue
        lab = json.loads(lp.read_text())["labels"]
        an = np.asarray(lab["anode_tips"], float).reshape(-1, 2)
        ca = np.asarray(lab["cathode_tips"], float).reshape(-1, 2)
        frames.append((to_8bit(read_image(cands[0])), an, ca))
    out: dict = {"tips": int(sum(len(a) + len(c) for _, a, c in frames)), "frames": len(frames)}
    for n in ns:
        cfg = base.model_copy(update={"n": n})
        dist = {"anode": [], "cathode": []}
        for img8, an, ca in frames:
            pts = detect_corners(img8, cfg)[:, :2]
            tree = cKDTree(pts) if len(pts) else None
            for name, tips in (("anode", an), ("cathode", ca)):
                d = tree.query(tips)[0] if tree is not None and len(tips) else np.full(len(tips), np.inf)
                dist[name].append(d)
        res = {}
        for name in ("anode", "cathode"):
            d = np.concatenate(dist[name]) if dist[name] else np.zeros(0)
            res[name] = {float(dl): float(np.mean(d <= dl)) if d.size else 0.0 for dl in deltas}
        d_all = np.concatenate([np.concatenate(dist[k]) for k in ("anode", "cathode") if dist[k]])
        res["all"] = {float(dl): float(np.mean(d_all <= dl)) for dl in deltas}
        out[n] = res
    return out


def time_stage(img_raw: np.ndarray, corner_cfg: CornerConfig, roi_cfg: RoiConfig, repeat: int = 20) -> dict:
    """Median ms per frame of to_8bit, detect_corners, find_roi and their sum."""
    t = {"window": [], "corners": [], "roi": [], "total": []}
    for _ in range(repeat):
        t0 = time.perf_counter()
        img8 = to_8bit(img_raw)
        t1 = time.perf_counter()
        corners = detect_corners(img8, corner_cfg)
        t2 = time.perf_counter()
        find_roi_detail(img8, corners, roi_cfg)
        t3 = time.perf_counter()
        for k, v in (("window", t1 - t0), ("corners", t2 - t1), ("roi", t3 - t2), ("total", t3 - t0)):
            t[k].append(v * 1e3)
    return {k: float(np.median(v)) for k, v in t.items()}


def write_mosaic(result: dict, images_dir: str | Path, out: str | Path, stems: list[str] | None = None,
                 corner_cfg: CornerConfig | None = None, cols: int = 4, tile: int = 280) -> Path:
    """Grid of downscaled frames: predicted ROI (green), mask box (red, 2 px), corners (yellow pixels)."""
    images_dir = Path(images_dir)
    rows = {r["stem"]: r for r in result["rows"]}
    stems = stems or list(rows)[:12]
    tiles = []
    for stem in stems:
        r = rows[stem]
        path = next(p for p in _images(images_dir) if p.stem == stem)
        img8 = to_8bit(read_image(path))
        corners = detect_corners(img8, corner_cfg or CornerConfig())
        s = tile / max(img8.shape)
        small = cv2.resize(img8, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
        t = np.zeros((tile, tile, 3), np.uint8)
        t[: small.shape[0], : small.shape[1]] = cv2.cvtColor(small, cv2.COLOR_GRAY2BGR)
        xy = np.clip(np.rint(corners[:, :2] * s).astype(int), 0, tile - 1)
        t[xy[:, 1], xy[:, 0]] = (0, 220, 255)
        m = r["mask"]
        cv2.rectangle(t, (int(m[0] * s), int(m[1] * s)), (int((m[2] - 1) * s), int((m[3] - 1) * s)), (0, 0, 255), 2)
        if r["roi"]:
            b = r["roi"]
            cv2.rectangle(t, (int(b[0] * s), int(b[1] * s)), (int((b[2] - 1) * s), int((b[3] - 1) * s)), (0, 255, 0), 1)
        label = f"{stem[:16]} IoU {r['iou']:.2f} cov {r['coverage']:.2f}"
        cv2.putText(t, label, (3, tile - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.36, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(t, label, (3, tile - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.36, (255, 255, 255), 1, cv2.LINE_AA)
        tiles.append(t)
    while len(tiles) % cols:
        tiles.append(np.zeros((tile, tile, 3), np.uint8))
    grid = np.vstack([np.hstack(tiles[i : i + cols]) for i in range(0, len(tiles), cols)])
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), grid, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    return out


def _default_data() -> Path:
    return Path(__file__).resolve().parents[3] / "shared" / "data" / "real"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m inspectd.evaluation.roi_eval", description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=_default_data(), help="dir with images/, masks/, labels/")
    ap.add_argument("--mosaic", type=Path, help="write an overlay mosaic PNG of 12 frames here")
    ap.add_argument("--timing", action="store_true", help="time the stage at 1000^2 and on a 2048^2 upscale")
    ap.add_argument("--json", type=Path, help="write the full result as JSON here")
    args = ap.parse_args(argv)
    images, masks, labels = args.data / "images", args.data / "masks", args.data / "labels"
    if not images.is_dir():
        ap.error(f"no images/ under {args.data}")
    res = evaluate_roi_on_masks(images, masks, labels if labels.is_dir() else None)
    print(f"{'image':44s} {'or':5s} {'IoU':>5s} {'cover':>6s} {'tips':>7s}  roi / mask")
    for r in res["rows"]:
        tips = f"{r['tips_inside']}/{r['tips']}" if "tips" in r else ""
        flag = "  <-- <95 %" if r["coverage"] < 0.95 else ""
        print(f"{r['stem'][:44]:44s} {str(r['orientation'])[:5]:5s} {r['iou']:5.2f} {r['coverage']:6.3f} "
              f"{tips:>7s}  {r['roi']} / {r['mask']}{flag}")
    s = res["summary"]
    tips_in = "n/a" if s["tips_inside"] is None else f"{s['tips_inside'] * 100:.1f} % of {s['tips']}"
    print(
        f"\n{s['images']} images, ROI found on {s['found']}; mean IoU {s['mean_iou']:.3f} (min {s['min_iou']:.3f}); "
        f"masks >= 95 % covered: {s['covered_95'] * 100:.1f} % (min coverage {s['min_coverage']:.3f}); "
        f"labelled tips inside: {tips_in}"
    )
    if labels.is_dir():
        rec = corner_recall(images, labels)
        print(f"\ncorner recall of {rec['tips']} labelled tips ({rec['frames']} frames), "
              "fraction with a corner within δ:")
        print("    N  δ=3 all  δ=5 all  δ=3 an  δ=3 ca  δ=5 an  δ=5 ca")
        for n in (128, 256, 512):
            r = rec[n]
            print(f"{n:5d} {r['all'][3.0]:8.3f} {r['all'][5.0]:8.3f} {r['anode'][3.0]:7.3f} {r['cathode'][3.0]:7.3f} "
                  f"{r['anode'][5.0]:7.3f} {r['cathode'][5.0]:7.3f}")
    if args.timing:
        first = next(p for p in _images(images) if read_image(p).shape == (1000, 1000))
        raw = read_image(first)
        big8 = cv2.resize(raw, (2048, 2048), interpolation=cv2.INTER_LINEAR)
        big16 = (big8.astype(np.uint16) << 4) | (big8.astype(np.uint16) >> 4)  # 12-bit-like uint16
        for name, frame in (("1000^2 uint8", raw), ("2048^2 uint16 (12-bit)", big16)):
            t = time_stage(frame, CornerConfig(), RoiConfig())
            print(f"\n{name}: window {t['window']:.1f} ms + corners {t['corners']:.1f} ms + ROI {t['roi']:.1f} ms "
                  f"= {t['total']:.1f} ms (median of 20, {first.stem[:20]})")
    if args.mosaic:
        pick = _mosaic_stems(res)
        print(f"\nmosaic -> {write_mosaic(res, images, args.mosaic, pick)}")
    if args.json:
        args.json.write_text(json.dumps(res, indent=1, default=float))
    return 0


def _mosaic_stems(res: dict, k: int = 12) -> list[str]:
    """The 4 worst frames (under-covered first, then lowest IoU) plus an even spread of the rest."""
    rows = res["rows"]
    worst = sorted(rows, key=lambda r: (r["coverage"] >= 0.95, r["iou"]))[:4]
    rest = [r for r in rows if r not in worst]
    step = max(1, len(rest) // (k - len(worst)))
    return [r["stem"] for r in worst] + [r["stem"] for r in rest[::step]][: k - len(worst)]


if __name__ == "__main__":
    raise SystemExit(main())
