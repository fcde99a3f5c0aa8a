"""``cellpipe export``: cells and images to CSV or Parquet, filtered by batch date."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from db_fixtures import make_cells
from typer.testing import CliRunner

from cellpipe import db
from cellpipe.cli import app
from cellpipe.cli import commands_db  # noqa: F401  (registers the commands)
from cellpipe.db.views import cell_metrics, image_summary

runner = CliRunner()
DAYS = [dt.date(2024, 6, 1), dt.date(2024, 6, 2), dt.date(2024, 6, 3)]
CELLS_PER_DAY = [3, 5, 7]


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture
def three_nights(engine):
    """Store one image per day with 3, 5 and 7 cells; return the cells per day."""
    model_id = db.register_model(engine, "unet", "1", file_hash=sha("w"), location="/m")
    stored = {}
    for day, n_cells in zip(DAYS, CELLS_PER_DAY):
        image_id = db.register_image(engine, sha(str(day)), f"/{day}.tif", size_bytes=1, batch_date=day)
        stored[day] = make_cells(n_cells, seed=n_cells)
        db.store_segmentation(engine, image_id, model_id, {}, stored[day])
    return stored


def read_csv(path):
    with open(path, newline="") as stream:
        return list(csv.DictReader(stream))


def test_cells_csv_has_one_line_per_cell_with_the_cell_metrics_columns(db_url, three_nights, tmp_path):
    out = tmp_path / "cells.csv"
    assert db.export(db_url, "cells", out) == sum(CELLS_PER_DAY)
    records = read_csv(out)
    assert list(records[0]) == [column.name for column in cell_metrics.columns]
    assert len(records) == sum(CELLS_PER_DAY)


def test_cells_parquet_round_trips_the_statistics(db_url, three_nights, tmp_path):
    out = tmp_path / "cells.parquet"
    db.export(db_url, "cells", out, format="parquet", batch_size=4)  # several row groups
    table = pq.read_table(out)
    assert table.schema.names == [column.name for column in cell_metrics.columns]
    first_day = table.filter(pc.equal(table["batch_date"], DAYS[0])).sort_by("label")
    expected = three_nights[DAYS[0]]
    np.testing.assert_allclose(first_day["x"].to_numpy(), expected["centroid-1"])
    assert first_day["area"].to_pylist() == expected["area"].tolist()
    assert first_day["touches_border"].to_pylist() == expected["touches_border"].tolist()


def test_since_and_until_keep_the_batch_dates_between_them(db_url, three_nights, tmp_path):
    out = tmp_path / "cells.csv"
    count = db.export(db_url, "cells", out, since=DAYS[1], until=DAYS[1])
    assert count == CELLS_PER_DAY[1]
    assert {record["batch_date"] for record in read_csv(out)} == {DAYS[1].isoformat()}


def test_images_export_has_one_row_per_image_with_summary_columns(db_url, three_nights, tmp_path):
    out = tmp_path / "images.parquet"
    assert db.export(db_url, "images", out, format="parquet", since=DAYS[1]) == 2
    table = pq.read_table(out)
    assert table.schema.names == [column.name for column in image_summary.columns]
    assert sorted(table["n_cells"].to_pylist()) == CELLS_PER_DAY[1:]
    assert table.schema.field("stored_at").type.tz == "UTC"


def test_a_failed_export_leaves_no_file_behind(db_url, three_nights, tmp_path, monkeypatch):
    out = tmp_path / "cells.csv"

    def broken_write(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("cellpipe.db.exports.write_rows", broken_write)
    with pytest.raises(OSError):
        db.export(db_url, "cells", out)
    assert sorted(path.name for path in tmp_path.iterdir() if path.name.startswith("cells.csv")) == []


def test_export_command_writes_the_file_and_reports_the_count(db_url, three_nights, tmp_path):
    out = tmp_path / "cells.csv"
    result = runner.invoke(
        app, ["export", "cells", "--db", db_url, "--out", str(out), "--since", "2024-06-02"]
    )
    assert result.exit_code == 0, result.output
    assert f"wrote {sum(CELLS_PER_DAY[1:])} cells" in result.output
    assert len(read_csv(out)) == sum(CELLS_PER_DAY[1:])


def test_export_command_rejects_since_after_until(db_url, tmp_path):
    result = runner.invoke(
        app,
        ["export", "cells", "--db", db_url, "--out", str(tmp_path / "x.csv"), "--since", "2024-06-03", "--until", "2024-06-01"],
    )
    assert result.exit_code == 1
    assert "after" in result.output and "Traceback" not in result.output
