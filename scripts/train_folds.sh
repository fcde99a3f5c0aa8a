#!/usr/bin/env bash
# Train the cross-validation fold models of the default recipe on ISBI 2012 slices 0-19.
#
# Fold k holds out slices 5k..5k+4 (its validation and scoring slices) and trains on the
# other 15, with exactly the shipped model's command otherwise. Slices 20-24 are never
# used: they stay the final held-out test of the shipped model. The folds' out-of-fold
# edge maps are what benchmarks/tune_segment.py --fold tunes the post-processing on.
#
#   bash scripts/train_folds.sh [FOLD...]      # default: 3 0 1 2; about 30 min each on 2 cores
set -euo pipefail
cd "$(dirname "$0")/.."
data=../shared/data/isbi2012
folds=("$@")
[ ${#folds[@]} -gt 0 ] || folds=(3 0 1 2)
for k in "${folds[@]}"; do
    first=$((5 * k)); last=$((first + 4))
    train=$(seq -s, 0 19 | tr , '\n' | awk -v a="$first" -v b="$last" '$1 < a || $1 > b' | paste -sd,)
    out=build/folds/$k/model.keras
    mkdir -p "$(dirname "$out")"
    echo "fold $k: validation $first-$last, training $train"
    .venv/bin/cellpipe model train "$data" --out "$out" --train-ids "$train" --val-ids "$first-$last" \
        --depth 5 --max-filters 128 --epochs 50 --steps 50 --batch-size 2 --crop 384 \
        --patience 50 --max-minutes 60 --seed 0
done
