"""Starting the daemon: `run_daemon` (the CLI's ``inspectd run``) and ``python -m inspectd.pipeline.run``.

The module entry point takes the CLI's flags as config overrides; the tests and
the bench start the daemon this way, as a real subprocess.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable
from pathlib import Path

from inspectd.config import Config, ConfigError, load_config
from inspectd.observability import configure_logging, get_logger
from inspectd.pipeline.daemon import EXIT_USAGE, Daemon
from inspectd.pipeline.workers import load_default_detector
from inspectd.tips.detector import LabelOracle

__all__ = ["main", "run_daemon"]


def run_daemon(
    cfg: Config,
    *,
    config_path: Path | None,
    detector_factory: Callable[[], object] | None = None,
    stop_after: int | None = None,
    exit_at_end: bool = False,
    slot_bytes: int | None = None,
    new_journal: bool = False,
) -> int:
    """Run the daemon until SIGTERM/SIGINT (or `stop_after` frames, or the source's end with `exit_at_end`).

    Returns the exit code: 0 drained cleanly; 1 failed at run time (worker restart
    budget, publisher, ring); 2 bad source URI. Must be called from the main thread
    (it installs signal handlers). `detector_factory` must be picklable; default:
    HrnetDetector from `cfg.engine`. Without a factory the model must exist and
    load here first, or the daemon refuses to start (exit 2): a station whose
    every frame says ERROR DETECTION_UNAVAILABLE looks alive and rejects every cell.
    """
    configure_logging(cfg.observability.log_level, cfg.observability.log_json)
    if detector_factory is None:
        det = load_default_detector(cfg.engine.model_dump())
        if det.name == "none":
            get_logger(proc="main").error(
                "daemon_refused", reason="no_tip_model", error=det.why, model=str(cfg.engine.model),
                hint="set [engine] model to an .onnx with its card, or run with --tips labels",
            )  # fmt: skip
            return EXIT_USAGE
        del det
    d = Daemon(
        cfg,
        config_path=config_path,
        detector_factory=detector_factory,
        stop_after=stop_after,
        exit_at_end=exit_at_end,
        slot_bytes=slot_bytes,
        new_journal=new_journal,
    )
    return d.run()


def _detector_from_spec(spec: str):
    """'labels' -> LabelOracle; 'model' -> default; 'module:attr' -> that importable factory."""
    if spec == "model":
        return None
    if spec == "labels":
        return LabelOracle
    mod, _, attr = spec.partition(":")
    if not mod or not attr:
        raise SystemExit(f"--tips must be model, labels or MODULE:FACTORY, not {spec!r}")
    return getattr(importlib.import_module(mod), attr)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m inspectd.pipeline.run", description="Run the inspection daemon.")
    p.add_argument("--config", type=Path)
    p.add_argument("--source")
    p.add_argument("--pub")
    p.add_argument("--query")
    p.add_argument("--journal")
    p.add_argument("--archive-dir")
    p.add_argument("--station")
    p.add_argument("--trigger", help="PULL address for PLC trigger messages {\"part_id\": ...}")
    p.add_argument("--deadline-ms", type=float)
    p.add_argument("--workers", type=int)
    p.add_argument("--ring-slots", type=int)
    p.add_argument("--overload", choices=["timeout", "block"])
    p.add_argument("--max-restarts-per-min", type=int)
    p.add_argument("--metrics-port", type=int, help="-1 disables")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    p.add_argument("--verdict-log", choices=["problems", "all"], help="a `verdict` log line per ERROR/TIMEOUT or per frame")
    p.add_argument("--tips", default="model", help="model | labels (oracle) | MODULE:FACTORY")
    p.add_argument("--stop-after", type=int)
    p.add_argument("--exit-at-end", action="store_true")
    p.add_argument("--slot-mb", type=float)
    p.add_argument("--new-journal", action="store_true", help="start although the journal is not the last one here")
    a = p.parse_args(argv)
    overrides = {
        "source.uri": a.source,
        "publish.pub": a.pub,
        "publish.query": a.query,
        "publish.journal": a.journal,
        "publish.archive_dir": a.archive_dir,
        "station.name": a.station,
        "trigger.address": a.trigger,
        "station.deadline_ms": a.deadline_ms,
        "pipeline.workers": a.workers,
        "pipeline.ring_slots": a.ring_slots,
        "pipeline.overload": a.overload,
        "pipeline.max_restarts_per_min": a.max_restarts_per_min,
        "observability.log_level": a.log_level,
        "observability.verdict_log": a.verdict_log,
    }
    if a.metrics_port is not None:
        overrides["observability.metrics_port"] = None if a.metrics_port < 0 else a.metrics_port
    try:
        cfg = load_config(a.config, {k: v for k, v in overrides.items() if v is not None})
        if a.metrics_port is not None and a.metrics_port < 0:
            cfg = cfg.model_copy(update={"observability": cfg.observability.model_copy(update={"metrics_port": None})})
    except ConfigError as e:
        print(f"config error\n{e}", file=sys.stderr)
        return EXIT_USAGE
    return run_daemon(
        cfg,
        config_path=a.config,
        detector_factory=_detector_from_spec(a.tips),
        stop_after=a.stop_after,
        exit_at_end=a.exit_at_end,
        slot_bytes=int(a.slot_mb * 2**20) if a.slot_mb else None,
        new_journal=a.new_journal,
    )


if __name__ == "__main__":
    sys.exit(main())
