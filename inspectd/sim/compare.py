"""Visual check of the simulator against real frames.

``make_sim_vs_real``: zoomed tip-region crops, real (labelled X-ray-PBD frames)
next to simulated ones, same scale, so layer pitch, line thickness, contrast,
taper, noise grain and blur can be compared by eye.

``make_sim_examples``: a few whole simulated frames (different orientations and
bit depths), downscaled, with their labels drawn (anode tips red, cathode tips
green).

Run ``python -m inspectd.sim.compare --real ../shared/data/real --out docs``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

from inspectd.sim.render import SimOptions, render_debug

__all__ = ["make_sim_examples", "make_sim_vs_real", "real_tip_crops", "sim_tip_crops", "tip_crop", "to_u8"]

ANODE_BGR = (40, 40, 255)  # red
CATHODE_BGR = (40, 220, 40)  # green


def to_u8(img: np.ndarray, bit_depth: int | None = None) -> np.ndarray:
    """Display window: 8-bit as is; deeper images by their 0.2 / 99.8 percentiles."""
    if img.dtype == np.uint8 and (bit_depth in (None, 8)):
        return img
    f = img.astype(np.float32)
    lo, hi = np.percentile(f, (0.2, 99.8))
    return np.clip((f - lo) * (255.0 / max(hi - lo, 1e-6)), 0, 255).astype(np.uint8)


def tip_crop(img: np.ndarray, anode: np.ndarray, cathode: np.ndarray, w: int = 170, h: int = 100, where: float = 0.5):
    """Crop of the tip region (tips pointing right): from left of the cathode tips to beyond the anode tips,
    `h` rows around the point `where` (0 top .. 1 bottom) along the stack.  Returns (crop, (x0, y0))."""
    H, W = img.shape[:2]
    xa = float(np.median(anode[:, 0]))
    xc = float(np.median(cathode[:, 0]))
    x1 = int(round(xa + 0.3 * w - 0.3 * max(0.0, xa - xc - 0.55 * w)))
    x0 = x1 - w
    ys = anode[:, 1]
    yc = float(ys.min() + where * (ys.max() - ys.min()))
    y0 = int(round(yc - h / 2))
    x0 = min(max(0, x0), W - w)
    y0 = min(max(0, y0), H - h)
    return img[y0 : y0 + h, x0 : x0 + w], (x0, y0)


def _canonical(img: np.ndarray, a: np.ndarray, c: np.ndarray, orientation: str):
    """Rotate an image and its labels so that the tips point right."""
    S = img.shape[0]
    if orientation == "right":
        return img, a, c
    if orientation == "left":
        f = lambda p: np.stack([img.shape[1] - 1 - p[:, 0], p[:, 1]], 1)  # noqa: E731
        return cv2.flip(img, 1), f(a), f(c)
    if orientation == "up":  # undo rot90(k=1)
        f = lambda p: np.stack([S - 1 - p[:, 1], p[:, 0]], 1)  # noqa: E731
        return cv2.rotate(img, cv2.ROTATE_90_CLOCKWISE), f(a), f(c)
    if orientation == "down":
        f = lambda p: np.stack([p[:, 1], S - 1 - p[:, 0]], 1)  # noqa: E731
        return cv2.rotate(img, cv2.ROTATE_90_COUNTERCLOCKWISE), f(a), f(c)
    raise ValueError(orientation)


def real_tip_crops(real_dir: Path, n: int = 4, **kw) -> list[tuple[str, np.ndarray]]:
    """Tip crops of the labelled real frames (their labels locate the tip region)."""
    real_dir = Path(real_dir)
    out = []
    for js in sorted((real_dir / "labels").glob("*.json"))[: max(0, n)]:
        d = json.loads(js.read_text())
        img = cv2.imread(str(real_dir / "images" / d["source_image"]), cv2.IMREAD_GRAYSCALE)
        if img is None:
            continue
        a = np.asarray(d["labels"]["anode_tips"], float)
        c = np.asarray(d["labels"]["cathode_tips"], float)
        crop, _ = tip_crop(img, a, c, **kw)
        out.append((d["source_image"].split("__")[0] + " " + d["source_image"].rsplit("-", 1)[-1][:12], crop))
    return out


def sim_tip_crops(seed: int, n: int = 4, size: int = 1000, **kw) -> list[tuple[str, np.ndarray]]:
    """Tip crops of simulated frames (healthy, 8-bit, tips turned to point right)."""
    out = []
    for i in range(n):
        f, _ = render_debug(seed, i, SimOptions(size=size, bit_depth=8, defect_rate=0.0))
        img, a, c = _canonical(f.image, f.anode_tips, f.cathode_tips, f.orientation)
        crop, _ = tip_crop(to_u8(img, 8), a, c, **kw)
        out.append((f"sim {seed}/{i}", crop))
    return out


def _label(tile: np.ndarray, text: str) -> np.ndarray:
    t = cv2.cvtColor(tile, cv2.COLOR_GRAY2BGR) if tile.ndim == 2 else tile.copy()
    cv2.rectangle(t, (0, 0), (t.shape[1] - 1, 14), (0, 0, 0), -1)
    cv2.putText(t, text, (3, 11), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (0, 220, 255), 1, cv2.LINE_AA)
    return t


def _grid(tiles: list[np.ndarray], cols: int, pad: int = 4) -> np.ndarray:
    h = max(t.shape[0] for t in tiles)
    w = max(t.shape[1] for t in tiles)
    rows = (len(tiles) + cols - 1) // cols
    g = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, 3), 40, np.uint8)
    for k, t in enumerate(tiles):
        r, c = divmod(k, cols)
        y, x = pad + r * (h + pad), pad + c * (w + pad)
        g[y : y + t.shape[0], x : x + t.shape[1]] = t
    return g


def make_sim_vs_real(
    out_png: Path, real_dir: Path, seed: int = 7, n: int = 8, zoom: int = 3, w: int = 130, h: int = 80, cols: int = 4
) -> Path:
    """Zoomed tip crops: real frames in the upper rows, simulated ones below (same scale, 1000² frames)."""
    real = real_tip_crops(real_dir, n=8, w=w, h=h)
    # a spread of families first: clear, separator shadow, blur, tray
    order = ("clear", "sepa", "blur", "pole")
    pick = [next(r for r in real if key in r[0]) for key in order if any(key in r[0] for r in real)]
    pick = (pick + [r for r in real if all(r is not p for p in pick)])[:n]
    sim = sim_tip_crops(seed, n=n, w=w, h=h)
    tiles = []
    for name, crop in pick:
        big = cv2.resize(crop, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_NEAREST)
        tiles.append(_label(big, "real " + name))
    for name, crop in sim:
        tiles.append(_label(cv2.resize(crop, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_NEAREST), name))
    grid = _grid(tiles, cols=cols)
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out_png), grid, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    return out_png


def make_sim_examples(out_png: Path, seed: int = 3, tile: int = 330) -> Path:
    """Six simulated frames (orientations / bit depths / sizes / defects vary), downscaled, labels drawn."""
    specs = [
        (0, "none", SimOptions(size=2048, bit_depth=12, orientation="right")),
        (1, "none", SimOptions(size=1000, bit_depth=8, orientation="left")),
        (2, "folded_tip", SimOptions(size=1600, bit_depth=16, orientation="up")),
        (3, "overhang_short", SimOptions(size=2048, bit_depth=12, orientation="down")),
        (4, "extra_layer", SimOptions(size=1000, bit_depth=8, orientation="right")),
        (5, "missing_layer", SimOptions(size=1600, bit_depth=12, orientation="left")),
    ]
    tiles = []
    for idx, defect, opts in specs:
        f, _ = render_debug(seed, idx, opts, force_defect=defect)
        g = to_u8(f.image, f.bit_depth)
        k = tile / opts.size
        small = cv2.cvtColor(cv2.resize(g, (tile, tile), interpolation=cv2.INTER_AREA), cv2.COLOR_GRAY2BGR)
        for pts, col in ((f.anode_tips, ANODE_BGR), (f.cathode_tips, CATHODE_BGR)):
            for x, y in pts:
                cv2.circle(small, (int(round(x * k)), int(round(y * k))), 1, col, -1, cv2.LINE_AA)
        d = ",".join(f.defects) or "-"
        counts = f"A{len(f.anode_tips)}/C{len(f.cathode_tips)}"
        txt = f"{opts.size}px {f.bit_depth}b {f.orientation} {f.expected} {d} {counts}"
        tiles.append(_label(small, txt))
    grid = _grid(tiles, cols=3)
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out_png), grid, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    return out_png


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--real", type=Path, default=Path("../shared/data/real"), help="real data dir (images/, labels/)")
    ap.add_argument("--out", type=Path, default=Path("docs"))
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args(argv)
    p1 = make_sim_vs_real(a.out / "sim_vs_real.png", a.real, seed=a.seed)
    p2 = make_sim_examples(a.out / "sim_examples.png", seed=3)
    for p in (p1, p2):
        print(f"{p}  {p.stat().st_size / 1024:.0f} KB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
