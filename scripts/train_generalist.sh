#!/usr/bin/env bash
# The recipe of the shipped default model, step by step, on a 2-core CPU (about 80 minutes):
#   1. train the three-class U-Net on the train splits of every source, checkpoints chosen
#      on the val splits (python -m cellpipe.unet.train_mix),
#   2. write the val splits as seed-layout folders and tune the post-processing on them
#      into the card (cellpipe model tune --write),
#   3. score the test splits, never seen before, per source and scale
#      (benchmarks/bench_accuracy.py --per-source).
# Copy $OUT/model.keras and $OUT/model.json to cellpipe/models/default/ to ship it.
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${SHARED:-../shared/data}
OUT=${OUT:-build/generalist}
MINUTES=${MINUTES:-70}
mkdir -p "$OUT"
.venv/bin/python -m cellpipe.unet.train_mix --shared "$SHARED" --out "$OUT/model.keras" \
    --max-minutes "$MINUTES" --validate-every 250 --seed 0 | tee "$OUT/train.log"
.venv/bin/python -m cellpipe.unet.mix --shared "$SHARED" --split val --out "$OUT/val"
.venv/bin/cellpipe model tune "$OUT/model.keras" "$OUT"/val/* --write
.venv/bin/python benchmarks/bench_accuracy.py --per-source --model "$OUT/model.keras" --json "$OUT/accuracy.json"
