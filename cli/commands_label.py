"""``cellpipe label convert|export``, ``cellpipe dataset check`` and ``cellpipe report``."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import List, Optional

import typer

from cellpipe.cli import app, dataset_app, label_app

DB_OPTION = typer.Option(
    None, "--db",
    help="Database URL (sqlite:///PATH or postgresql+psycopg://user@host/db). Default: CELLPIPE_DB_URL, "
    "then luigi.cfg [cellpipe] db_url, then a SQLite file in the user's data directory.",
)


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


@label_app.command("convert")
def convert_command(
    sources: List[Path] = typer.Argument(..., exists=True, help="Labelme .json files, painted images, or folders."),
    out: Path = typer.Option(..., "--out", "-o", help="Training data folder: image/N.png, label/N.png, mapping.csv."),
    edge_width: int = typer.Option(2, min=0, help="Width in pixels of the wall drawn between touching cells."),
    keep_strokes: bool = typer.Option(False, "--keep-strokes", help="Painted images: keep the walls as painted."),
    originals: Optional[Path] = typer.Option(
        None, exists=True, file_okay=False,
        help="Folder of the images that paintings label, matched by file name (a_painted.png → a.tif)."),
    cell_label: Optional[List[str]] = typer.Option(
        None, "--cell-label", help="Labelme: only shapes with this label are cells (repeatable). Default: all."),
    black_level: int = typer.Option(8, min=0, max=254, help="Painted on the image: gray level up to which a pixel is black."),
) -> None:
    """Convert hand labels (Labelme files, painted walls) into U-Net training pairs."""
    from cellpipe.labels import LabelConversionError, TrainingSet, convert_labelme, convert_painted, find_original
    from cellpipe.labels import label_sources

    found = label_sources(sources)
    if not found:
        raise _fail("no Labelme .json file or image found in " + ", ".join(map(str, sources)), 2)
    training_set = TrainingSet(out)
    failed = 0
    for path, kind in found:
        try:
            if kind == "labelme":
                pair = convert_labelme(path, training_set, edge_width=edge_width, cell_labels=cell_label or None)
            else:
                original = find_original(path, originals) if originals else None
                pair = convert_painted(path, training_set, original=original,
                                       edge_width=None if keep_strokes else edge_width, black_level=black_level)
        except LabelConversionError as error:
            failed += 1
            typer.echo(f"failed: {error}", err=True)
            continue
        note = f" ({pair.note})" if pair.note else ""
        typer.echo(f"{path} → {pair.n} ({pair.kind}, {pair.n_cells} cells){note}")
    typer.echo(f"{len(found) - failed} converted, {failed} failed; pairs in {training_set.image_dir.parent}, "
               f"mapping in {training_set.mapping_path}")
    if failed:
        raise typer.Exit(1)


@label_app.command("export")
def export_command(
    labels: List[Path] = typer.Argument(..., exists=True, dir_okay=False,
                                        help="Label images: <stem>_labels.tif from cellpipe segment, or label/N.png."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for <stem>.json Labelme files."),
    images: Optional[Path] = typer.Option(
        None, exists=True, file_okay=False, help="Folder of the images (same stem). Default: next to each label file."),
    embed: bool = typer.Option(True, "--embed/--no-embed", help="Embed the image (Labelme's 'Save With Image Data')."),
    tolerance: float = typer.Option(0.5, min=0.0, help="Largest distance in pixels between polygon and cell outline."),
    cell_label: str = typer.Option("cell", help="Label of every exported shape."),
) -> None:
    """Export predicted cells as Labelme polygons, to correct them in Labelme and convert them back."""
    from cellpipe.labels import LabelConversionError, export_labelme, find_image_for_labels

    failed = 0
    for label_path in labels:
        image_path = find_image_for_labels(label_path, images or label_path.parent)
        if image_path is None:
            failed += 1
            typer.echo(f"failed: no image for {label_path} in {images or label_path.parent} "
                       "(same name without '_labels'); pass --images DIR", err=True)
            continue
        try:
            written, n_cells = export_labelme(label_path, image_path, out, embed=embed, tolerance=tolerance,
                                              label=cell_label)
        except LabelConversionError as error:
            failed += 1
            typer.echo(f"failed: {error}", err=True)
            continue
        typer.echo(f"{label_path} → {written} ({n_cells} cells)")
    if failed:
        raise typer.Exit(1)


@dataset_app.command("check")
def check_command(
    data_dir: Path = typer.Argument(..., exists=True, file_okay=False, help="Training data folder."),
    min_cell_area: int = typer.Option(16, min=1, help="Cells (not at the border) with fewer pixels are specks."),
    max_cell_fraction: float = typer.Option(0.25, min=0.0, max=1.0, help="A larger cell means a wall left open."),
    max_wall_fraction: float = typer.Option(
        0.6, min=0.0, max=1.0, help="More wall means cells and walls swapped, or only a few cells labelled."),
) -> None:
    """Check that every image has a binary label of its size with plausible cells."""
    from cellpipe.dataset_check import check_dataset

    try:
        check = check_dataset(data_dir, min_cell_area=min_cell_area, max_cell_fraction=max_cell_fraction,
                              max_wall_fraction=max_wall_fraction)
    except FileNotFoundError as error:
        raise _fail(str(error), 2) from None
    typer.echo(check.report())
    if not check.ok:
        raise typer.Exit(1)


@app.command("report")
def report_command(
    out: Path = typer.Option(..., "--out", "-o", help="Folder for index.html and its pictures."),
    date: Optional[dt.datetime] = typer.Option(None, "--date", formats=["%Y-%m-%d"],
                                               help="Batch date to report. Default: the latest."),
    run: Optional[int] = typer.Option(None, "--run", help="Report the results of this run instead."),
    db: Optional[str] = DB_OPTION,
    max_overlays: int = typer.Option(50, min=0, help="Images that get an overlay picture; the rest are listed."),
) -> None:
    """Write a static HTML report: overlays, cell counts, size distributions, trends, models."""
    from sqlalchemy.exc import SQLAlchemyError

    from cellpipe import db as cell_db
    from cellpipe.db.report_queries import report_data
    from cellpipe.report import write_report
    from cellpipe.settings import Settings

    if date is not None and run is not None:
        raise _fail("give --date or --run, not both", 2)
    url = Settings.load({"db_url": db}).db_url
    try:
        engine = cell_db.create_readonly_engine(url)
        try:
            data = report_data(engine, batch_date=date.date() if date else None, run_id=run)
        finally:
            engine.dispose()
    except (cell_db.DatabaseError, LookupError) as error:
        raise _fail(str(error)) from None
    except SQLAlchemyError as error:
        raise _fail(str(getattr(error, "orig", None) or error).strip()) from None
    index = write_report(out, data, max_overlays=max_overlays)
    typer.echo(f"{data['selection']['title']}: {len(data['images'])} images → {index}")
