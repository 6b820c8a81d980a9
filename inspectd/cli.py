"""The `inspectd` command line.

Exit codes: 0 done; 1 the job failed at run time; 2 bad usage or bad config.
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from inspectd.config import Config, ConfigError, load_config

EXIT_FAILED, EXIT_USAGE = 1, 2

app = typer.Typer(
    name="inspectd",
    help="X-ray electrode-tip inspection daemon for stacked lithium cells.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console()
err = Console(stderr=True, soft_wrap=True)

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="station TOML (default: embedded defaults)")]


def _config(path: Path | None, overrides: dict[str, Any] | None = None) -> Config:
    try:
        return load_config(path, overrides)
    except ConfigError as e:
        err.print(f"[red]config error[/red]\n{e}", highlight=False)
        raise typer.Exit(EXIT_USAGE) from e


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    )


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
) -> None:
    """Render synthetic X-ray frames of cell corners with exact tip labels (a dump)."""
    if bit_depth not in (8, 12, 16):
        err.print(f"--bit-depth must be 8, 12 or 16, not {bit_depth}")
        raise typer.Exit(EXIT_USAGE)
    cfg = _config(config)
    from inspectd.sim import SimOptions
    from inspectd.sim.dump import simulate_dump

    opts = SimOptions(
        size=size, bit_depth=bit_depth, defect_rate=defect_rate, orientation=orientation.value, recipe=cfg.recipe
    )
    with _progress() as prog:
        task = prog.add_task("simulating", total=count)
        stats = simulate_dump(
            out_dir, count, seed, opts, station=cfg.station.name, on_frame=lambda: prog.advance(task), workers=workers
        )
    out.print(
        f"wrote {count} frames to {out_dir} ({stats['OK']} OK, {stats['NG']} NG; "
        f"{stats['seconds']:.1f} s, {stats['seconds'] / count * 1000:.0f} ms/frame)"
    )


def _detector(tips: str, cfg: Config):
    from inspectd.pipeline.workers import load_default_detector
    from inspectd.tips.detector import LabelOracle

    if tips == "labels":
        return LabelOracle()
    if tips == "model":
        return load_default_detector(cfg.engine.model_dump())
    err.print(f"--tips must be 'model' or 'labels', not {tips!r}")
    raise typer.Exit(EXIT_USAGE)


@app.command()
def replay(
    dump_dir: Annotated[Path, typer.Argument(help="dump directory (inspectd, X-ray-PBD or images/+labels/ layout)")],
    out_path: Annotated[Path | None, typer.Option("--out", "-o", help="verdicts as JSON lines")] = None,
    overlays: Annotated[Path | None, typer.Option(help="write an overlay JPEG per frame here")] = None,
    tips: Annotated[
        str, typer.Option(help="'model' (the tip detector) or 'labels' (ground truth from sidecars: an oracle)")
    ] = "model",
    config: ConfigOpt = None,
    station: Annotated[str | None, typer.Option(help="override station.name")] = None,
    mm_per_px: Annotated[float | None, typer.Option(help="override station.mm_per_px")] = None,
) -> None:
    """Inspect every frame of a dump offline and write one verdict per frame."""
    cfg = _config(config, {"station.name": station, "station.mm_per_px": mm_per_px})
    from inspectd.pipeline.replay import count_frames, replay_dump

    if not dump_dir.is_dir():
        err.print(f"dump directory not found: {dump_dir}")
        raise typer.Exit(EXIT_USAGE)
    detector = _detector(tips, cfg)
    total = count_frames(dump_dir)
    with _progress() as prog:
        task = prog.add_task("replaying", total=total)
        summary = replay_dump(dump_dir, cfg, detector, out_path, overlays, on_frame=lambda _i: prog.advance(task))
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
def validate_config(file: Annotated[Path, typer.Argument(help="station TOML to check")]) -> None:
    """Check a station config without starting anything."""
    cfg = _config(file)
    out.print(f"{file}: OK (station {cfg.station.name}, mm_per_px {cfg.station.mm_per_px})")


@app.command("eval")
def eval_cmd(
    dump_dir: Annotated[Path, typer.Argument(help="dump with ground-truth labels")],
    results: Annotated[Path, typer.Argument(help="verdicts JSON lines from replay --out")],
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
    gate_px: Annotated[float | None, typer.Option(help="matching gate radius, px (default: 3/4 of the label pitch)")] = None,
) -> None:
    """Score verdicts against a dump's labels: NME, PCK, PCS, counts, overhang MAE, overkill/escape."""
    from inspectd.evaluation.evaluate import evaluate_results

    try:
        report, text = evaluate_results(dump_dir, results, gate_px=gate_px)
    except (FileNotFoundError, ValueError) as e:
        err.print(str(e))
        raise typer.Exit(EXIT_USAGE) from e
    if as_json:
        print(json.dumps(report, indent=1))
    else:
        out.print(text, highlight=False)


