"""The summary of a batch run and its exit code.

Every listed image ends in exactly one category, decided from the database before and
after the run and from what this run's workers reported:

==================  =========================================================
``stored``          segmented and stored by this run's workers
``stored_elsewhere`` stored during the run by another process: one sharing the
                    scheduler, or another run that claimed it first
``skipped``         already stored before the run (or recorded as failed before,
                    and not retried): nothing to do
``failed``          recorded as failed during this run (reason in ``reason``)
``pending``         none of the above: a transient error outlasted its retries, a
                    worker died, or nobody got to it; the next run picks it up
==================  =========================================================

Files that could not even be read to list them count as ``failed`` (they have no
content hash, so they are not in the database).

The exit code follows the ``[retcode]`` section of ``luigi.cfg`` (Luigi's own
section): ``task_failed`` when an image failed, or was left pending after a task
raised; ``scheduling_error`` when images were left pending because completeness could
not be checked; ``unhandled_exception`` when a worker crashed; ``not_run`` when images
were left pending for no reported reason; the largest applies. Errors that a retry
cured count for nothing: a night where every image ended stored exits 0, and its
:attr:`BatchReport.outages` say what it rode out.
Without a ``[retcode]`` section the codes of :data:`DEFAULT_RETCODES` are used, so that
cron never sees success for a failed night because the config file was not found.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import luigi.configuration
from luigi.retcodes import retcode

from cellpipe.tasks.outages import Outage

CATEGORIES = ("stored", "stored_elsewhere", "skipped", "failed", "pending")

#: Exit codes used when luigi.cfg has no [retcode] section (the values luigi.cfg ships).
DEFAULT_RETCODES = {
    "already_running": 10,
    "missing_data": 20,
    "not_run": 25,
    "task_failed": 30,
    "scheduling_error": 35,
    "unhandled_exception": 40,
}


@dataclass(frozen=True)
class ImageLine:
    """The fate of one image in a run."""

    name: str
    content_hash: str
    category: str
    n_cells: int | None = None
    reason: str = ""


@dataclass(frozen=True)
class Duplicate:
    """A file whose bytes are those of an image listed under another name: not processed again."""

    name: str
    duplicate_of: str
    content_hash: str


@dataclass(frozen=True)
class WorkerResult:
    """What one worker process reports when it ends.

    Attributes
    ----------
    worker : int
    pid : int
    model_loads : int
        U-Net loads in that process during the run (1 when it segmented anything).
    stored : int
        Images it segmented and stored.
    failed_tasks : tuple of str
        Luigi tasks that raised (transient errors that outlasted their retries).
    scheduling_errors : bool
        Completeness or dependencies could not be determined for some task.
    crashed : str
        The error that ended the worker, if it did not end normally.
    luigi_summary : str
        Luigi's execution summary when its run did not succeed (what it did not run, and why).
    outages : tuple of Outage
        Database or storage outages that process saw.
    """

    worker: int
    pid: int
    model_loads: int = 0
    stored: int = 0
    failed_tasks: tuple[str, ...] = ()
    scheduling_errors: bool = False
    crashed: str = ""
    luigi_summary: str = ""
    outages: tuple[Outage, ...] = ()


@dataclass
class BatchReport:
    """Outcome of one ``cellpipe run``."""

    images: list[ImageLine]
    workers: list[WorkerResult]
    seconds: float
    scheduler: str
    run_id: int | None
    output: str
    stage_seconds: dict[str, float] = field(default_factory=dict)
    duplicates: list[Duplicate] = field(default_factory=list)
    outages: list[Outage] = field(default_factory=list)

    def count(self, category: str) -> int:
        """Return how many images ended in ``category``."""
        if category not in CATEGORIES:
            raise ValueError(f"unknown category {category!r}; known: {CATEGORIES}")
        return sum(1 for line in self.images if line.category == category)

    @property
    def counts(self) -> dict[str, int]:
        """Return the number of images per category."""
        return {category: self.count(category) for category in CATEGORIES}

    @property
    def throughput(self) -> float:
        """Return images stored by this run per second of wall time."""
        return self.count("stored") / self.seconds if self.seconds > 0 else 0.0

    @property
    def model_loads(self) -> int:
        """Return U-Net loads over all worker processes."""
        return sum(worker.model_loads for worker in self.workers)

    def exit_code(self, retcodes: Mapping[str, int] | None = None) -> int:
        """Return the process exit code (see the module docstring)."""
        codes = dict(retcodes or luigi_retcodes())
        # A task error or a scheduling error that a later attempt cured left no image undone.
        pending = self.count("pending") > 0
        reasons = [
            ("task_failed", self.count("failed") > 0 or (pending and any(w.failed_tasks for w in self.workers))),
            ("scheduling_error", pending and any(w.scheduling_errors for w in self.workers)),
            ("unhandled_exception", any(w.crashed for w in self.workers)),
            ("not_run", pending),
        ]
        return max([0] + [codes.get(name, 0) for name, applies in reasons if applies])

    def run_summary(self) -> dict:
        """Return what the ``runs`` row keeps of the report beside its counts: duplicates and outages."""
        return {"duplicates": [vars(duplicate) for duplicate in self.duplicates],
                "outages": [outage.as_dict() for outage in self.outages]}

    def as_dict(self) -> dict:
        """Return the report as JSON-ready values (``cellpipe run --summary-json``)."""
        return {
            "counts": self.counts,
            "exit_code": self.exit_code(),
            "seconds": self.seconds,
            "throughput_images_per_s": self.throughput,
            "scheduler": self.scheduler,
            "run_id": self.run_id,
            "output": self.output,
            "duplicates": [vars(duplicate) for duplicate in self.duplicates],
            "outages": [outage.as_dict() for outage in self.outages],
            "stage_seconds": self.stage_seconds,
            "model_loads": self.model_loads,
            "workers": [vars(worker) | {"failed_tasks": list(worker.failed_tasks),
                                        "outages": [outage.as_dict() for outage in worker.outages]}
                        for worker in self.workers],
            "images": [vars(line) for line in self.images],
        }


def luigi_retcodes() -> dict[str, int]:
    """Return the exit codes of the ``[retcode]`` section of the Luigi config, or the defaults."""
    if not luigi.configuration.get_config().has_section("retcode"):
        return dict(DEFAULT_RETCODES)
    configured = retcode()
    return {name: int(getattr(configured, name)) for name in DEFAULT_RETCODES}
