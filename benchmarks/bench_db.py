"""Cells stored per second by ``cellpipe.db.store_segmentation``, on SQLite and PostgreSQL.

Each image is one ``store_segmentation`` call (one transaction: upsert of the
segmentation row, cell rows by executemany on SQLite / binary COPY on PostgreSQL,
image status update, commit) of ``--cells`` cells with every statistic
``cellpipe.measure.regionprops_table`` produces. Images and the model are registered
before the clock starts. Every run uses a fresh database: a temporary SQLite file, or a
PostgreSQL database with a random name that is dropped afterwards.

Usage::

    python benchmarks/bench_db.py                           # 1 and 100 images (median of 5), both backends
    python benchmarks/bench_db.py --images 1 100 10000      # the full set (minutes)
    python benchmarks/bench_db.py --backend sqlite --cells 5000
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import os
import secrets
import tempfile
import time
from pathlib import Path

import numpy as np

from cellpipe import db

POSTGRES_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
VARIANTS = 16  # distinct cell tables, cycled through the images


def make_cells(n_cells: int, seed: int) -> dict[str, np.ndarray]:
    """Return statistics of ``n_cells`` cells with regionprops_table's names and dtypes."""
    rng = np.random.default_rng(seed)
    area = rng.integers(20, 2_000, n_cells)
    row, col = rng.uniform(0, 2048, n_cells), rng.uniform(0, 2048, n_cells)
    major = rng.uniform(5, 60, n_cells)
    minor = major * rng.uniform(0.3, 1.0, n_cells)
    return {
        "label": np.arange(1, n_cells + 1, dtype=np.int32),
        "area": area,
        "centroid-0": row,
        "centroid-1": col,
        **{f"bbox-{k}": rng.integers(0, 2048, n_cells) for k in range(4)},
        "axis_major_length": major,
        "axis_minor_length": minor,
        "eccentricity": np.sqrt(1 - (minor / major) ** 2),
        "orientation": rng.uniform(-np.pi / 2, np.pi / 2, n_cells),
        "equivalent_diameter_area": np.sqrt(4 * area / np.pi),
        "perimeter": rng.uniform(10, 200, n_cells),
        "intensity_mean": rng.uniform(0, 255, n_cells),
        "intensity_min": rng.uniform(0, 100, n_cells),
        "intensity_max": rng.uniform(150, 255, n_cells),
        "touches_border": rng.random(n_cells) < 0.05,
    }


def server_cpu_seconds(engine) -> float:
    """Return the CPU time of the PostgreSQL backend serving ``engine`` (0 for SQLite or a remote server)."""
    if engine.dialect.name != "postgresql":
        return 0.0
    with engine.connect() as connection:
        pid = connection.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def store_images(url: str, n_images: int, n_cells: int) -> tuple[float, float]:
    """Return wall and CPU seconds taken to store ``n_images`` segmentations of ``n_cells`` cells.

    CPU seconds are this process's plus, for a local PostgreSQL, its backend's: on a
    busy machine they show what the wall time would be on an idle one (minus I/O waits).
    """
    engine = db.open_database(url)
    try:
        model_id = db.register_model(
            engine, "bench", "1", file_hash=hashlib.sha256(b"bench").hexdigest(), location="/bench.keras"
        )
        with engine.begin() as connection:
            image_ids = [
                db.register_image(
                    connection,
                    hashlib.sha256(f"image {index}".encode()).hexdigest(),
                    f"/bench/{index}.tif",
                    size_bytes=4_194_304,
                    batch_date=dt.date(2024, 1, 1),
                    bit_depth=16,
                )
                for index in range(n_images)
            ]
        run_id = db.start_run(engine, batch_date=dt.date(2024, 1, 1))
        variants = [make_cells(n_cells, seed) for seed in range(min(VARIANTS, n_images))]
        parameters = {"edge_threshold": 0.5, "min_area": 16}
        # One pooled connection serves every store, so one backend does the server's work.
        server_start, cpu_start = server_cpu_seconds(engine), time.process_time()
        start = time.perf_counter()
        for index, image_id in enumerate(image_ids):
            db.store_segmentation(
                engine, image_id, model_id, parameters, variants[index % len(variants)], run_id=run_id
            )
        elapsed = time.perf_counter() - start
        cpu = time.process_time() - cpu_start + server_cpu_seconds(engine) - server_start
        db.finish_run(engine, run_id, images_seen=n_images)
        return elapsed, cpu
    finally:
        engine.dispose()


def sqlite_database(folder: Path, n_images: int) -> tuple[str, callable]:
    path = folder / f"bench-{n_images}.sqlite"
    return f"sqlite:///{path}", lambda: [p.unlink(missing_ok=True) for p in folder.glob(path.name + "*")]


def postgresql_database(admin_url: str) -> tuple[str, callable]:
    import psycopg
    from sqlalchemy.engine import make_url

    admin = make_url(admin_url)
    conninfo = admin.set(drivername="postgresql").render_as_string(hide_password=False)
    name = f"cellpipe_bench_{secrets.token_hex(4)}"
    with psycopg.connect(conninfo, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with psycopg.connect(conninfo, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return admin.set(database=name).render_as_string(hide_password=False), drop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--images", type=int, nargs="+", default=[1, 100], help="image counts to run")
    parser.add_argument("--cells", type=int, default=1_000, help="cells per image")
    parser.add_argument("--postgres-url", default=POSTGRES_ADMIN_URL, help="server used to create databases")
    parser.add_argument(
        "--repeats", type=int, default=5,
        help="fresh databases per count of 100 images or fewer; the median run is printed (one 1,000-cell "
        "image takes milliseconds, so a single run is mostly noise)",
    )
    args = parser.parse_args()

    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    print(f"load average: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"{'backend':<11} {'images':>7} {'cells':>11} {'seconds':>9} {'cells/s':>11} {'cpu s':>8} {'cells/cpu s':>12}")
    with tempfile.TemporaryDirectory(prefix="cellpipe-bench-") as folder:
        for backend in backends:
            for n_images in args.images:
                runs = []
                for _ in range(args.repeats if n_images <= 100 else 1):
                    if backend == "sqlite":
                        url, cleanup = sqlite_database(Path(folder), n_images)
                    else:
                        url, cleanup = postgresql_database(args.postgres_url)
                    try:
                        runs.append(store_images(url, n_images, args.cells))
                    finally:
                        cleanup()
                seconds, cpu = sorted(runs)[len(runs) // 2]
                total = n_images * args.cells
                print(
                    f"{backend:<11} {n_images:>7} {total:>11,} {seconds:>9.3f} {total / seconds:>11,.0f} "
                    f"{cpu:>8.2f} {total / max(cpu, 1e-9):>12,.0f}"
                    + (f"  (median of {len(runs)} fresh databases)" if len(runs) > 1 else ""),
                    flush=True,
                )


if __name__ == "__main__":
    main()
