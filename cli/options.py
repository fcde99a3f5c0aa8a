"""Options that several commands share: one definition, one help text."""

from typing import Optional

import typer

EDGE_THRESHOLD_HELP = "Edge probability at or above which a pixel is wall."

MIN_AREA: Optional[int] = typer.Option(None, help="Drop cells with fewer pixels.")
MARKER_H: Optional[float] = typer.Option(
    None, "--marker-h", help="Pixels a distance peak must rise above its saddle to seed a cell."
)
MERGE_THRESHOLD: Optional[float] = typer.Option(
    None, help="Merge neighbours whose boundary's mean edge probability is below this (0: never)."
)
VIEWS: Optional[int] = typer.Option(
    None, help="Average the edge maps of 1, 2, 4 or 8 mirrored/rotated views (each costs one prediction)."
)
CELL_DIAMETER: Optional[float] = typer.Option(
    None, "--cell-diameter", metavar="PX",
    help="Median cell diameter in pixels: images are resampled so their cells match the model's training size. "
    "Default: estimated per image.",
)
PIXEL_SIZE: Optional[float] = typer.Option(
    None, "--pixel-size", metavar="UM",
    help="Side of a pixel in µm, for every image, over its TIFF metadata (OME, ImageJ, SEM, resolution tags). "
    "Default: \\[cellpipe] pixel_size, else read per image; unknown: µm figures are empty (NULL).",
)
MAX_PIXELS: Optional[int] = typer.Option(
    None, "--max-pixels", metavar="N", min=1,
    help="Largest image (width x height) decoded; larger headers are refused as decompression bombs. "
    "Default: \\[cellpipe] max_pixels, else 16384 x 16384.",
)
