"""Developer commands: the benchmark, training the tip model, exporting it."""

from __future__ import annotations

import importlib.util
import json
from dataclasses import fields
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from inspectd.cli.app import EXIT_FAILED, app, err, fail, out
from inspectd.training.options import TrainOptions

BENCH_SCRATCH = Path("runs/bench")  # untracked (.gitignore): an ad-hoc run never dirties the checkout
BENCH_RESULTS = Path("bench/results")  # the committed results, written with --save


@app.command()
def bench(
    quick: Annotated[bool, typer.Option(help="CI-sized run (the 'quick' scenario, under 2 minutes)")] = False,
    scenario: Annotated[
        str | None, typer.Option(help="scenario name (bench/scenarios/NAME.toml) or path to a TOML file")
    ] = None,
    repeat: Annotated[int | None, typer.Option(min=1, help="repeats per case (default: the scenario's)")] = None,
    out_dir: Annotated[
        Path | None, typer.Option("--out", help=f"where the JSON, CSV and PNGs go (default {BENCH_SCRATCH}/)")
    ] = None,
    save: Annotated[
        bool, typer.Option(help=f"write into {BENCH_RESULTS}/, the results committed with the code")
    ] = False,
    cache: Annotated[Path | None, typer.Option(help="bench dump cache (default runs/bench-cache)")] = None,
    plots: Annotated[bool, typer.Option(help="write PNG plots (needs the 'bench' extra: matplotlib)")] = True,
) -> None:
    """Throughput and latency of the daemon against a naive sequential loop: table, JSON/CSV, plots."""
    from inspectd.bench import ScenarioError, load_scenario, run_bench
    from inspectd.bench.report import print_table

    if save and out_dir is not None:
        raise fail("bench: --save writes to bench/results; give either --save or --out")
    target = BENCH_RESULTS if save else (out_dir or BENCH_SCRATCH)
    try:
        sc = load_scenario(scenario or ("quick" if quick else "default"))
    except ScenarioError as e:
        raise fail(str(e)) from e
    result, paths = run_bench(sc, target, repeats=repeat, cache=cache, console=err, plots=plots)
    wide = out if out.is_terminal else Console(width=170)  # a log file gets the whole table
    print_table(result, wide)
    for kind, path in paths.items():
        wide.print(f"{kind}: {path}")
    if result["failures"] and not any(c["repeats_ok"] for c in result["cases"]):
        raise typer.Exit(EXIT_FAILED)


def _needs_torch(what: str) -> None:
    if importlib.util.find_spec("torch") is None:
        raise fail(f"inspectd {what} needs torch: pip install 'inspectd[train]' (torch==2.13.0, CPU)", EXIT_FAILED)


_T = {f.name: f.default for f in fields(TrainOptions) if f.name not in ("aug", "oversample", "dump_weights")}


def _d(name: str) -> str:
    return f" [default {_T[name]}]" if _T[name] is not None else ""


def _json_option(value: str | None, what: str) -> dict | None:
    if value is None:
        return None
    try:
        obj = json.loads(value)
    except json.JSONDecodeError as e:
        raise fail(f"{what}: not JSON ({e}): {value!r}") from e
    if not isinstance(obj, dict):
        raise fail(f"{what}: expected a JSON object, got {value!r}")
    return obj


