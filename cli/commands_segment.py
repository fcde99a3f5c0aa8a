"""``cellpipe segment``: images → label TIFFs, per-cell CSVs and overlays in a folder."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Iterator, List, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from cellpipe.cli import app, options

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"}


@app.command()
def segment(
    sources: List[Path] = typer.Argument(..., help="Image files or folders of images.", exists=True),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for <stem>_labels.tif, <stem>_cells.csv, ..."),
    model: Optional[Path] = typer.Option(None, "--model", "-m", help="U-Net .keras file; default: the shipped model."),
    invert: Optional[bool] = typer.Option(
        None, "--invert/--no-invert", help="Invert before prediction (bright walls). Default: decide per image."
    ),
    overlay: bool = typer.Option(False, "--overlay", help="Also write <stem>_overlay.png (outlines and centroids)."),
    threshold: Optional[float] = typer.Option(
        None, "--threshold", "--edge-threshold", help=options.EDGE_THRESHOLD_HELP + " (--edge-threshold as on run)"
    ),
    min_area: Optional[int] = options.MIN_AREA,
    marker_h: Optional[float] = options.MARKER_H,
    merge_threshold: Optional[float] = options.MERGE_THRESHOLD,
    views: Optional[int] = options.VIEWS,
    cell_diameter: Optional[float] = options.CELL_DIAMETER,
    max_pixels: Optional[int] = options.MAX_PIXELS,
    pixel_size: Optional[float] = options.PIXEL_SIZE,
) -> None:
    """Segment images and write, per image, labels (uint32 TIFF, 0 = wall), a per-cell CSV and what was used.

    Post-processing flags not given take the model card's tuned values (``cellpipe model
    tune``); ``<stem>_segmentation.json`` records the model, the parameters, the scale
    and the pixel size. With a known pixel size (``--pixel-size``, else the TIFF's
    metadata) the CSV has µm columns too and the label TIFF carries the size.
    """
    from cellpipe.io import ImageReadError, read_image
    from cellpipe.pipeline import CellSegmenter
    from cellpipe.quality import cells_and_quality
    from cellpipe.results import result_files, segmentation_record, write_results
    from cellpipe.settings import Settings
    from cellpipe.units import PixelSizeNotices, read_pixel_size, resolve_pixel_size

    console = Console(stderr=True)
    try:
        settings = Settings.load({"model": str(model) if model else None, "edge_threshold": threshold,
                                  "min_area": min_area, "views": views, "marker_h": marker_h,
                                  "merge_threshold": merge_threshold, "cell_diameter": cell_diameter,
                                  "invert": None if invert is None else str(invert).lower(),
                                  "max_pixels": max_pixels, "pixel_size": pixel_size})
        settings.pipeline_params()  # a bad value is a usage error before the model loads
    except ValueError as error:
        console.print(f"[red]error:[/red] {error}")
        raise typer.Exit(2)
    images = sorted(_image_files(sources))
    if not images:
        console.print("[red]no image files found[/red] in " + ", ".join(map(str, sources)))
        raise typer.Exit(2)
    try:
        segmenter = CellSegmenter(settings.model or None)
    except (FileNotFoundError, ValueError) as error:
        console.print(f"[red]cannot load the model:[/red] {error}")
        raise typer.Exit(2)
    try:
        # The card's tuned post-processing, then whatever the settings set over it.
        segmenter = segmenter.with_params(settings.pipeline_params(segmenter.card.postprocessing))
    except ValueError as error:
        console.print(f"[red]the post-processing of the model card is invalid:[/red] {error} "
                      "(run `cellpipe model tune` again, or give the flags)")
        raise typer.Exit(2)

    failed = 0
    notices = PixelSizeNotices()
    started = time.perf_counter()
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("segmenting", total=len(images))
        for path in images:
            try:
                image = read_image(path, max_pixels=settings.max_pixels)
                result = segmenter(image)
            except (ImageReadError, ValueError) as error:
                failed += 1
                console.print(f"[red]failed[/red] {error}")
            else:
                size = resolve_pixel_size(read_pixel_size(path), settings.pixel_size)
                notice = notices.notice(path.name, size.as_dict())
                if notice:
                    console.print(f"[yellow]{notice}[/yellow]", soft_wrap=True, highlight=False)
                cells, _ = cells_and_quality(result.labels, result.cells)
                record = segmentation_record(segmenter.model_path, segmenter.params, result, size)
                files = result_files(path.stem, image, result.labels, cells, with_overlay=overlay,
                                     record=record, pixel_size_um=size.um)
                write_results(out, files)
                console.print(f"{path.name}: {result.n_cells} cells → {out / (path.stem + '_cells.csv')}")
            progress.advance(task)
    seconds = time.perf_counter() - started
    console.print(f"{len(images) - failed} segmented, {failed} failed in {seconds:.1f} s; results in {out}")
    if failed:
        raise typer.Exit(1)


def _image_files(sources: List[Path]) -> Iterator[Path]:
    for source in sources:
        if source.is_dir():
            yield from (p for p in source.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        else:
            yield source