@app.command()
def run(
    config: ConfigOpt = None,
    source: Annotated[str | None, typer.Option(help="source URI, e.g. replay:DIR?fps=4 or sim:?fps=10")] = None,
    pub: Annotated[str | None, typer.Option(help="ZeroMQ PUB address")] = None,
    query: Annotated[str | None, typer.Option(help="ZeroMQ ROUTER query address")] = None,
    station: Annotated[str | None, typer.Option(help="override station.name")] = None,
    trigger: Annotated[
        str | None, typer.Option(help='PULL address for PLC triggers {"part_id": ...}, e.g. tcp://127.0.0.1:5558')
    ] = None,
    tips: Annotated[
        str, typer.Option(help="'model' (the tip detector) or 'labels' (ground truth from sidecars: an oracle)")
    ] = "model",
    stop_after: Annotated[int | None, typer.Option(min=1, help="drain and exit after this many frames")] = None,
    exit_at_end: Annotated[bool, typer.Option(help="exit when a finite source (replay without loop) ends")] = False,
) -> None:
    """Run the inspection daemon: acquire, inspect across processes, publish verdicts (SIGTERM drains, SIGHUP reloads the recipe)."""
    cfg = _config(
        config,
        {
            "source.uri": source,
            "publish.pub": pub,
            "publish.query": query,
            "station.name": station,
            "trigger.address": trigger,
        },
    )
    if tips not in ("model", "labels"):
        err.print(f"--tips must be 'model' or 'labels', not {tips!r}")
        raise typer.Exit(EXIT_USAGE)
    from inspectd.pipeline.daemon import run_daemon
    from inspectd.tips.detector import LabelOracle

    raise typer.Exit(
        run_daemon(
            cfg,
            config_path=config,
            detector_factory=LabelOracle if tips == "labels" else None,
            stop_after=stop_after,
            exit_at_end=exit_at_end,
        )
    )


