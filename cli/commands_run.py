"""``cellpipe run``: the nightly batch (Luigi), with a progress bar and a final table."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cellpipe.cli import app, options

DATE_FORMATS = ["%Y-%m-%d"]
#: Failed images listed in the final table (all of them are in --summary-json).
SHOWN_FAILURES = 20


@app.command("run")
def run_command(
    date: Optional[dt.datetime] = typer.Option(
        None, formats=DATE_FORMATS, help="Dated batch: the images of INPUT/YYYY-MM-DD/. "
        "Default: everything new under INPUT/."),
    since: Optional[dt.datetime] = typer.Option(
        None, formats=DATE_FORMATS, help="Backfill the dated batches from this date (Luigi RangeDaily)."),
    until: Optional[dt.datetime] = typer.Option(
        None, formats=DATE_FORMATS, help="Last date of a backfill (inclusive). Default: today."),
    input: Optional[str] = typer.Option(
        None, "--input", "-i", help="Input folder or az://CONTAINER/PREFIX (credentials from AZURE_STORAGE_* "
        "variables or an Azure login). Default: \\[cellpipe] input."),
    output: Optional[str] = typer.Option(
        None, "--output", "-o", help="Folder or az://CONTAINER/PREFIX for <stem>_labels.tif and <stem>_cells.csv, "
        "by batch date. Default: \\[cellpipe] output, else results/ next to the SQLite database."),
    db: Optional[str] = typer.Option(None, "--db", help="Database URL. Default: CELLPIPE_DB_URL, "
                                     "\\[cellpipe] db_url, else SQLite in the user's data directory."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="U-Net .keras file. Default: the shipped model."),
    workers: int = typer.Option(1, "--workers", "-w", min=1, help="Worker processes, each loading the model once."),
    scheduler_url: Optional[str] = typer.Option(
        None, "--scheduler-url", help="Shared luigid, e.g. http://scheduler-host:8082. Default: the local "
        "scheduler (1 worker) or a private luigid on a loopback port (several)."),
    edge_threshold: Optional[float] = typer.Option(None, help=options.EDGE_THRESHOLD_HELP),
    min_area: Optional[int] = options.MIN_AREA,
    marker_h: Optional[float] = options.MARKER_H,
    merge_threshold: Optional[float] = options.MERGE_THRESHOLD,
    views: Optional[int] = options.VIEWS,
    cell_diameter: Optional[float] = options.CELL_DIAMETER,
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Process images recorded as failed again."),
    max_pixels: Optional[int] = options.MAX_PIXELS,
    pixel_size: Optional[float] = options.PIXEL_SIZE,
    overlay: Optional[bool] = typer.Option(
        None, "--overlay/--no-overlay", help="Also write <stem>_overlay.png per image (outlines and centroids). "
        "Default: \\[cellpipe] overlay, else off; `cellpipe report` draws overlays from the labels."),
    summary_json: Optional[Path] = typer.Option(None, "--summary-json", help="Also write the summary as JSON here."),
    debug: bool = typer.Option(False, "--debug", help="Show the traceback of an error that ends the run."),
) -> None:
    """Segment every image of a batch and store its cells; exit code per luigi.cfg \\[retcode]."""
    from cellpipe.db import DatabaseError, DatabaseUnreachableError
    from cellpipe.settings import Settings
    from cellpipe.tasks.context import ModelNotFoundError, prepare_storage
    from cellpipe.tasks.report import luigi_retcodes
    from cellpipe.tasks.runner import BatchRequest, BatchRequestError, run_batch
    from cellpipe.tasks.sources import SourceError, SourceUnreachableError
    from cellpipe.units import PixelSizeNotices

    console = Console(stderr=True)
    try:
        settings = Settings.load({"input": input, "output": output, "db_url": db, "model": model,
                                  "edge_threshold": edge_threshold, "min_area": min_area, "views": views,
                                  "marker_h": marker_h, "merge_threshold": merge_threshold,
                                  "cell_diameter": cell_diameter, "max_pixels": max_pixels,
                                  "pixel_size": pixel_size, "overlay": overlay})
        request = BatchRequest(
            settings, date=date.date() if date else None, since=since.date() if since else None,
            until=until.date() if until else None, workers=workers, scheduler_url=scheduler_url,
            retry_failed=retry_failed,
        )
        prepare_storage(settings)
        with _BatchProgress(console, PixelSizeNotices()) as progress:
            report = run_batch(request, on_event=progress.on_event)
    except (SourceUnreachableError, DatabaseUnreachableError) as error:
        # Storage or database down at the start: a failed night that the next run retries, not a usage error.
        _print_error(console, error, debug)
        raise typer.Exit(luigi_retcodes()["scheduling_error"]) from None
    except (BatchRequestError, SourceError, ModelNotFoundError, DatabaseError, ValueError) as error:
        _print_error(console, error, debug)
        raise typer.Exit(2) from None
    _print_report(console, report)
    if summary_json is not None:
        summary_json.write_text(json.dumps(report.as_dict(), indent=2, default=str) + "\n")
    raise typer.Exit(report.exit_code())


def _print_error(console: Console, error: BaseException, debug: bool) -> None:
    if debug:
        console.print_exception()
    console.print(f"[red]error:[/red] {error}", soft_wrap=True, highlight=False)


class _BatchProgress:
    """A rich progress bar fed by batch events: images done, failed, throughput."""

    def __init__(self, console: Console, pixel_sizes) -> None:
        self.console = console
        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("[red]{task.fields[failed]} failed[/red]  {task.fields[skipped]} skipped"),
            TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), console=console,
        )
        self.bar = None
        self.started = 0.0
        self.processed = 0
        self.pixel_sizes = pixel_sizes  # cellpipe.units.PixelSizeNotices

    def __enter__(self) -> "_BatchProgress":
        self.progress.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.progress.stop()

    def on_event(self, event) -> None:
        import time

        if event.kind == "planned":
            data = event.data
            self.bar = self.progress.add_task("segmenting", total=data["total"], completed=data["skipped"],
                                              failed=len(data["unreadable"]), skipped=data["skipped"], rate="")
            self.progress.advance(self.bar, len(data["unreadable"]))
            for name, reason in data["unreadable"]:
                self.console.print(f"[red]failed[/red] {name}: {reason}")
            self.started = time.perf_counter()
        elif event.kind == "model_loaded":
            self.started = time.perf_counter()  # throughput of segmenting, not of loading TensorFlow
            self.console.print(f"worker {event.worker}: model loaded in {event.seconds:.1f} s (pid {event.data['pid']})")
        elif event.kind in ("stored", "already_stored", "claimed", "failed") and self.bar is not None:
            self.processed += 1
            task = self.progress.tasks[self.bar]
            failed = task.fields["failed"] + (event.kind == "failed")
            skipped = task.fields["skipped"] + (event.kind in ("already_stored", "claimed"))
            rate = self.processed / max(time.perf_counter() - self.started, 1e-9)
            self.progress.update(self.bar, advance=1, failed=failed, skipped=skipped, rate=f"{rate:.2f} img/s")
            if event.kind == "failed":
                self.console.print(f"[red]failed[/red] {event.name}: {event.reason}")
            notice = self.pixel_sizes.notice(event.name, event.data["pixel_size"]) if "pixel_size" in event.data else None
            if notice:
                self.console.print(f"[yellow]{notice}[/yellow]", soft_wrap=True, highlight=False)
        elif event.kind == "changed":
            self.console.print(f"[yellow]not now[/yellow] {event.reason}")
        elif event.kind == "task_error" and not event.data.get("transient"):
            # Transient ones are told once per outage and retry wave by the workers' outage log.
            self.console.print(f"[yellow]error[/yellow] {event.name}: {event.reason} (not recorded; retried later)")


def _print_report(console: Console, report) -> None:
    table = Table(title=f"cellpipe run {report.run_id}: {report.scheduler}, {len(report.workers)} worker(s)")
    table.add_column("images")
    table.add_column("count", justify="right")
    labels = {"stored": "stored by this run", "stored_elsewhere": "stored by other workers or runs",
              "skipped": "skipped (already done)", "failed": "failed", "pending": "not done (retried next run)"}
    for category, count in report.counts.items():
        table.add_row(labels[category], str(count), style="red" if category == "failed" and count else None)
    failed_earlier = sum(1 for line in report.images if line.category == "skipped" and line.reason)
    if failed_earlier:
        table.add_row("  of which recorded as failed earlier", str(failed_earlier))
    if report.duplicates:
        table.add_row("duplicate files (same bytes)", str(len(report.duplicates)))
    if report.outages:
        table.add_row("outages ridden out" if report.exit_code() == 0 else "outages", str(len(report.outages)))
    table.add_row("stored per worker (model loads)",
                  ", ".join(f"#{w.worker}: {w.stored} ({w.model_loads})" for w in report.workers))
    table.add_row("cells stored", str(sum(line.n_cells or 0 for line in report.images if line.category == "stored")))
    table.add_row("throughput (whole run)", f"{report.throughput:.2f} images/s in {report.seconds:.1f} s")
    if report.stage_seconds:
        stages = ", ".join(f"{stage} {seconds * 1000:.1f} ms" for stage, seconds in report.stage_seconds.items())
        table.add_row("mean time per image", stages)
    console.print(table)
    for duplicate in report.duplicates:
        console.print(f"duplicate {duplicate.name}: same bytes as {duplicate.duplicate_of} (not processed again)",
                      soft_wrap=True, highlight=False)
    for outage in report.outages:
        console.print(f"outage: {outage.describe()}", soft_wrap=True, highlight=False)
    failures = [line for line in report.images if line.category in ("failed", "pending")]
    for line in failures[:SHOWN_FAILURES]:
        console.print(f"[red]{line.category}[/red] {line.name}: {line.reason}")
    if len(failures) > SHOWN_FAILURES:
        console.print(f"... and {len(failures) - SHOWN_FAILURES} more (see --summary-json)")
    for worker in report.workers:
        if worker.crashed:
            console.print(f"[red]worker {worker.worker} crashed:[/red] {worker.crashed}")
        if worker.luigi_summary and (worker.crashed or worker.failed_tasks or worker.scheduling_errors):
            console.print(f"worker {worker.worker}: {worker.luigi_summary}")
    console.print(f"results in {report.output}; exit code {report.exit_code()}")
