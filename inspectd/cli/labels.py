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
    _report(r, as_json, f"{r['frames']} frames, {r['matched']} tips matched: mean {r['mean_px']} px, median "
            f"{r['median_px']} px, p95 {r['p95_px']} px; {r['only_in_a']} only in {a}, {r['only_in_b']} only in {b}")


def _report(r: dict, as_json: bool, line: str) -> None:
    """A result as JSON (for scripts) or as one line (for people)."""
    if as_json:
        print(json.dumps(r, indent=1))
    else:
        out.print(line, highlight=False)


# ---------------------------------------------------------------------------- checking tip by tip

FolderArg = Annotated[Path, typer.Argument(help="labelling folder (images/ + labels/)")]
StemArg = Annotated[str, typer.Argument(help="the frame's image stem")]
ClassArg = Annotated[str, typer.Argument(help="anode or cathode")]


def _open(folder: Path, stem: str):
    from inspectd.labelling.check import LabelFile

    try:
        return LabelFile.open(folder, stem)
    except (FileNotFoundError, ValueError) as e:
        raise fail(str(e)) from e


def _edit(fn, *args):
    try:
        return fn(*args)
    except (IndexError, ValueError) as e:
        raise fail(str(e)) from e


@label_app.command("crop")
def crop_cmd(
    folder: FolderArg,
    stem: StemArg,
    cls: Annotated[str | None, typer.Option("--class", help="crop around tips of this class: anode or cathode")] = None,
    tips: Annotated[str, typer.Option(help="their index range, FIRST:LAST (both included)")] = "0:5",
    box: Annotated[str | None, typer.Option(help="or any box: X0,Y0,X1,Y1 (full-frame px)")] = None,
    zoom: Annotated[int, typer.Option(min=1, max=20, help="pixels per frame pixel")] = 8,
    png: Annotated[Path | None, typer.Option("--out", help="PNG to write (default: FOLDER/crops/...)")] = None,
) -> None:
    """A zoomed crop with pixel axes and every label inside drawn where it is: check tips a few at a time."""
    from inspectd.labelling.check import crop_box, render_crop

    lf = _open(folder, stem)
    if box is not None:
        try:
            b = tuple(int(v) for v in box.split(","))
            assert len(b) == 4
        except (ValueError, AssertionError):
            raise fail(f"--box must be X0,Y0,X1,Y1, not {box!r}") from None
        name = f"{stem}-box{b[0]}-{b[1]}.png"
    else:
        if cls is None:
            b, name = crop_box(lf.tips("anode") + lf.tips("cathode"), pad=30), f"{stem}-overview.png"
        else:
            try:
                first, last = (int(v) for v in tips.split(":"))
                pts = _edit(lf.tips, cls)[first : last + 1]
            except ValueError:
                raise fail(f"--tips must be FIRST:LAST, not {tips!r}") from None
            if not pts:
                raise fail(f"no {cls}s {tips} in {stem} (it has {len(lf.tips(cls))})")
            b, name = crop_box(pts), f"{stem}-{cls}{first}-{last}.png"
    img = _edit(render_crop, lf, b, zoom)
    dst = png or folder / "crops" / name
    dst.parent.mkdir(parents=True, exist_ok=True)
    _write_png(dst, img)
    lf.log("view", box=list(b))
    print(dst)  # a path to open: never wrapped


def _write_png(path: Path, img) -> None:
    import cv2

    if not cv2.imwrite(str(path), img):
        raise fail(f"cannot write {path}")


@label_app.command("profile")
def profile_cmd(folder: FolderArg, stem: StemArg, cls: ClassArg, index: int) -> None:
    """Raw values around one tip and where the convention's level is crossed (a guide where the eye is unsure)."""
    from inspectd.labelling.check import profile_readout

    print(_edit(profile_readout, _open(folder, stem), cls, index))  # a table: never wrapped


@label_app.command("move")
def move_cmd(folder: FolderArg, stem: StemArg, cls: ClassArg, index: int, x: float, y: float) -> None:
    """Move one tip to (X, Y) full-frame px (logged)."""
    d = _edit(_open(folder, stem).move, cls, index, x, y)
    out.print(f"{cls} {index} -> ({x}, {y}), moved {d:.1f} px", highlight=False)


@label_app.command("add")
def add_cmd(folder: FolderArg, stem: StemArg, cls: ClassArg, x: float, y: float) -> None:
    """Add a tip the proposal lacked (logged; indices are renumbered along the stack)."""
    _edit(_open(folder, stem).add, cls, x, y)
    out.print(f"added {cls} at ({x}, {y}); indices renumbered top to bottom", highlight=False)


@label_app.command("remove")
def remove_cmd(folder: FolderArg, stem: StemArg, cls: ClassArg, index: int) -> None:
    """Remove a false tip (logged; indices are renumbered along the stack)."""
    old = _edit(_open(folder, stem).remove, cls, index)
    out.print(f"removed {cls} {index} at ({old[0]:.1f}, {old[1]:.1f}); indices renumbered", highlight=False)


@label_app.command("done")
def done_cmd(
    folder: FolderArg,
    stem: StemArg,
    note: Annotated[str, typer.Option(help="what was changed, and every tip still uncertain (with its ± px)")],
) -> None:
    """Mark a frame checked; `label check-summary` reports the time per frame and what the checks changed."""
    _open(folder, stem).done(note)
    out.print(f"{stem} checked", highlight=False)


@label_app.command("check-summary")
def check_summary_cmd(
    folder: FolderArg, as_json: Annotated[bool, typer.Option("--json", help="print the full result as JSON")] = False
) -> None:
    """Minutes per frame (first crop to done), tips moved > 1 px, added and removed, from the check log."""
    from inspectd.labelling.check import check_summary

    r = check_summary(folder)
    _report(r, as_json, f"{r['checked']} frames checked, median {r['median_minutes']} min per frame; "
            f"{r['moved_over_1px']} tips moved > 1 px, {r['added']} added, {r['removed']} removed")