@app.command()
def watch(
    address: Annotated[str, typer.Argument(help="PUB address of a running daemon, e.g. tcp://127.0.0.1:5556")],
    query: Annotated[str | None, typer.Option(help="query address (default: learnt from a heartbeat)")] = None,
    station: Annotated[str | None, typer.Option(help="only this station")] = None,
    count: Annotated[int | None, typer.Option(min=1, help="stop after this many verdicts")] = None,
    timeout: Annotated[float | None, typer.Option(min=0.1, help="stop after this many seconds")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON event per line")] = False,
    server_key: Annotated[Path | None, typer.Option(help="CURVE: the daemon's public .key")] = None,
    client_secret: Annotated[Path | None, typer.Option(help="CURVE: this client's .key_secret")] = None,
) -> None:
    """Print verdicts from a running daemon live; notice seq gaps and recover them via the query socket."""
    from inspectd.publish.watch import watch as run_watch

    raise typer.Exit(
        run_watch(
            address,
            query=query,
            station=station,
            count=count,
            timeout_s=timeout,
            json_lines=as_json,
            server_key=server_key,
            client_secret=client_secret,
        )
    )


@app.command()
def keys(
    out_dir: Annotated[Path, typer.Argument(help="directory for the key pair")],
    name: Annotated[str, typer.Option(help="key name: 'server' for the daemon, a client name otherwise")] = "server",
) -> None:
    """Generate a CURVE key pair for encrypting verdicts beyond loopback."""
    from inspectd.publish.keys import generate_keys

    try:
        paths = generate_keys(out_dir, name=name)
    except (FileExistsError, OSError) as e:
        err.print(f"keys: {e}")
        raise typer.Exit(EXIT_FAILED) from e
    out.print(f"wrote {paths}")


@app.command()
def record(
    source: Annotated[str, typer.Option(help="source URI: sim:, replay:DIR, gst:PIPELINE, genicam:...")],
    out_dir: Annotated[Path, typer.Option("--out", help="dump directory to write (new or empty)")],
    count: Annotated[int, typer.Option(min=1, help="frames to take from the source (unreadable ones count)")] = 10,
    idle_timeout: Annotated[float, typer.Option(min=0.1, help="stop when the source delivers nothing this long, s")] = 30.0,
) -> None:
    """Record what a source delivers as a dump (docs/contracts.md §3: TIFF + JSON sidecar) that `inspectd replay` reads."""
    import time

    from inspectd.frames import FrameReadError, list_dump, write_frame
    from inspectd.sources import EndOfStream, SourceError, open_source

    if out_dir.exists() and (not out_dir.is_dir() or list_dump(out_dir)):
        what = "is not a directory" if not out_dir.is_dir() else f"already holds {len(list_dump(out_dir))} frames"
        err.print(f"record: {out_dir} {what}; choose a new or empty directory")
        raise typer.Exit(EXIT_USAGE)
    try:
        src = open_source(source)
        src.open()
    except SourceError as e:
        err.print(f"record: {e}")
        raise typer.Exit(EXIT_USAGE) from e
    written = unreadable = 0
    stop, code = "", 0
    t0 = time.monotonic()
    try:
        with _progress() as prog:
            task = prog.add_task("recording", total=count)
            last = time.monotonic()
            while written + unreadable < count:
                try:
                    item = src.read(0.5)
                except EndOfStream:
                    stop = "the source ended"
                    break
                except SourceError as e:
                    stop, code = f"source error: {e}", EXIT_FAILED
                    break
                if item is None:
                    if time.monotonic() - last > idle_timeout:
                        stop, code = f"no frame for {idle_timeout:g} s", EXIT_FAILED
                        break
                    continue
                last = time.monotonic()
                if isinstance(item, FrameReadError):
                    unreadable += 1
                    if unreadable <= 20:
                        err.print(f"unreadable frame {item.frame_id}: {item.message} (counted, not recorded)")
                else:
                    try:
                        write_frame(out_dir, item)
                    except Exception as e:  # a full disk, a bad frame id: the recording cannot go on
                        stop, code = f"cannot write {item.frame_id} to {out_dir}: {type(e).__name__}: {e}", EXIT_FAILED
                        break
                    written += 1
                prog.advance(task)
    except KeyboardInterrupt:
        stop, code = "interrupted", EXIT_FAILED
    finally:
        src.close()
    seconds = time.monotonic() - t0
    if stop and code == 0 and written == 0:
        code = EXIT_FAILED
    summary = f"recorded {written} frames to {out_dir} in {seconds:.1f} s"
    if unreadable:
        summary += f"; {unreadable} unreadable (counted, not recorded)"
    if stop:
        summary += f"; stopped early: {stop}"
    (err if code else out).print(summary, highlight=False, soft_wrap=True)
    raise typer.Exit(code)


@app.command()
def bench(
    quick: Annotated[bool, typer.Option(help="CI-sized run (the 'quick' scenario, under 2 minutes)")] = False,
    scenario: Annotated[
        str | None, typer.Option(help="scenario name (bench/scenarios/NAME.toml) or path to a TOML file")
    ] = None,
    repeat: Annotated[int | None, typer.Option(min=1, help="repeats per case (default: the scenario's)")] = None,
    out_dir: Annotated[Path, typer.Option("--out", help="where the JSON, CSV and PNGs go")] = Path("bench/results"),
    cache: Annotated[Path | None, typer.Option(help="bench dump cache (default runs/bench-cache)")] = None,
    plots: Annotated[bool, typer.Option(help="write PNG plots (needs the 'bench' extra: matplotlib)")] = True,
) -> None:
    """Throughput and latency of the daemon against a naive sequential loop: table, JSON/CSV, plots."""
    from inspectd.bench import ScenarioError, load_scenario, run_bench
    from inspectd.bench.report import print_table

    try:
        sc = load_scenario(scenario or ("quick" if quick else "default"))
    except ScenarioError as e:
        err.print(str(e))
        raise typer.Exit(EXIT_USAGE) from e
    result, paths = run_bench(sc, out_dir, repeats=repeat, cache=cache, console=err, plots=plots)
    wide = out if out.is_terminal else Console(width=170)  # a log file gets the whole table
    print_table(result, wide)
    for kind, path in paths.items():
        wide.print(f"{kind}: {path}")
    if result["failures"] and not any(c["repeats_ok"] for c in result["cases"]):
        raise typer.Exit(EXIT_FAILED)


_PASSTHROUGH = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}


def _needs_torch(what: str) -> None:
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        err.print(f"inspectd {what} needs torch: pip install 'inspectd[train]' (torch==2.13.0, CPU)")
        raise typer.Exit(EXIT_FAILED)


@app.command(context_settings=_PASSTHROUGH)
def train(ctx: typer.Context) -> None:
    """Train the HRNet tip model: --data DUMP --out runs/NAME [--resume] [--steps N] ... (--help for all options).

    Checkpoints every 100 steps and on SIGTERM; --resume continues exactly. Needs the "train" extra (torch).
    """
    _needs_torch("train")
    from inspectd.training.train import main as train_main

    raise typer.Exit(train_main(list(ctx.args)))


@app.command(context_settings=_PASSTHROUGH)
def export(ctx: typer.Context) -> None:
    """Export a checkpoint to ONNX + model card: CHECKPOINT OUT.onnx [--calib DUMP] [--test DUMP] (--help for all)."""
    _needs_torch("export")
    from inspectd.training.export import main as export_main

    raise typer.Exit(export_main(list(ctx.args)))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
