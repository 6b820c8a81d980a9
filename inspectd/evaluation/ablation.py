"""The paper's Table 1 ablation (arXiv 2412.17105 §3, issue #5 §6).

For every labelled frame: preprocess -> locate (corners + ROI, paper §2.1) ->
the HRNet engine once -> decode the same heatmaps with argmax and with DARK ->
the variants

* ``HRNet``                    no correction,
* ``HRNet + corners N=128``    correction enabled, in-ROI corner pass n=128,
* ``HRNet + corners N=256``    ... n=256,
* ``HRNet + corners N=512``    ... n=512,

everything else the default `Config` (δ, patch, bins, the in-ROI FAST
threshold).  The in-ROI corners of one N are computed once per frame and
shared by both decoders.  The engine runs once per frame: argmax and DARK are
two decodings of the same heatmaps (exactly what `HrnetDetector.detect` does
with `decoder` set to either).

Scored with `inspectd.evaluation.metrics.evaluate` (Hungarian matching with the default
pitch gate); NME / PCK / PCS are normalised by the diagonal of the verdict's
ROI, like the paper.  Units: fractions in [0, 1] (NME 0.00658 = the paper's
0.658 %).  A frame whose ROI is not found scores as a frame with no tips (all
missed) and is normalised by its labels' bounding box (counted in
``details``).

    python -m inspectd.evaluation.ablation --out bench/results/ablation.json \
        [--sim DIR ...] [--real DIR] [--frames N] [--model engines/hrnet_tips.onnx]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from inspectd.backends import OnnxRuntimeConfig
from inspectd.config import Config
from inspectd.evaluation.metrics import evaluate
from inspectd.frames import FrameReadError, iter_dump
from inspectd.inspection.stages import TIP_DIRECTION, StageError, locate, preprocess, refine, roi_corners
from inspectd.tips.crop import make_batch
from inspectd.tips.detector import Tips
from inspectd.tips.hrnet import load_detector
from inspectd.tips.infer import merge_tiles

__all__ = ["VARIANTS", "DECODERS", "run_ablation", "main"]

CORNER_NS = (128, 256, 512)
VARIANTS: tuple[tuple[str, int | None], ...] = (("HRNet", None),) + tuple(
    (f"HRNet + corners N={n}", n) for n in CORNER_NS
)
DECODERS = ("argmax", "dark")
ROW_KEYS = ("variant", "decoder", "dataset", "nme", "pck_0_5", "pck_1", "pcs_0_5", "pcs_1", "median_px", "miss_rate", "n_images")
UNITS = "fractions in [0, 1] (nme, pck_*, pcs_*, miss_rate; nme/pck/pcs normalised by the ROI diagonal); median_px in pixels"


def _labelled_frames(dirs: list[Path], max_frames: int | None):
    """(frame, gt) of every readable, labelled frame of the dumps, in order, at most `max_frames` per dataset."""

    n = 0
    for d in dirs:
        for item in iter_dump(d):
            if max_frames is not None and n >= max_frames:
                return
            if isinstance(item, FrameReadError) or item.meta.labels is None:
                continue
            n += 1
            yield item, {"labels": item.meta.labels.model_dump()}


def _tips_dict(tips) -> dict:
    return {
        "anode_tips": np.asarray(tips.anode, float)[:, :2].tolist() if len(tips.anode) else [],
        "cathode_tips": np.asarray(tips.cathode, float)[:, :2].tolist() if len(tips.cathode) else [],
    }


def _corner_offsets(gt: dict, corners: np.ndarray, direction: tuple[float, float] | None) -> tuple[list, list]:
    """Per labelled tip: distance to the nearest corner, and that corner's offset along the tip direction."""
    from scipy.spatial import cKDTree

    g = np.asarray(gt["labels"].get("anode_tips", []) + gt["labels"].get("cathode_tips", []), float).reshape(-1, 2)
    if len(g) == 0 or len(corners) == 0:
        return [], []
    d, i = cKDTree(np.asarray(corners, float)[:, :2]).query(g)
    along = []
    if direction is not None:
        along = list(((np.asarray(corners, float)[i, :2] - g) @ np.asarray(direction, float)).tolist())
    return d.tolist(), along


