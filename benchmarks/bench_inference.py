"""U-Net inference speed against the machine's float32 matrix-multiply rate.

Measures, in one process:

- the float32 matmul rate (4096 x 4096 ``tf.matmul``) before, between and after the
  inference runs; the best of them is the yardstick,
- the U-Net forward FLOPs (convolution MACs counted from the layers, 2 FLOPs per MAC),
- tiled inference (:func:`cellpipe.unet.predict_edges`) on a 512 x 512 and a
  2048 x 2048 image for several tile sizes and batch sizes, as GFLOP/s of the FLOPs the
  network actually executed (tiles, overlap and padding included; the "used" column
  gives the tiles :func:`cellpipe.unet.infer.plan_tiles` chose) and of the "useful"
  FLOPs of one pass over the image, and their ratio to the matmul rate,
- a 512 x 512 PNG from file to labels and per-cell statistics
  (:class:`cellpipe.pipeline.CellSegmenter`), stage by stage,
- with ``--large``, the peak memory of an 8192 x 8192 image.

Timings are the best of ``--repeats`` runs after a warm-up call. On a shared machine
they are noisy: rerun, and compare numbers from one run only.

    python benchmarks/bench_inference.py [--model M.keras] [--repeats 5] [--large]
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from cellpipe.unet import EdgePredictor, forward_flops, load_model  # noqa: E402


def best_seconds(run, repeats: int) -> float:
    """Return the fastest of ``repeats`` timed calls of ``run`` after one warm-up call."""
    run()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)


def matmul_gflops(size: int, repeats: int) -> float:
    """Return the float32 matmul rate in GFLOP/s on ``size x size`` matrices."""
    a = tf.random.uniform((size, size), dtype=tf.float32)
    b = tf.random.uniform((size, size), dtype=tf.float32)
    product = tf.function(lambda x, y: tf.matmul(x, y))
    seconds = best_seconds(lambda: product(a, b).numpy(), repeats)
    return 2.0 * size**3 / seconds / 1e9


def bench_tiles(predictor, config, size, tiles, batches, overlap, repeats) -> list[tuple]:
    """Return ``(size, tile, used, batch, seconds, executed GFLOP/s, useful GFLOP/s)`` per setting."""
    image = np.random.default_rng(0).random((size, size), dtype=np.float32)
    useful = forward_flops(config, size, size)
    rows = []
    for tile in tiles:
        plan = predictor.plan(image.shape, tile=tile, overlap=overlap)
        executed = plan.n_tiles * forward_flops(config, plan.tile, plan.tile)
        for batch in batches:
            seconds = best_seconds(lambda: predictor(image, tile=tile, overlap=overlap, batch_size=batch), repeats)
            used = f"{plan.n_tiles}x{plan.tile}"
            rows.append((size, tile, used, batch, seconds, executed / seconds / 1e9, useful / seconds / 1e9))
    return rows


def bench_file_to_cells(model_path, repeats: int) -> None:
    from PIL import Image

    from cellpipe.io import read_image
    from cellpipe.pipeline import CellSegmenter, PipelineParams

    source = Path(__file__).resolve().parents[2] / "shared" / "data" / "isbi2012" / "train" / "image" / "20.png"
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "image.png"
        if source.is_file():
            path.write_bytes(source.read_bytes())
        else:  # no shared data: a synthetic 512 x 512 tissue image (dark walls, like EM)
            from cellpipe.synthetic import synthetic_cells

            Image.fromarray(synthetic_cells(512, kind="tissue").image).save(path)
        segmenter = CellSegmenter(model_path, PipelineParams(invert="false"))
        result = None

        def file_to_cells():
            nonlocal result
            result = segmenter(read_image(path))

        seconds = best_seconds(file_to_cells, repeats)
    stages = "  ".join(f"{k} {v * 1e3:.0f} ms" for k, v in result.timings.items())
    print(f"\n512x512 PNG from file to labels + per-cell statistics: {seconds:.3f} s "
          f"({result.n_cells} cells; last run: {stages})")


def bench_large(predictor, tile: int, overlap: int, batch: int) -> None:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    image = np.random.default_rng(0).random((8192, 8192), dtype=np.float32)
    started = time.perf_counter()
    predictor(image, tile=tile, overlap=overlap, batch_size=batch)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"\n8192x8192: {seconds:.1f} s, peak resident memory {peak:.2f} GiB "
          f"(before the image: {before:.2f} GiB; input + output alone are 0.50 GiB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="model .keras (default: the shipped one)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--tiles", type=int, nargs="+", default=[256, 512, 1024])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--overlap", type=int, default=32)
    parser.add_argument("--large", action="store_true", help="also run an 8192 x 8192 image and report memory")
    args = parser.parse_args()

    model, card = load_model(args.model)
    config = card.architecture
    predictor = EdgePredictor(model)
    print(f"model: depth {config.depth}, base filters {config.base_filters}, {model.count_params():,} parameters; "
          f"{forward_flops(config, 512, 512) / 1e9:.1f} GFLOP per 512x512 pass")
    print(f"TensorFlow {tf.__version__}, devices {[d.device_type for d in tf.config.list_physical_devices()]}, "
          f"{os.cpu_count()} CPUs visible, intra-op threads {tf.config.threading.get_intra_op_parallelism_threads() or 'auto'}")
    # The yardstick is the best matmul rate seen before, between and after the inference
    # runs: on a busy machine this errs towards a lower ratio, never a flattering one.
    matmul_rates = [matmul_gflops(4096, args.repeats)]
    rows = []
    for size in (512, 2048):
        rows += bench_tiles(predictor, config, size, args.tiles, args.batches, args.overlap, args.repeats)
        matmul_rates.append(matmul_gflops(4096, args.repeats))
    matmul_rate = max(matmul_rates)
    print(f"float32 matmul 4096x4096: {matmul_rate:.1f} GFLOP/s "
          f"(best of {', '.join(f'{r:.0f}' for r in matmul_rates)}; a wide spread means the machine was busy)")
    print(f"\n{'image':>11} {'tile':>5} {'used':>9} {'batch':>5} {'seconds':>8} {'executed GFLOP/s':>17} "
          f"{'useful GFLOP/s':>15} {'executed/matmul':>16} {'useful/matmul':>14}")
    for size, tile, used, batch, seconds, executed, useful in rows:
        print(f"{size:>5}x{size:<5} {tile:>5} {used:>9} {batch:>5} {seconds:>8.3f} {executed:>17.1f} "
              f"{useful:>15.1f} {executed / matmul_rate:>15.0%} {useful / matmul_rate:>14.0%}")
    bench_file_to_cells(args.model, args.repeats)
    if args.large:
        bench_large(predictor, 512, args.overlap, 2)


if __name__ == "__main__":
    main()
