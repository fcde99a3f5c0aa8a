"""The ``cellpipe`` command line: parses, calls library or task functions, prints.

Command groups live in their own modules and are registered here:

- ``cellpipe segment`` / ``evaluate``          images → labels and per-cell CSVs, metrics
- ``cellpipe run``                             the nightly Luigi batch
- ``cellpipe query`` / ``export``              read cell metrics from the database
- ``cellpipe db …``                            migrations and status
- ``cellpipe model …``                         train, list, promote, deploy models
- ``cellpipe label …`` / ``dataset …``         training data conversion and checks
- ``cellpipe synth``                           synthetic sample images
- ``cellpipe review``                          the least confident images of a batch, as Labelme files
"""

from __future__ import annotations

import typer

from cellpipe import __version__

app = typer.Typer(
    name="cellpipe",
    help="Find every cell in microscope images and record its centroid, area and shape in SQL.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database migrations and status.", no_args_is_help=True)
model_app = typer.Typer(help="Train, list, promote and deploy U-Net models.", no_args_is_help=True)
label_app = typer.Typer(help="Convert hand labels to training data and back.", no_args_is_help=True)
dataset_app = typer.Typer(help="Check training datasets.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(model_app, name="model")
app.add_typer(label_app, name="label")
app.add_typer(dataset_app, name="dataset")


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"cellpipe {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """cellpipe command line."""


def _register_commands() -> None:
    # Each module adds its commands to the apps above when imported.
    from cellpipe.cli import (  # noqa: F401
        commands_azure_ml,
        commands_db,
        commands_evaluate,
        commands_finetune,
        commands_images,
        commands_label,
        commands_model,
        commands_retrain,
        commands_review,
        commands_run,
        commands_segment,
    )


def main() -> None:
    """Entry point of the ``cellpipe`` console script."""
    _register_commands()
    app()


if __name__ == "__main__":
    main()
