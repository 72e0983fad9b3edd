#!/usr/bin/env bash
# ML-1M random:0.1 (seed 0): glocal-k with the reference's ML-1M settings, bayes-fm with its defaults, and
# the three models auto chose on this split (benchmarks/results/auto-ml-1m-random0.1-30m.md: autorec,
# biased-mf, pmf with its searched settings), each without refit (valid rows held out: the blend's
# weights are fitted on them) and with refit (the twin, retrained on all training rows for the epochs
# validation chose); then the blend. Usage: bash benchmarks/sota_ml_1m.sh [OUT]  (default runs/sota/ml-1m)
# A refit run repeats its no-refit fit first; `deepmovie train --resume` on a copy of the finished
# no-refit run (its config's refit set to true and its summary removed) starts at the refit instead.
set -euo pipefail
OUT=${1:-runs/sota/ml-1m}
D=(--data ../shared/data/ml-1m --split random:0.1 --device cpu -q)
declare -A SETTINGS=(
  [glocal-k]="lambda_2=70 lambda_s=0.018 lbfgs_iters=50 finetune_iters=10 pretrain_epochs=20 epochs=50 dot_scale=0.5"
  [bayes-fm]=""
  [autorec]="hidden=500 lr=0.0009372 reg=296.4 epochs=200 patience=15"
  [biased-mf]="factors=128 lr=0.005 reg_bias=0.01 reg_item=0.065 reg_user=0.05 init_std=0.01 epochs=200 patience=4"
  [pmf]="factors=10 reg_user=0.06425 reg_item=0.04389 epochs=100 patience=5"
)
MODELS=(glocal-k bayes-fm autorec biased-mf pmf)
for m in "${MODELS[@]}"; do
  sets=(); for s in ${SETTINGS[$m]}; do sets+=(--set "$s"); done
  deepmovie train "$m" "${D[@]}" "${sets[@]}" --no-refit --out "$OUT/$m"
  deepmovie train "$m" "${D[@]}" "${sets[@]}" --refit --out "$OUT/$m-refit"
done
deepmovie blend $(for m in "${MODELS[@]}"; do echo "$OUT/$m"; done) \
  $(for m in "${MODELS[@]}"; do echo --twin "$OUT/$m-refit"; done) --out "$OUT-blend"
