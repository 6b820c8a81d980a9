"""Station commands: the daemon, watching it, its keys, recording what a source delivers."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from inspectd.cli.app import EXIT_FAILED, ConfigOpt, TipsOpt, app, check_tips, err, fail, load_cfg, out, progress
from inspectd.frames import FrameReadError, list_dump, write_frame
from inspectd.sources import EndOfStream, SourceError, open_source
from inspectd.tips.detector import LabelOracle


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
    tips: TipsOpt = "model",
    stop_after: Annotated[int | None, typer.Option(min=1, help="drain and exit after this many frames")] = None,
    exit_at_end: Annotated[bool, typer.Option(help="exit when a finite source (replay without loop) ends")] = False,
    new_journal: Annotated[
        bool, typer.Option(help="start although the journal is not the one last used here (seq starts again)")
    ] = False,
) -> None:
    """Run the inspection daemon: acquire, inspect across processes, publish verdicts (SIGTERM drains, SIGHUP reloads the recipe)."""
    cfg = load_cfg(
        config,
        {
            "source.uri": source,
            "publish.pub": pub,
            "publish.query": query,
            "station.name": station,
            "trigger.address": trigger,
        },
    )
    check_tips(tips)
    from inspectd.pipeline.run import run_daemon  # the daemon's imports only when one is started

    raise typer.Exit(
        run_daemon(
            cfg,
            config_path=config,
            detector_factory=LabelOracle if tips == "labels" else None,
            stop_after=stop_after,
            exit_at_end=exit_at_end,
            new_journal=new_journal,
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
    if out_dir.exists() and (not out_dir.is_dir() or list_dump(out_dir)):
        what = "is not a directory" if not out_dir.is_dir() else f"already holds {len(list_dump(out_dir))} frames"
        raise fail(f"record: {out_dir} {what}; choose a new or empty directory")
    try:
        src = open_source(source)
        src.open()
    except SourceError as e:
        raise fail(f"record: {e}") from e
    written = unreadable = 0
    stop, code = "", 0
    t0 = time.monotonic()
    try:
        with progress() as prog:
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
