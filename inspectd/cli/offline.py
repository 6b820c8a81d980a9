"""Offline commands: render frames, replay a dump, score verdicts, check a station file."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from inspectd.cli.app import ConfigOpt, TipsOpt, app, check_tips, fail, load_cfg, load_model_or_exit, out, progress
from inspectd.tips.detector import LabelOracle


class OrientationChoice(StrEnum):
    any = "any"
    right = "right"
    left = "left"
    up = "up"
    down = "down"


@app.command()
def simulate(
    out_dir: Annotated[Path, typer.Argument(help="dump directory to write (created if missing)")],
    count: Annotated[int, typer.Option(min=1, help="frames to render")] = 20,
    seed: Annotated[int, typer.Option(min=0, help="scene seed: same seed, same frames")] = 1,
    size: Annotated[int, typer.Option(min=256, max=8192, help="frame side in px")] = 2048,
    bit_depth: Annotated[int, typer.Option(help="8, 12 or 16")] = 12,
    defect_rate: Annotated[float, typer.Option(min=0.0, max=1.0, help="fraction of cells with a defect")] = 0.3,
    orientation: Annotated[OrientationChoice, typer.Option(help="direction the tips point")] = OrientationChoice.any,
    config: ConfigOpt = None,
    workers: Annotated[int, typer.Option(min=1, help="render in this many processes (same frames)")] = 1,
    families: Annotated[
        str, typer.Option(help="domain-randomisation families that may appear: comma list, 'all', 'all-X,Y' or '' (base)")
    ] = "",
    family_rate: Annotated[float, typer.Option(min=0.0, max=1.0, help="chance of each allowed family per frame")] = 0.35,
) -> None:
    """Render synthetic X-ray frames of cell corners with exact tip labels (a dump)."""
    if bit_depth not in (8, 12, 16):
        raise fail(f"--bit-depth must be 8, 12 or 16, not {bit_depth}")
    cfg = load_cfg(config)
    from inspectd.sim import SimOptions
    from inspectd.sim.dump import simulate_dump
    from inspectd.sim.variety import parse_families

    try:
        fams = parse_families(families)
    except ValueError as e:
        raise fail(str(e)) from None
    opts = SimOptions(
        size=size, bit_depth=bit_depth, defect_rate=defect_rate, orientation=orientation.value, recipe=cfg.recipe,
        families=fams, family_rate=family_rate,
    )
    with progress() as prog:
        task = prog.add_task("simulating", total=count)
        stats = simulate_dump(
            out_dir, count, seed, opts, station=cfg.station.name, on_frame=lambda: prog.advance(task), workers=workers
        )
    out.print(
        f"wrote {count} frames to {out_dir} ({stats['OK']} OK, {stats['NG']} NG; "
        f"{stats['seconds']:.1f} s, {stats['seconds'] / count * 1000:.0f} ms/frame)"
    )


@app.command()
def replay(
    dump_dir: Annotated[Path, typer.Argument(help="dump directory (inspectd, X-ray-PBD or images/+labels/ layout)")],
    out_path: Annotated[Path | None, typer.Option("--out", "-o", help="verdicts as JSON lines")] = None,
    overlays: Annotated[Path | None, typer.Option(help="write an overlay JPEG per frame here")] = None,
    tips: TipsOpt = "model",
    config: ConfigOpt = None,
    station: Annotated[str | None, typer.Option(help="override station.name")] = None,
    mm_per_px: Annotated[float | None, typer.Option(help="override station.mm_per_px")] = None,
) -> None:
    """Inspect every frame of a dump offline and write one verdict per frame."""
    cfg = load_cfg(config, {"station.name": station, "station.mm_per_px": mm_per_px})
    from inspectd.pipeline.replay import count_frames, replay_dump

    if not dump_dir.is_dir():
        raise fail(f"dump directory not found: {dump_dir}")
    total = count_frames(dump_dir)
    if total == 0:
        raise fail(
            f"no frames in {dump_dir}: expected <stem>.tiff (or .tif/.png/.jpg/.jpeg/.bmp) files, "
            "an X-ray-PBD img/ folder or an images/ + labels/ pair (docs/contracts.md §3)"
        )
    check_tips(tips)
    from inspectd.inspection.corner_backends import CornerBackendUnavailable

    detector = LabelOracle() if tips == "labels" else load_model_or_exit(cfg, "replay")
    try:
        with progress() as prog:
            task = prog.add_task("replaying", total=total)
            summary = replay_dump(dump_dir, cfg, detector, out_path, overlays, on_frame=lambda _i: prog.advance(task))
    except CornerBackendUnavailable as e:
        raise fail(str(e)) from None
    out.print(f"{summary.frames} frames from {dump_dir} in {summary.seconds:.1f} s")
    table = Table()
    table.add_column("result")
    table.add_column("frames", justify="right")
    for res in ("OK", "NG", "ERROR", "TIMEOUT"):
        table.add_row(res, str(summary.results.get(res, 0)))
    out.print(table)
    if summary.reasons:
        out.print("reasons: " + ", ".join(f"{k} x{v}" for k, v in summary.reasons.most_common()))
    if out_path:
        out.print(f"verdicts: {out_path}")
    if overlays:
        out.print(f"overlays: {overlays}/")


@app.command("validate-config")
def validate_config(
    file: Annotated[Path, typer.Argument(help="station TOML to check")],
    tips: Annotated[
        str, typer.Option(help="'model': also load the [engine] model, as `run` does; 'labels': skip that check")
    ] = "model",
) -> None:
    """Check a station file without starting anything: every key, and that its tip model exists and loads."""
    cfg = load_cfg(file)
    check_tips(tips)
    model = "not checked (--tips labels)"
    if tips == "model":
        det = load_model_or_exit(cfg, f"{file}: [engine] model")
        model = f"{det.name} from {cfg.engine.model}"
    out.print(f"{file}: OK (station {cfg.station.name}, mm_per_px {cfg.station.mm_per_px}; model {model})")


@app.command("eval")
def eval_cmd(
    dump_dir: Annotated[Path, typer.Argument(help="dump with ground-truth labels")],
    results: Annotated[Path, typer.Argument(help="verdicts JSON lines from replay --out")],
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
    gate_px: Annotated[float | None, typer.Option(help="matching gate radius, px (default: 3/4 of the label pitch)")] = None,
    calibrate_gate: Annotated[
        Path | None,
        typer.Option(help="set the model card's LOW_CONFIDENCE limits from these verdicts' good frames (give the .onnx)"),
    ] = None,
) -> None:
    """Score verdicts against a dump's labels: NME, PCK, PCS, counts, overhang MAE, overkill/escape."""
    from inspectd.evaluation.evaluate import evaluate_results

    if calibrate_gate is not None:
        from inspectd.evaluation.gate_calibration import CRITERIA
        from inspectd.evaluation.gate_eval import calibrate_gate as calibrate, write_gate

        GATE_KEYS = [k for k, _ in CRITERIA]

        try:
            gate = calibrate([(dump_dir, results)])
            card = write_gate(calibrate_gate, gate)
        except (FileNotFoundError, ValueError) as e:
            raise fail(str(e)) from e
        on = ", ".join(f"{k} {gate[k]}" for k in GATE_KEYS if gate.get(k) is not None) or "none"
        out.print(
            f"gate limits from {gate['frames']} clean frames ({gate.get('errors_caught', 'no error frames')}; "
            f"bound {gate['fire_rate_bound']:.2%} of clean frames stopped): {on}; written to {card}"
        )
    try:
        report, text = evaluate_results(dump_dir, results, gate_px=gate_px)
    except (FileNotFoundError, ValueError) as e:
        raise fail(str(e)) from e
    if as_json:
        print(json.dumps(report, indent=1))
    else:
        out.print(text, highlight=False)
