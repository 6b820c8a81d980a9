"""`inspectd label`: tip labels for a station's own frames, proposed, reviewed, exchanged as COCO keypoints."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from inspectd.cli.app import ConfigOpt, app, fail, load_cfg, load_model_or_exit, out, progress
from inspectd.frames import list_dump

label_app = typer.Typer(
    help="Label electrode tips on real frames: propose (model + profile finder), review sheets, COCO in/out, compare.",
    no_args_is_help=True,
)
app.add_typer(label_app, name="label")


@label_app.command("propose")
def propose_cmd(
    dump: Annotated[Path, typer.Argument(help="frames to label (any dump layout)")],
    out_dir: Annotated[Path, typer.Option("--out", help="labelling folder: images/, labels/, sheets/")],
    config: ConfigOpt = None,
    model: Annotated[bool, typer.Option(help="use the tip model as well as the profile finder")] = True,
    copy: Annotated[bool, typer.Option(help="copy the images instead of linking them")] = False,
) -> None:
    """Propose tips for every frame, write them as sidecars, and draw a review sheet per frame.

    Where the model and the profile finder disagree (or only one found a tip)
    the sidecar's `review` says so and the sheet boxes the tip in red. Frames
    already labelled in --out are kept.
    """
    from inspectd.labelling.workflow import propose_dump

    try:
        n = len(list_dump(dump))
    except FileNotFoundError as e:
        raise fail(str(e)) from e
    if n == 0:
        raise fail(f"{dump}: no frames (.tiff/.png/.jpg/.bmp) in this folder")
    cfg = load_cfg(config)
    det = load_model_or_exit(cfg, "label propose") if model else None
    with progress() as bar:
        task = bar.add_task("proposing", total=n)
        s = propose_dump(dump, out_dir, det, cfg, copy=copy, on_frame=lambda *_: bar.advance(task))
    out.print(
        f"{s['proposed']} frames proposed ({s['kept']} already labelled kept), {s['tips']} tips, "
        f"{s['agreed']} where model and profile agree, {s['to_check']} to check; "
        f"{s['seconds'] / max(1, s['proposed']):.1f} s per frame; sheets in {out_dir / 'sheets'}",
        highlight=False,
    )
    for f in s["failed"]:
        out.print(f"  not proposed: {f}", highlight=False, markup=False)


@label_app.command("sheets")
def sheets_cmd(folder: Annotated[Path, typer.Argument(help="labelling folder (images/ + labels/)")]) -> None:
    """Redraw the review sheets after the labels were corrected."""
    from inspectd.labelling.workflow import write_sheets

    out.print(f"{write_sheets(folder)} sheets in {folder / 'sheets'}", highlight=False)


@label_app.command("export-coco")
def export_cmd(
    folder: Annotated[Path, typer.Argument(help="labelled dump")],
    coco: Annotated[Path, typer.Argument(help="COCO keypoints JSON to write (for CVAT / Label Studio)")],
) -> None:
    """Write the labels as COCO keypoints (one annotation per tip, categories anode_tip and cathode_tip)."""
    from inspectd.labelling.workflow import export_coco

    out.print(f"{export_coco(folder, coco)} frames written to {coco}", highlight=False)


@label_app.command("import-coco")
def import_cmd(
    coco: Annotated[Path, typer.Argument(help="COCO keypoints JSON (exported here, or from CVAT / Label Studio)")],
    images: Annotated[Path, typer.Option(help="folder holding the images the file names")],
    out_dir: Annotated[Path, typer.Option("--out", help="labelling folder to write")],
    copy: Annotated[bool, typer.Option(help="copy the images instead of linking them")] = False,
) -> None:
    """Read COCO keypoints back into a labelling folder (sidecars keyed by image stem)."""
    from inspectd.labelling.workflow import import_coco

    try:
        n = import_coco(coco, images, out_dir, copy=copy)
    except (ValueError, FileNotFoundError, json.JSONDecodeError) as e:
        raise fail(f"{coco}: {e}") from e
    out.print(f"{n} frames imported into {out_dir}", highlight=False)


@label_app.command("assemble")
def assemble_cmd(
    images: Annotated[Path, typer.Option(help="folder of the images (any dump layout)")],
    labels: Annotated[Path, typer.Option(help="folder of <stem>.json label files")],
    out_dir: Annotated[Path, typer.Option("--out", help="labelled dump to make (images/ + labels/, linked)")],
) -> None:
    """Put images and label files kept apart into one labelled dump that replay, eval and train read."""
    from inspectd.labelling.workflow import assemble

    try:
        n = assemble(images, labels, out_dir)
    except FileNotFoundError as e:
        raise fail(str(e)) from e
    if n == 0:
        raise fail(f"no image in {images} has a label file in {labels}")
    out.print(f"{n} labelled frames in {out_dir}", highlight=False)


@label_app.command("compare")
def compare_cmd(
    a: Annotated[Path, typer.Argument(help="one labelling folder")],
    b: Annotated[Path, typer.Argument(help="another labelling of the same frames")],
    as_json: Annotated[bool, typer.Option("--json", help="print the full result as JSON")] = False,
) -> None:
    """How far two labellings of the same frames agree (matched-tip distances, tips only one has)."""
    from inspectd.labelling.workflow import compare

    try:
        r = compare(a, b)
    except FileNotFoundError as e:
        raise fail(str(e)) from e
    if as_json:
        print(json.dumps(r, indent=1))
        return
    out.print(
        f"{r['frames']} frames, {r['matched']} tips matched: mean {r['mean_px']} px, median {r['median_px']} px, "
        f"p95 {r['p95_px']} px; {r['only_in_a']} only in {a}, {r['only_in_b']} only in {b}",
        highlight=False,
    )
