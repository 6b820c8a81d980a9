"""Export a training checkpoint to ONNX + model card: ``export_onnx(checkpoint, out_path)``.

1. ``torch.onnx.export`` (TorchScript exporter, opset 17 by default), input
   ``input`` (B, 1, H, W) with dynamic batch, height and width (H, W multiples
   of 32), output ``heatmaps`` (B, 2, H/s, W/s); checked with ``onnx.checker``.
2. Verified against torch on random and real tiles of several shapes: the
   max abs heatmap difference goes in the card (``export.max_abs_diff``) and
   must stay below ``tol``.
3. Threshold calibration and metrics: the inference path
   (`training.validation.validate`, ONNX Runtime) on the calibration dumps (default:
   the run's validation dumps) picks the threshold (min miss + false rate);
   metrics for all three decoders are then measured on the test dumps at that
   threshold (held out from training and calibration when given).
4. Card ``<out>.json`` next to the model (`model.card.ModelCard`): training
   data (dumps, simulator seeds, counts, sizes, bit depths), seed, steps,
   options, metrics, sha256 of the .onnx, input spec, decode parameters,
   engine timings.

``inspectd export CHECKPOINT OUT.onnx [--calib DIR ...] [--test DIR ...]``
"""

from __future__ import annotations

import json
import time
import warnings
from collections import Counter
from pathlib import Path

import numpy as np

from inspectd.backends.onnxruntime import OnnxRuntimeConfig, OnnxRuntimeEngine
from inspectd.frames import FrameError, list_dump, read_image
from inspectd.frames.dumps import is_labelled_images_layout
from inspectd.tips.card import CARD_SCHEMA, ModelCard, card_path, sha256_file
from inspectd.tips.codec import HeatmapCodec
from inspectd.tips.crop import InputSpec, make_batch

__all__ = ["export_onnx", "describe_dumps", "time_engine"]


def describe_dumps(dumps: list[Path]) -> list[dict]:
    """Per dump: frame count, simulator seeds, image sizes, bit depths, defect fraction (from sidecars).

    A labelled real dump (``images/`` + ``labels/``, given as either folder) also lists every frame it
    holds by stem, with the labels' quality: the card says which real frames the model saw.
    """
    out = []
    for d in dumps:
        root = Path(d)
        labels = None
        if root.name == "images" and is_labelled_images_layout(root.parent):
            labels = root.parent / "labels"
        elif is_labelled_images_layout(root):
            labels, root = root / "labels", root / "images"
        seeds, sizes, bits, quality, n, defects = Counter(), Counter(), Counter(), Counter(), 0, 0
        idx, stems = [], []
        for js in sorted((labels or root).glob("*.json")):
            try:
                m = json.loads(js.read_text())
            except (OSError, ValueError):
                continue
            n += 1
            stems.append(js.stem)
            sim = m.get("sim") or {}
            if "seed" in sim:
                seeds[sim["seed"]] += 1
                idx.append(sim.get("index", 0))
            bits[m.get("bit_depth")] += 1
            quality[m.get("label_quality") or "unknown"] += 1
            defects += bool(m.get("defects"))
        images = sorted(root.glob("*.tif*"))[:1] if labels is None else list_dump(root)
        for img in images:
            try:
                sizes[str(read_image(img).shape)] += 1
            except FrameError:
                continue
        entry = {
            "dump": str(d),
            "frames": n,
            "sim_seeds": sorted(seeds),
            "sim_index_range": [int(min(idx)), int(max(idx))] if idx else None,
            "bit_depths": sorted(k for k in bits if k is not None),
            "image_shape": sorted(sizes),
            "defect_fraction": round(defects / n, 3) if n else None,
        }
        if labels is not None:
            entry |= {"real_frames": stems, "label_quality": dict(quality)}
        out.append(entry)
    return out


def time_engine(onnx_path: Path, shapes=((256, 192), (320, 224), (512, 256), (704, 256)), threads: int = 2, runs: int = 30) -> dict:
    """ONNX Runtime ms per tile (batch 1, `threads` intra-op threads): p10, median, p90 per input shape.

    On a shared machine the p10 is the figure to compare (the median includes other jobs' load)."""

    eng = OnnxRuntimeEngine(OnnxRuntimeConfig(model=onnx_path, threads=threads))
    eng.load()
    res = {}
    for h, w in shapes:
        x = np.random.default_rng(0).standard_normal((1, 1, h, w)).astype(np.float32)
        for _ in range(5):
            eng.infer(x)
        ts = []
        for _ in range(runs):
            t = time.perf_counter()
            eng.infer(x)
            ts.append((time.perf_counter() - t) * 1000)
        res[f"{w}x{h}"] = {k: round(float(np.percentile(ts, q)), 2) for k, q in (("ms_p10", 10), ("ms_median", 50), ("ms_p90", 90))}
    return res


