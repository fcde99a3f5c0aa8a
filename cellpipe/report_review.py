"""The report's "to review" section: the images whose cells the model was least sure of.

Rows are those of :func:`cellpipe.db.report_queries.report_data` (``image_summary``'s
``mean_confidence`` and ``low_confidence_cells``); ``cellpipe review`` writes the same
images as Labelme files to correct.
"""

from __future__ import annotations

import html
from typing import Any, Callable, Mapping, Sequence

#: Images listed in the section, lowest mean confidence first.
DEFAULT_REVIEW_ROWS = 10


def review_table(images: Sequence[Mapping[str, Any]], name_of: Callable[[Mapping[str, Any]], str],
                 anchor_of: Callable[[Mapping[str, Any]], str], *, batch_date: Any = None,
                 limit: int = DEFAULT_REVIEW_ROWS) -> str:
    """Return the HTML section of the ``limit`` images with the lowest mean cell confidence ("" when none has one)."""
    rated = sorted((row for row in images if row.get("mean_confidence") is not None),
                   key=lambda row: (float(row["mean_confidence"]), str(row.get("source_uri"))))
    if not rated:
        return ""
    rows = "".join(
        f"<tr><td><a href=\"#{anchor_of(row)}\">{html.escape(name_of(row))}</a></td>"
        f"<td>{html.escape(str(row.get('model_name')))} {html.escape(str(row.get('model_version')))}</td>"
        f"<td class=\"num\">{float(row['mean_confidence']):.3f}</td>"
        f"<td class=\"num\">{html.escape(str(row.get('low_confidence_cells')))} of {html.escape(str(row.get('n_cells')))}</td></tr>"
        for row in rated[:limit]
    )
    date = f" --date {html.escape(str(batch_date))}" if batch_date is not None else ""
    return ("<h2 id=\"to-review\">To review</h2><p class=\"muted\">The images whose cells the model was least "
            "sure of (mean confidence, lowest first; low: below 0.5). "
            f"<code>cellpipe review{date} --limit {min(limit, len(rated))} --out DIR</code> writes them as Labelme "
            "files to correct.</p><table><tr><th>image</th><th>model</th><th>mean confidence</th>"
            f"<th>low-confidence cells</th></tr>{rows}</table>")