@app.command()
def train(
    data: Annotated[list[Path], typer.Option(help="training dump, or a folder of dumps (repeat for several)")],
    out_dir: Annotated[Path, typer.Option("--out", help="run folder: last.pt, best.pt, train.log")],
    resume: Annotated[bool, typer.Option(help="continue exactly from <out>/last.pt")] = False,
    init: Annotated[str | None, typer.Option(help="fine-tune from this checkpoint's weights (same architecture)")] = None,
    val: Annotated[list[str] | None, typer.Option(help="held-out dump(s) [default <data>/../val if it exists]")] = None,
    val_frames: Annotated[int | None, typer.Option(help="frames in each validation pass" + _d("val_frames"))] = None,
    limit_per_dump: Annotated[int | None, typer.Option(help="at most this many frames per training dump")] = None,
    variant: Annotated[str | None, typer.Option(help="HRNet variant: w18s, w18s_v2, w12s, tiny" + _d("variant"))] = None,
    head_stride: Annotated[int | None, typer.Option(help="heatmap stride, input px" + _d("head_stride"))] = None,
    head_channels: Annotated[int | None, typer.Option(help="heatmap head width" + _d("head_channels"))] = None,
    head_blocks: Annotated[int | None, typer.Option(help="residual blocks in the head" + _d("head_blocks"))] = None,
    stem_skip: Annotated[bool | None, typer.Option(help="full-resolution skip into the head" + _d("stem_skip"))] = None,
    pitch_in: Annotated[float | None, typer.Option(help="same-class layer pitch in a tile, px" + _d("pitch_in"))] = None,
    tile_w: Annotated[int | None, typer.Option(help="tile width, px" + _d("tile_w"))] = None,
    tile_h: Annotated[int | None, typer.Option(help="tile height, px" + _d("tile_h"))] = None,
    sigma: Annotated[float | None, typer.Option(help="target Gaussian sigma, heatmap px" + _d("sigma"))] = None,
    steps: Annotated[int | None, typer.Option(help="optimiser steps the schedule spans" + _d("steps"))] = None,
    batch: Annotated[int | None, typer.Option(help="tiles per step" + _d("batch"))] = None,
    lr: Annotated[float | None, typer.Option(help="peak learning rate (AdamW)" + _d("lr"))] = None,
    weight_decay: Annotated[float | None, typer.Option(help="AdamW weight decay" + _d("weight_decay"))] = None,
    warmup: Annotated[int | None, typer.Option(help="linear warm-up steps" + _d("warmup"))] = None,
    lr_final: Annotated[float | None, typer.Option(help="cosine decay to this fraction of lr" + _d("lr_final"))] = None,
    loss: Annotated[str | None, typer.Option(help="mse, or wmse (foreground-weighted)" + _d("loss"))] = None,
    fg_weight: Annotated[float | None, typer.Option(help="wmse: 1 + this x target" + _d("fg_weight"))] = None,
    grad_clip: Annotated[float | None, typer.Option(help="gradient norm clip" + _d("grad_clip"))] = None,
    seed: Annotated[int | None, typer.Option(help="batch i is a function of (seed, i)" + _d("seed"))] = None,
    threads: Annotated[int | None, typer.Option(help="torch CPU threads" + _d("threads"))] = None,
    device: Annotated[str | None, typer.Option(help="cpu, cuda or auto" + _d("device"))] = None,
    workers: Annotated[int | None, typer.Option(help="batch-making processes (0: in the loop)" + _d("workers"))] = None,
    ckpt_every: Annotated[int | None, typer.Option(help="checkpoint every N steps" + _d("ckpt_every"))] = None,
    val_every: Annotated[int | None, typer.Option(help="validate every N steps" + _d("val_every"))] = None,
    log_every: Annotated[int | None, typer.Option(help="log every N steps" + _d("log_every"))] = None,
    max_minutes: Annotated[float | None, typer.Option(help="stop with a checkpoint after this wall time")] = None,
    stop_at: Annotated[int | None, typer.Option(help="stop with a checkpoint at this step (schedule unchanged)")] = None,
    progress: Annotated[bool | None, typer.Option(help="progress bar [default: when stderr is a terminal]")] = None,
    aug: Annotated[str | None, typer.Option(help='augmentation overrides, JSON, e.g. {"blur_max": 2.5}')] = None,
    oversample: Annotated[str | None, typer.Option(help='defect sampling weights, JSON, e.g. {"extra_layer": 4}')] = None,
    dump_weights: Annotated[
        str | None, typer.Option(help='per-dump sampling weights, JSON: part of the path -> weight, e.g. {"real": 8}')
    ] = None,
) -> None:
    """Train the HRNet tip model on simulator and labelled dumps (needs the "train" extra: torch).

    Checkpoints every --ckpt-every steps, on Ctrl-C and on SIGTERM; --resume continues exactly.
    """
    _needs_torch("train")
    from inspectd.training.train import train as run_train

    given = dict(locals())
    opts = {k: v for k, v in given.items() if k in _T and v is not None}
    for key, what in (("aug", "--aug"), ("oversample", "--oversample"), ("dump_weights", "--dump-weights")):
        obj = _json_option(given[key], what)
        if obj is not None:
            opts[key] = obj
    dumps = [str(p) for p in data]
    res = run_train(dumps if len(dumps) > 1 else dumps[0], out_dir, **opts)
    print(json.dumps({k: v for k, v in res.items() if k != "val"}))


@app.command()
def export(
    checkpoint: Annotated[Path, typer.Argument(help="training checkpoint (.pt: last.pt or best.pt)")],
    onnx_out: Annotated[Path, typer.Argument(help="output .onnx; its model card is written beside it as .json")],
    calib: Annotated[
        list[Path] | None, typer.Option(help="dump(s) to calibrate the peak threshold on [default: the run's val]")
    ] = None,
    test: Annotated[list[Path] | None, typer.Option(help="held-out dump(s) for the card's metrics")] = None,
    calib_frames: Annotated[int, typer.Option(help="frames used for calibration")] = 150,
    test_frames: Annotated[int, typer.Option(help="frames used for the card's metrics")] = 300,
    opset: Annotated[int, typer.Option(help="ONNX opset")] = 17,
    name: Annotated[str | None, typer.Option(help="model name in the card [default: the run's variant]")] = None,
    timing: Annotated[bool, typer.Option(help="time the ONNX model on this machine for the card")] = True,
    threshold: Annotated[
        float | None, typer.Option(help="ship this peak threshold instead of the calibrated one (both in the card)")
    ] = None,
) -> None:
    """Export a checkpoint to ONNX with its model card (data, seed, metrics, hash); needs torch."""
    _needs_torch("export")
    from inspectd.training.export import export_onnx

    export_onnx(
        checkpoint, onnx_out, opset=opset, calib=[str(p) for p in calib] if calib else None,
        test=[str(p) for p in test] if test else None, calib_frames=calib_frames, test_frames=test_frames,
        name=name, timing=timing, threshold=threshold,
    )  # fmt: skip