def export_onnx(
    checkpoint: Path | str,
    out_path: Path | str,
    *,
    opset: int = 17,
    calib: list | None = None,
    test: list | None = None,
    calib_frames: int = 150,
    test_frames: int = 300,
    name: str | None = None,
    tol: float = 1e-4,
    timing: bool = True,
    spec_overrides: dict | None = None,
    dark_blurs: tuple[float, ...] = (0.0, 0.5, 1.0),
    threshold: float | None = None,
    log=print,
) -> ModelCard:
    """Export `checkpoint` (last.pt / best.pt) to `out_path` (.onnx) and write the card beside it.

    `threshold`: the peak threshold to ship instead of the calibration's choice (which the card still
    records under metrics.calibration); DARK's smoothing is still chosen on the calibration set."""
    import torch

    from inspectd.nets.checkpoint import load_checkpoint, torch_infer
    from inspectd.nets.hrnet import count_params
    from inspectd.training.data import find_dumps
    from inspectd.training.validation import val_frames, validate

    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    model, ck = load_checkpoint(checkpoint)
    spec = InputSpec.for_inference(ck["input_spec"], **(spec_overrides or {}))
    codec = HeatmapCodec.from_dict(ck["codec"])
    x = torch.zeros(1, 1, spec.tile_h, spec.tile_w)
    tmp = out_path.with_name(out_path.name + ".tmp")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (x,), str(tmp), dynamo=False, opset_version=opset,
            input_names=["input"], output_names=["heatmaps"],
            dynamic_axes={"input": {0: "batch", 2: "height", 3: "width"}, "heatmaps": {0: "batch", 2: "hm_height", 3: "hm_width"}},
        )
    import onnx

    onnx.checker.check_model(onnx.load(str(tmp)))
    tmp.replace(out_path)

    # -- torch vs ONNX Runtime

    eng = OnnxRuntimeEngine(OnnxRuntimeConfig(model=out_path))
    eng.load()
    tinf = torch_infer(model)
    rng = np.random.default_rng(0)
    diffs = {}
    for shp in [(1, 1, spec.tile_h, spec.tile_w), (2, 1, 320, spec.tile_w), (1, 1, 512, 160)]:
        xb = rng.standard_normal(shp).astype(np.float32)
        diffs[f"random {shp}"] = float(np.abs(eng.infer(xb) - tinf(xb)).max())
    calib_d = find_dumps(calib) if calib else find_dumps(ck["options"].get("val") or [])
    test_d = find_dumps(test) if test else []
    cal = val_frames(calib_d, calib_frames) if calib_d else []
    for vf in cal[:3]:
        xb, _ = make_batch(vf.img8, vf.roi, spec)
        diffs[f"tiles {vf.frame_id} {xb.shape}"] = float(np.abs(eng.infer(xb) - tinf(xb)).max())
    max_diff = max(diffs.values())
    log(f"torch vs onnxruntime max abs heatmap difference {max_diff:.2e}")
    if not max_diff < tol:
        raise RuntimeError(f"ONNX export differs from torch by {max_diff:.3g} (> {tol})")

    # -- threshold calibration and held-out metrics through ONNX Runtime
    metrics: dict = {}
    if cal:
        # threshold (min miss + false rate) and DARK's smoothing sigma (min median error) on the calibration set
        runs = {}
        for blur in dark_blurs:
            c = HeatmapCodec.from_dict({**codec.to_dict(), "dark_blur": blur})
            runs[blur] = validate(eng.infer, cal, spec, c)
        blur = min(dark_blurs, key=lambda b: (runs[b]["score"], b))
        v = runs[blur]
        chosen = v["threshold"] if threshold is None else float(threshold)
        codec = HeatmapCodec.from_dict({**codec.to_dict(), "threshold": chosen, "dark_blur": blur})
        metrics["calibration"] = {
            "dumps": [str(d) for d in calib_d],
            **_slim(v),
            "dark_blur": {str(b): runs[b]["at_threshold"]["dark"] for b in dark_blurs},
        }
        log(f"calibrated threshold {v['threshold']:.2f}, DARK blur {blur} on {len(cal)} frames"
            + ("" if threshold is None else f"; shipped threshold fixed at {chosen:.2f}"))
        if threshold is not None:
            metrics["calibration"]["threshold_fixed"] = chosen
    if test_d:
        tf = val_frames(test_d, test_frames)
        v = validate(eng.infer, tf, spec, codec, thresholds=(codec.threshold,))
        metrics["test"] = {"dumps": [str(d) for d in test_d], **_slim(v)}
        a = v["at_threshold"]
        log("test: " + ", ".join(f"{m} median {a[m]['median_px']:.3f} px" for m in a) +
            f"; miss {a['dark']['miss_rate']:.4f} false {a['dark']['false_rate']:.4f}")

    o = ck["options"]
    sha = sha256_file(out_path)
    card = ModelCard(
        schema=CARD_SCHEMA,
        name=name or ck["model_config"]["name"],
        onnx=out_path.name,
        sha256=sha,
        params=count_params(model),
        input={**spec.to_dict(), "normalisation": "per tile: (grey - mean) / max(std, std_floor) on the to_8bit frame",
               "layout": "input (B,1,H,W) float32, H and W multiples of 32; canonical frame (tips pointing right)"},
        decode=codec.to_dict(),
        model=ck["model_config"],
        training={
            "checkpoint": str(checkpoint),
            "step": int(ck["step"]),
            "seed": o.get("seed"),
            "options": o,
            "augmentation": ck.get("aug"),
            "data": describe_dumps([Path(d) for d in ck.get("data", [])]),
            "n_train_frames": ck.get("n_train_frames"),
            "validation": describe_dumps([Path(d) for d in (o.get("val") or [])]),
        },
        metrics=metrics,
        export={
            "opset": opset,
            "torch": torch.__version__,
            "onnx": onnx.__version__,
            "max_abs_diff": max_diff,
            "diffs": diffs,
            "size_bytes": out_path.stat().st_size,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        },
    )
    if timing:
        card.export["onnxruntime_ms_per_tile_2threads"] = time_engine(out_path)
    card_path(out_path).write_text(card.to_json() + "\n", encoding="utf-8")
    log(f"wrote {out_path} ({out_path.stat().st_size / 1e6:.1f} MB) and {card_path(out_path)}; model id {card.model_id}")
    return card


def _slim(v: dict) -> dict:
    return {k: v[k] for k in ("frames", "frames_with_roi", "threshold", "at_threshold", "model_ms_median")}
