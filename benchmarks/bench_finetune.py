"""Fine-tuning on a few corrected images of a kind the default does badly: does it help, and what does it cost?

For one source of :func:`cellpipe.unet.mix.default_sources` held out from the default
model's training (it saw ISBI 2012 EM only): the first ``--train-items`` images of the
source's ``train`` split become corrected Labelme files (their true cells, as a user's
corrections would be), with one ``val`` image beside them as the held-out correction that
chooses the checkpoint. ``cellpipe model finetune`` (:func:`cellpipe.finetune.finetune`)
fine-tunes the parent on them for ``--max-minutes``; then the parent and the fine-tuned
model are scored, with (F1@0.5 + V_rand) / 2 and its parts, on the source's ``test``
split (other images of that kind, never seen) and on the ``val`` split of every shipped
source (what ``cellpipe model promote`` checks; a drop beyond 0.02 would refuse it).

    .venv/bin/python benchmarks/bench_finetune.py [--source foam] [--train-items 2] [--max-minutes 15]
        [--from MODEL] [--json out.json]

Never run by the tests.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from cellpipe.finetune import FinetuneConfig, finetune  # noqa: E402
from cellpipe.labelme import labelme_document, labels_to_shapes, png_bytes, png_storable, write_labelme  # noqa: E402
from cellpipe.promotion import check_promotion  # noqa: E402
from cellpipe.unet.mix import Source, default_sources, scored_items  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def write_corrections(source: Source, n_train: int, folder: Path) -> list[Path]:
    """Write ``n_train`` train images and one val image of ``source`` as Labelme files of their true cells."""
    train = scored_items(source, "train")[:n_train]
    held_out = scored_items(source, "val")[:1]
    paths = []
    for index, (name, image, truth) in enumerate([*train, *held_out]):
        picture = png_storable(image)[0]
        document = labelme_document(labels_to_shapes(truth), image_path=f"{name}.png", shape=image.shape,
                                    image_data=png_bytes(picture))
        paths.append(write_labelme(folder / f"{index}.json", document))  # natural order: the val image last
    return paths


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", default="foam", help="the kind of image to fine-tune on")
    parser.add_argument("--train-items", type=int, default=2, help="corrected images to train on")
    parser.add_argument("--max-minutes", type=float, default=15.0, help="training budget")
    parser.add_argument("--from", dest="parent", default=None, help="parent model (default: the shipped default)")
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "data", help="the shared data folder")
    parser.add_argument("--out", type=Path, default=REPO / "build" / "finetune" / "model.keras")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)

    sources = default_sources(args.shared)
    (source,) = [s for s in sources if s.name == args.source]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-finetune-") as scratch:
        write_corrections(source, args.train_items, Path(scratch))
        result = finetune(FinetuneConfig(Path(scratch), args.out, parent=args.parent, held_out=1 / (args.train_items + 1),
                                         max_minutes=args.max_minutes, command="benchmarks/bench_finetune.py"),
                          on_progress=print)
    trained = time.perf_counter() - started
    comparison = check_promotion(result.model_path, args.parent, sources=[_test_split(source), *sources])
    print(f"\nfine-tuned on {args.train_items} {source.name} images in {trained / 60:.1f} min ({result.stopped})")
    print(f"{'set':<28} {'images':>6} {'F1 before':>9} {'after':>6} {'V_rand before':>13} {'after':>6} {'change':>7}")
    for score in comparison.sets:
        print(f"{score.name:<28} {score.n_images:>6} {score.current['f1']:>9.3f} {score.candidate['f1']:>6.3f} "
              f"{score.current['v_rand']:>13.3f} {score.candidate['v_rand']:>6.3f} {score.change:>+7.3f}")
    if args.json:
        args.json.write_text(json.dumps({"source": source.name, "minutes": round(trained / 60, 2),
                                         "comparison": comparison.as_dict()}, indent=2) + "\n")


def _test_split(source: Source) -> Source:
    # The source's test images, scored as a set of their own ("val:<source>-test").
    return Source(f"{source.name}-test", source.layout, source.root, {"val": source.items("test")})


if __name__ == "__main__":
    main()
