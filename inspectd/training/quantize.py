"""An int8 variant of a tip model for ONNX Runtime on CPU, and what it costs (issue #5, Export).

Static QDQ quantisation with ONNX Runtime's own tool: weights int8 per output
channel, activations uint8 with MinMax ranges observed on the model's real
input, i.e. pitch-normalised tiles of calibration frames (`tips/crop.py`).
`keep_fp32` leaves named nodes in float (e.g. the stride-2 head, whose output
the sub-pixel decoder reads).

``python -m inspectd.training.quantize MODEL.onnx OUT.onnx --calib DUMP --test DUMP
[--keep-head] [--json RESULT.json]`` writes OUT.onnx and its card (the source
card, with the new sha256 and the measured metrics), then compares both models
on the same held-out frames: ms per tile (rounds interleaved so background load
hits both alike; medians) and tip accuracy at the card's threshold. The int8
model ships only if that comparison says it should; docs/model.md has the
figures. Needs the `onnx` package (the `train` extra); the daemon runs an int8
model with the core install like any other ONNX file.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from inspectd.backends.onnxruntime import OnnxRuntimeConfig, OnnxRuntimeEngine
from inspectd.tips.card import card_path, load_card, sha256_file
from inspectd.tips.crop import make_batch

__all__ = ["calibration_tiles", "compare", "head_nodes", "quantize_int8"]


def calibration_tiles(frames, spec, n: int) -> list[np.ndarray]:
    """Up to `n` single tiles (1, 1, H, W) cut from `frames` (`validation.ValFrame`s) as inference cuts them."""

    tiles: list[np.ndarray] = []
    for vf in frames:
        xb, _ = make_batch(vf.img8, vf.roi, spec)
        tiles += [xb[i : i + 1] for i in range(len(xb))]
        if len(tiles) >= n:
            break
    return tiles[:n]


def head_nodes(model_path: Path | str) -> list[str]:
    """Names of the nodes after the backbone (the stride-2 head and the final 1x1 conv)."""
    import onnx

    return [nd.name for nd in onnx.load(str(model_path)).graph.node if nd.name.startswith(("/head", "/final"))]


def quantize_int8(src: Path | str, out: Path | str, tiles: list[np.ndarray], keep_fp32: list[str] | None = None) -> Path:
    """Write the int8 QDQ model of `src` to `out`, activation ranges from `tiles`."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if not tiles:
        raise ValueError("int8 calibration needs at least one tile")

    class _Tiles(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(tiles)

        def get_next(self):
            x = next(self._it, None)
            return None if x is None else {"input": np.ascontiguousarray(x, np.float32)}

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as td:
        pre = Path(td) / "pre.onnx"
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)  # shape inference + graph folding
        quantize_static(
            str(pre), str(out), _Tiles(),
            quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=list(keep_fp32 or []),
        )  # fmt: skip
    return out


def _time_tiles(engines: dict, tiles: list[np.ndarray], rounds: int) -> dict:
    """Median ms per tile of each engine; every round runs all engines on all tiles, in turn."""
    ts: dict[str, list[float]] = {k: [] for k in engines}
    for _ in range(rounds):
        for k, eng in engines.items():
            for x in tiles:
                t = time.perf_counter()
                eng.infer(x)
                ts[k].append((time.perf_counter() - t) * 1000)
    return {k: {"ms_median": round(float(np.median(v)), 3), "ms_p10": round(float(np.percentile(v, 10)), 3),
                "n": len(v)} for k, v in ts.items()}  # fmt: skip


def compare(models: dict[str, Path], frames, spec, codec, *, threads: int = 2, rounds: int = 5, n_tiles: int = 40) -> dict:
    """Accuracy (DARK at the card's threshold) and ms per tile of each model on the same `frames`."""
    from inspectd.training.validation import validate

    engines = {}
    for k, p in models.items():
        engines[k] = OnnxRuntimeEngine(OnnxRuntimeConfig(model=Path(p), threads=threads))
        engines[k].load()
    tiles = calibration_tiles(frames, spec, n_tiles)
    for eng in engines.values():  # warm-up
        for x in tiles[:3]:
            eng.infer(x)
    timing = _time_tiles(engines, tiles, rounds)
    res: dict = {"frames": len(frames), "threads": threads, "timing_tiles": len(tiles), "rounds": rounds, "models": {}}
    for k, eng in engines.items():
        v = validate(eng.infer, frames, spec, codec, thresholds=(codec.threshold,))
        a = v["at_threshold"]["dark"]
        res["models"][k] = {
            "path": str(models[k]),
            "size_bytes": Path(models[k]).stat().st_size,
            **timing[k],
            # None where a model matched no tip at all (a broken variant: report it, do not crash)
            **{m: None if a[m] is None else round(float(a[m]), 4)
               for m in ("median_px", "p95_px", "p99_px", "miss_rate", "false_rate")},  # fmt: skip
            "n_labelled": int(a["n_gt"]),
        }
    base = next(iter(res["models"]))
    for k, m in res["models"].items():
        m["speedup_vs_" + base] = round(res["models"][base]["ms_median"] / m["ms_median"], 3)
    return res


def main(argv: list[str] | None = None) -> int:
    from inspectd.training.data import find_dumps
    from inspectd.training.validation import val_frames

    p = argparse.ArgumentParser(prog="python -m inspectd.training.quantize", description=__doc__.split("\n\n")[0])
    p.add_argument("model", help="fp32 .onnx with its card beside it")
    p.add_argument("out", help="int8 .onnx to write (card beside it)")
    p.add_argument("--calib", nargs="+", required=True, help="dumps whose tiles set the activation ranges")
    p.add_argument("--test", nargs="+", required=True, help="held-out dumps to compare fp32 and int8 on")
    p.add_argument("--calib-tiles", type=int, default=100)
    p.add_argument("--test-frames", type=int, default=120)
    p.add_argument("--keep-head", action="store_true", help="leave the head (after the backbone) in fp32")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--json", type=Path, default=None, help="write the comparison here too")
    a = p.parse_args(argv)

    card = load_card(a.model)
    spec, codec = card.input_spec(), card.codec()
    calib_dumps, test_dumps = find_dumps(a.calib), find_dumps(a.test)
    calib = val_frames(calib_dumps, max(1, a.calib_tiles // 2))  # 1-4 tiles per frame
    keep = head_nodes(a.model) if a.keep_head else []
    out = quantize_int8(a.model, a.out, calibration_tiles(calib, spec, a.calib_tiles), keep)
    test = val_frames(test_dumps, a.test_frames)
    res = compare({"fp32": Path(a.model), "int8": out}, test, spec, codec, threads=a.threads, rounds=a.rounds)
    res.update(source=card.model_id, keep_fp32=keep, calib_dumps=[str(d) for d in calib_dumps],
               test_dumps=[str(d) for d in test_dumps],
               created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))  # fmt: skip
    q = card.model_copy(deep=True)
    q.onnx, q.sha256 = out.name, sha256_file(out)
    q.name = card.name + "-int8"
    q.export = {"opset": card.export.get("opset"), "size_bytes": out.stat().st_size,
                "quantization": {"scheme": "static QDQ, int8 weights per channel, uint8 activations, MinMax",
                                 "source": card.model_id, "calib_tiles": a.calib_tiles, "keep_fp32": keep}}  # fmt: skip
    q.metrics = {"int8_vs_fp32": res}  # the source card's metrics belong to the fp32 weights
    card_path(out).write_text(q.to_json() + "\n", encoding="utf-8")
    text = json.dumps(res, indent=1)
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(text + "\n", encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