def run_ablation(
    datasets: dict[str, list[Path]],
    model: Path,
    max_frames: int | None = None,
    *,
    threads: int = 1,
    details: dict | None = None,
    progress: bool = False,
) -> list[dict]:
    """Rows of the ablation, one per (variant, decoder, dataset), keys `ROW_KEYS`.

    datasets: name -> dump directories (sidecar or images/+labels/ layout);
    only labelled frames count, at most `max_frames` per dataset.
    details: if a dict is given it is filled with per-row extras (p95, false
    tips, how many tips the correction moved, normaliser sources), per-dataset
    corner diagnostics and timings.
    """

    det = load_detector(OnnxRuntimeConfig(model=Path(model), threads=threads))
    base = Config()
    cfgs = {
        n: base.model_copy(update={"correction": base.correction.model_copy(update={"enabled": True, "n": n})})
        for n in CORNER_NS
    }
    rows: list[dict] = []
    extra_rows: list[dict] = []
    diag_by_ds: dict[str, dict] = {}
    timing: dict[str, dict] = {}
    for ds_name, dirs in datasets.items():
        t0 = time.perf_counter()
        records: dict[tuple[str, str], list] = {(v, dec): [] for v, _ in VARIANTS for dec in DECODERS}
        moved = {(v, dec): [0, 0] for v, _ in VARIANTS for dec in DECODERS}
        corner_d: dict[int, list] = {n: [] for n in CORNER_NS}
        corner_along: dict[int, list] = {n: [] for n in CORNER_NS}
        n_frames = n_no_roi = 0
        for frame, gt in _labelled_frames([Path(d) for d in dirs], max_frames):
            n_frames += 1
            img8 = preprocess(frame)
            try:
                _, roi = locate(img8, base)
            except StageError:
                roi = None
            if roi is None:
                n_no_roi += 1
                empty = {"anode_tips": [], "cathode_tips": [], "result": "ERROR"}
                for key in records:
                    records[key].append((frame.frame_id, gt, empty))
                continue
            box = {"roi": (roi.x0, roi.y0, roi.x1, roi.y1), "result": "OK"}
            batch, plan = make_batch(img8, roi, det.spec)
            hm = np.asarray(det.engine.infer(batch), np.float32)
            raw = {}
            for dec in DECODERS:
                a, c = merge_tiles(hm, plan, det.codec, det.threshold, dec)
                raw[dec] = Tips(anode=a[:, :2].copy(), cathode=c[:, :2].copy())
                records[("HRNet", dec)].append((frame.frame_id, gt, {**box, **_tips_dict(raw[dec])}))
            direction = TIP_DIRECTION[roi.orientation.name]
            for vname, n in VARIANTS[1:]:
                corners = roi_corners(img8, roi, cfgs[n])
                dd, al = _corner_offsets(gt, corners, direction)
                corner_d[n] += dd
                corner_along[n] += al
                for dec in DECODERS:
                    tips = refine(raw[dec], corners, img8, cfgs[n])
                    before = np.concatenate([raw[dec].anode, raw[dec].cathode]).reshape(-1, 2)
                    after = np.concatenate([tips.anode, tips.cathode]).reshape(-1, 2)
                    m = moved[(vname, dec)]
                    m[0] += int(np.sum(np.any(np.abs(after - before) > 1e-9, axis=1)))
                    m[1] += len(before)
                    records[(vname, dec)].append((frame.frame_id, gt, {**box, **_tips_dict(tips)}))
            if progress and n_frames % 50 == 0:
                print(f"  {ds_name}: {n_frames} frames, {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
        secs = time.perf_counter() - t0
        timing[ds_name] = {"frames": n_frames, "frames_without_roi": n_no_roi, "seconds": round(secs, 1)}
        if n_frames == 0:
            continue
        for vname, _ in VARIANTS:
            for dec in DECODERS:
                rep = evaluate(records[(vname, dec)])
                rows.append(
                    {
                        "variant": vname,
                        "decoder": dec,
                        "dataset": ds_name,
                        "nme": rep.nme,
                        "pck_0_5": rep.pck["0.5%"],
                        "pck_1": rep.pck["1%"],
                        "pcs_0_5": rep.pcs["0.5%"],
                        "pcs_1": rep.pcs["1%"],
                        "median_px": rep.error_px["median"],
                        "miss_rate": rep.miss_rate,
                        "n_images": rep.n_images,
                    }
                )
                mv = moved[(vname, dec)]
                extra_rows.append(
                    {
                        "variant": vname,
                        "decoder": dec,
                        "dataset": ds_name,
                        "mean_px": rep.error_px["mean"],
                        "p95_px": rep.error_px["p95"],
                        "p99_px": rep.error_px["p99"],
                        "false_tip_rate": rep.false_tip_rate,
                        "n_gt_tips": rep.n_gt_tips,
                        "n_matched": rep.n_matched,
                        "tips_moved_by_correction": (mv[0] / mv[1]) if mv[1] else None,
                        "diag_sources": rep.diag_sources,
                    }
                )
        cd = {}
        for n in CORNER_NS:
            d = np.asarray(corner_d[n])
            al = np.asarray(corner_along[n])
            cd[f"N={n}"] = {
                "labelled_tips": int(d.size),
                "nearest_corner_px_median": float(np.median(d)) if d.size else None,
                "tips_with_corner_within_1px": float(np.mean(d <= 1.0)) if d.size else None,
                "tips_with_corner_within_delta": float(np.mean(d <= base.correction.delta_px)) if d.size else None,
                "nearest_corner_along_tip_px_median": float(np.median(al)) if al.size else None,
            }
        diag_by_ds[ds_name] = cd
    if details is not None:
        details["rows"] = extra_rows
        details["corner_diagnostics"] = {
            "what": "per labelled tip, the nearest in-ROI corner (the correction's candidate q_i): distance, and its "
            "offset along the tip direction (negative = inside the tip, back towards the stack)",
            "delta_px": base.correction.delta_px,
            **diag_by_ds,
        }
        details["timing"] = timing
        details["model"] = det.name
        details["decoder_default"] = det.codec.decoder
        details["threshold"] = det.threshold
    return rows


def markdown_tables(result: dict) -> str:
    """The docs/accuracy.md tables (NME in %, PCK/PCS as fractions like the paper) from an ablation JSON."""
    extra = {(d["variant"], d["decoder"], d["dataset"]): d for d in result.get("details", {}).get("rows", [])}
    head = (
        "| Method | decoder | NME (%) ↓ | PCK@0.5% ↑ | PCK@1% ↑ | PCS@0.5% ↑ | PCS@1% ↑ | median px | p95 px "
        "| miss rate | tips moved | images |\n|---|---|---|---|---|---|---|---|---|---|---|---|"
    )

    def num(v, fmt):
        return "-" if v is None else fmt.format(v)

    out = []
    for ds in dict.fromkeys(r["dataset"] for r in result["rows"]):
        out += [f"### {ds}", "", head]
        rows = [r for r in result["rows"] if r["dataset"] == ds]
        for r in sorted(rows, key=lambda r: r["decoder"]):  # stable: argmax block, then dark
            x = extra.get((r["variant"], r["decoder"], ds), {})
            moved = x.get("tips_moved_by_correction")
            name = r["variant"]
            out.append(
                f"| {name} | {r['decoder']} | {num(r['nme'] and 100 * r['nme'], '{:.3f}')} | "
                f"{num(r['pck_0_5'], '{:.3f}')} | {num(r['pck_1'], '{:.3f}')} | {num(r['pcs_0_5'], '{:.3f}')} | "
                f"{num(r['pcs_1'], '{:.3f}')} | {num(r['median_px'], '{:.2f}')} | {num(x.get('p95_px'), '{:.2f}')} | "
                f"{num(r['miss_rate'] and 100 * r['miss_rate'], '{:.2f} %')} | "
                f"{num(moved and 100 * moved, '{:.1f} %')} | {r['n_images']} |"
            )
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "--markdown":
        print(markdown_tables(json.loads(Path(sys.argv[2]).read_text())))
        return 0
    ap = argparse.ArgumentParser(prog="python -m inspectd.evaluation.ablation", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="JSON to write")
    ap.add_argument("--sim", type=Path, nargs="*", action="extend", default=None, help="simulator test dumps")
    ap.add_argument("--real", type=Path, default=None, help="real frames (images/ + labels/)")
    ap.add_argument("--frames", type=int, default=None, help="at most N labelled frames per dataset")
    ap.add_argument("--model", type=Path, default=Path("engines/hrnet_tips.onnx"))
    ap.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads (one process)")
    a = ap.parse_args(argv)
    sims = a.sim if a.sim else [Path("runs/data/test/s1000_b12"), Path("runs/data/test/s2048_b12")]
    datasets: dict[str, list[Path]] = {"sim": sims}
    if a.real is not None:
        datasets["real"] = [a.real]
    t0 = time.perf_counter()
    details: dict = {}
    rows = run_ablation(datasets, a.model, a.frames, threads=a.threads, details=details, progress=True)
    out = {
        "model": details.get("model"),
        "units": UNITS,
        "datasets": {k: [str(p) for p in v] for k, v in datasets.items()},
        "frames_per_dataset_cap": a.frames,
        "config": "default Config(); correction variants: correction.enabled=true, correction.n=N (in-ROI corner pass)",
        "seconds": round(time.perf_counter() - t0, 1),
        "rows": rows,
        "details": details,
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(out, indent=1, default=lambda x: None if isinstance(x, float) and not math.isfinite(x) else x) + "\n")
    for r in rows:
        f = lambda k: "-" if r[k] is None else f"{100 * r[k]:.3f}"  # noqa: E731
        print(
            f"{r['dataset']:5} {r['variant']:22} {r['decoder']:6} NME {f('nme')}% PCK {f('pck_0_5')}/{f('pck_1')} "
            f"PCS {f('pcs_0_5')}/{f('pcs_1')} med {r['median_px'] or float('nan'):.2f}px miss {f('miss_rate')}% n={r['n_images']}"
        )
    print(f"wrote {a.out} in {out['seconds']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
