"""``cellpipe review``: the images of a batch the model was least sure of, as Labelme files to correct."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Optional

import typer

from cellpipe.cli import app
from cellpipe.cli.commands_label import DB_OPTION

#: ``cellpipe.confidence.LOW_CONFIDENCE``, spelled out so that ``cellpipe --help`` need not import numpy and scipy.
LOW_CONFIDENCE = 0.5


@app.command("review")
def review_command(
    date: dt.datetime = typer.Option(..., "--date", formats=["%Y-%m-%d"], help="Batch date whose images to review."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for <stem>.json Labelme files, <stem>.png, queue.csv."),
    limit: int = typer.Option(10, "--limit", "-n", min=1, help="How many images: those with the lowest mean confidence."),
    low: float = typer.Option(LOW_CONFIDENCE, "--low", min=0.0, max=1.0,
                              help="Cells below this confidence are flagged in their shape's description."),
    embed: bool = typer.Option(True, "--embed/--no-embed", help="Embed the image (Labelme's 'Save With Image Data')."),
    db: Optional[str] = DB_OPTION,
) -> None:
    """Write the N images of a batch with the lowest mean cell confidence as Labelme projects.

    The model's cells are editable polygons; low-confidence cells say so in their
    description. Correct them in Labelme, then `cellpipe label convert` them to training data.
    """
    # Imported here, as in the other commands, so that every `cellpipe` call does not pay for them.
    from sqlalchemy.exc import SQLAlchemyError

    from cellpipe import db as cell_db
    from cellpipe.db.review_queries import cell_confidences, review_candidates
    from cellpipe.review import QUEUE_FILE, review_queue, write_review
    from cellpipe.settings import Settings
    from cellpipe.tasks.sources import read_source

    url = Settings.load({"db_url": db}).db_url
    try:
        engine = cell_db.create_readonly_engine(url)
        try:
            items = review_queue(review_candidates(engine, date.date()), limit)
            confidences = cell_confidences(engine, [item.segmentation_id for item in items])
        finally:
            engine.dispose()
    except cell_db.DatabaseError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from None
    except SQLAlchemyError as error:
        typer.echo(f"error: {str(getattr(error, 'orig', None) or error).strip()}", err=True)
        raise typer.Exit(1) from None
    if not items:
        typer.echo(f"no segmented image of the batch of {date.date().isoformat()} has cell confidences "
                   "(segmented before cellpipe stored them, or no such batch)", err=True)
        raise typer.Exit(1)
    try:
        written = write_review(out, items, confidences, read_source, low=low, embed=embed)
    except (OSError, ValueError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from None
    for item, path in zip(items, written):
        typer.echo(f"{item.source_uri}: mean confidence {item.mean_confidence:.3f}, "
                   f"{item.low_confidence_cells} of {item.n_cells} cells low → {path}")
    typer.echo(f"{len(written)} images to review in {out} (list: {out / QUEUE_FILE})")
