"""The typer app every `inspectd` command registers on, and what the commands share.

Exit codes: 0 done; 1 the job failed at run time; 2 bad usage or bad config.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

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
TipsOpt = Annotated[
    str, typer.Option(help="'model' (the tip detector) or 'labels' (ground truth from sidecars: an oracle)")
]


def fail(message: str, code: int = EXIT_USAGE) -> typer.Exit:
    """Print `message` on stderr; the caller raises the returned Exit."""
    err.print(message, highlight=False, markup=False)
    return typer.Exit(code)


def load_cfg(path: Path | None, overrides: dict[str, Any] | None = None) -> Config:
    try:
        return load_config(path, overrides)
    except ConfigError as e:
        err.print(f"[red]config error[/red]\n{e}", highlight=False)
        raise typer.Exit(EXIT_USAGE) from e


def check_tips(tips: str) -> None:
    if tips not in ("model", "labels"):
        raise fail(f"--tips must be 'model' or 'labels', not {tips!r}")


def load_model_or_exit(cfg: Config, where: str):
    """The configured tip model, loaded; exit 2 naming the model and why when it is missing or broken.

    The daemon and replay would otherwise start and give every frame ERROR
    (DETECTION_UNAVAILABLE): a station that looks alive and rejects every cell.
    """
    from inspectd.pipeline.workers import load_default_detector

    det = load_default_detector(cfg.engine.model_dump())
    if det.name == "none":
        raise fail(
            f"{where}: {det.why}\n"
            "  set [engine] model in the station file to an .onnx with its card beside it "
            "(the shipped one: engines/hrnet_tips.onnx), or run with --tips labels (ground truth, for tests)"
        )
    return det


def progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    )
