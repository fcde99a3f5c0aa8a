"""Promote only if better: a candidate model against the current default, before it replaces it.

:func:`check_promotion` scores both models with the whole pipeline, each with its own
card's parameters, on the lab's held-out corrections (Labelme files; by default those a
fine-tuned candidate's card names, :func:`held_out_corrections`) and on the ``val``
split of each shipped validation source (:func:`cellpipe.unet.mix.default_sources`).
Each set is scored by :func:`cellpipe.tuning.objective`, (F1@0.5 + V_rand) / 2, and the
candidate fails a set when it scores more than ``tolerance`` below the current model
there. :func:`record_promotion` writes what was decided, forced or not, into the
candidate's card (``promotions``).
"""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from cellpipe.io import _write_atomically
from cellpipe.labelme import read_labelme
from cellpipe.metrics import evaluate_pair
from cellpipe.pipeline import CellSegmenter
from cellpipe.shipped import model_file
from cellpipe.tuning import objective
from cellpipe.unet.mix import Source, scored_items

__all__ = [
    "DEFAULT_TOLERANCE",
    "PromotionCheck",
    "PromotionRefused",
    "SetScore",
    "check_promotion",
    "held_out_corrections",
    "promotion_entry",
    "record_promotion",
]

#: How far below the current model a candidate may score on a set and still be promoted.
DEFAULT_TOLERANCE = 0.02


class PromotionRefused(Exception):
    """The candidate is worse than the current model beyond the tolerance, or cannot be compared."""


@dataclass(frozen=True)
class SetScore:
    """Both models' scores on one set of images: ``corrections`` or ``val:SOURCE``."""

    name: str
    n_images: int
    candidate: dict[str, float]
    current: dict[str, float]

    @property
    def change(self) -> float:
        """Return the candidate's objective minus the current model's (positive: better)."""
        return self.candidate["objective"] - self.current["objective"]


@dataclass(frozen=True)
class PromotionCheck:
    """The comparison of a candidate with the current model, set by set."""

    candidate: str
    current: str
    tolerance: float
    sets: tuple[SetScore, ...]

    @property
    def worse(self) -> list[SetScore]:
        """Return the sets where the candidate scores more than ``tolerance`` below the current model."""
        return [score for score in self.sets if score.change < -self.tolerance]

    @property
    def passed(self) -> bool:
        """Return whether the candidate is nowhere worse beyond the tolerance."""
        return not self.worse

    def as_dict(self) -> dict[str, Any]:
        """Return the comparison as JSON-ready data."""
        return {"candidate": self.candidate, "current": self.current, "tolerance": self.tolerance,
                "passed": self.passed,
                "sets": {s.name: {"images": s.n_images, "candidate": s.candidate, "current": s.current,
                                  "change": round(s.change, 4)} for s in self.sets}}


def held_out_corrections(model: str | os.PathLike[str]) -> list[Path]:
    """Return the held-out corrections named in a fine-tuned model's card (none for another model)."""
    card = json.loads(model_file(model).with_suffix(".json").read_text())
    record = card.get("finetune", {}).get("corrections", {})
    folder = Path(record.get("folder", "."))
    return [folder / name for name in record.get("held_out", [])]


def check_promotion(
    candidate: str | os.PathLike[str],
    current: str | os.PathLike[str] | None,
    *,
    corrections: Sequence[Path] = (),
    sources: Iterable[Source] = (),
    tolerance: float = DEFAULT_TOLERANCE,
) -> PromotionCheck:
    """Return how ``candidate`` compares with ``current`` (None: the shipped default) set by set.

    Parameters
    ----------
    candidate, current : path or shipped name
    corrections : sequence of Path
        Corrected Labelme files, none of them trained on by either model.
    sources : iterable of Source
        Validation sources; each one's ``val`` split is one set.
    tolerance : float
        Largest drop of the objective allowed on any set.

    Raises
    ------
    ValueError
        When there is nothing to compare on.
    """
    images = []
    if corrections:
        annotations = [read_labelme(path) for path in corrections]
        images.append(("corrections", [(a.image, a.cells) for a in annotations]))
    for source in sources:
        images.append((f"val:{source.name}", [(image, truth) for _, image, truth in scored_items(source, "val")]))
    images = [(name, pairs) for name, pairs in images if pairs]
    if not images:
        raise ValueError("nothing to compare the models on: give held-out corrections or validation sources")
    models = {"candidate": CellSegmenter(candidate), "current": CellSegmenter(current)}
    sets = tuple(
        SetScore(name, len(pairs), *(_scores(models[role], pairs) for role in ("candidate", "current")))
        for name, pairs in images
    )
    return PromotionCheck(str(models["candidate"].model_path), str(models["current"].model_path), tolerance, sets)


def promotion_entry(check: PromotionCheck | None, *, forced: bool, reason: str = "") -> dict[str, Any]:
    """Return the record of one promotion: when, whether it was forced (and why), the comparison."""
    return {"at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "forced": bool(forced),
            "reason": reason, "check": check.as_dict() if check is not None else None}


def record_promotion(model: str | os.PathLike[str], entry: dict[str, Any]) -> Path:
    """Append ``entry`` (:func:`promotion_entry`) to the candidate card's ``promotions``; return the card's path."""
    card_file = model_file(model).with_suffix(".json")
    card = json.loads(card_file.read_text())
    card["promotions"] = [*card.get("promotions", []), entry]
    text = json.dumps(card, indent=2) + "\n"
    return _write_atomically(card_file, lambda temporary: temporary.write_text(text))


def _scores(segmenter: CellSegmenter, pairs: Sequence[tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    scores = [evaluate_pair(segmenter(image).labels, truth) for image, truth in pairs]
    f1 = float(np.mean([s["f1"] for s in scores]))
    v_rand = [s["v_rand"] for s in scores if not np.isnan(s["v_rand"])]
    v_rand_mean = float(np.mean(v_rand)) if v_rand else float("nan")
    return {"f1": round(f1, 4), "v_rand": round(v_rand_mean, 4), "objective": round(objective(f1, v_rand_mean), 4)}
