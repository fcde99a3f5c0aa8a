"""``cellpipe segment``, ``cellpipe synth`` and ``cellpipe evaluate``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from cellpipe.cli import app

SYNTH_KINDS = ("foam", "tissue")


def _parse_size(text: str) -> tuple[int, int]:
    """Return (height, width) from ``"512"`` or ``"WIDTHxHEIGHT"`` (e.g. ``"640x480"``)."""
    parts = text.lower().split("x")
    try:
        numbers = [int(part) for part in parts]
    except ValueError:
        numbers = []
    if len(numbers) == 1:
        return numbers[0], numbers[0]
    if len(numbers) == 2:
        return numbers[1], numbers[0]
    raise typer.BadParameter(f"expected N or WIDTHxHEIGHT, got {text!r}")


@app.command("synth")
def synth(
    out_dir: Annotated[Path, typer.Argument(file_okay=False, help="Folder for the images; created when missing.")],
    n: Annotated[int, typer.Option("--n", min=0, help="Number of images.")] = 6,
    size: Annotated[str, typer.Option(help="Image size: N for N x N, or WIDTHxHEIGHT.")] = "512",
    kind: Annotated[
        list[str], typer.Option("--kind", help="foam (bright walls) or tissue (dark walls); repeat to alternate.")
    ] = list(SYNTH_KINDS),
    seed: Annotated[int, typer.Option(help="Seed of the first image; image i uses seed + i.")] = 0,
    cell_diameter: Annotated[float, typer.Option(help="Mean cell diameter in pixels.")] = 40.0,
    uint16: Annotated[bool, typer.Option("--uint16", help="Write 16-bit PNGs instead of 8-bit.")] = False,
    with_corrupt: Annotated[
        bool, typer.Option("--with-corrupt", help="Also write a truncated PNG, to see how bad files are reported.")
    ] = False,
    truth: Annotated[
        Optional[Path], typer.Option("--truth", file_okay=False,
                                     help="Folder for the true labels. Default: OUT_DIR-truth beside OUT_DIR.")
    ] = None,
) -> None:
    """Write synthetic foam/tissue images (PNG) and their true labels (TIFF) in a folder beside them.

    The labels never go inside OUT_DIR, so that `cellpipe run` on OUT_DIR finds the images only.
    """
    from cellpipe.synthetic import CORRUPT_NAME, truth_folder, truth_path, write_samples

    unknown = sorted(set(kind) - set(SYNTH_KINDS))
    if unknown:
        raise typer.BadParameter(f"unknown kind {unknown}; choose from {SYNTH_KINDS}", param_hint="--kind")
    try:
        written = write_samples(
            out_dir, n, kinds=kind, size=_parse_size(size), seed=seed, corrupt=with_corrupt,
            mean_cell_diameter=cell_diameter, dtype="uint16" if uint16 else "uint8", truth_dir=truth,
        )
    except ValueError as error:
        raise typer.BadParameter(str(error)) from error
    for image_path in written:
        if image_path.name == CORRUPT_NAME:
            typer.echo(f"{image_path}  (truncated on purpose, no truth)")
        else:
            typer.echo(f"{image_path}  (truth: {truth_path(image_path, truth)})")
    typer.echo(f"wrote {len(written)} image(s) to {out_dir}, their true labels to {truth or truth_folder(out_dir)}")
