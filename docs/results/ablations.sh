#!/usr/bin/env bash
# Ablation sweep behind docs/results/ablations.md: one `mindstream eval` per row and dataset, one seed each.
# Usage: docs/results/ablations.sh OUT_DIR [DEVICE] [PARALLEL]   (from the repository root)
# Rows whose lever is shared by all neural methods (negatives, sampler) train youtube_dnn, mind_1 and mind_k;
# MIND-only levers (K, r, sigma, p, K'u, routing regularisation) train mind_k alone.
set -euo pipefail
OUT=${1:?output directory}
DEVICE=${2:-auto}
PARALLEL=${3:-2}
PY=${PYTHON:-.venv/bin/python}
DATA=(../shared/data/amazon-beauty/Beauty.txt ../shared/data/ml-100k)
ALL=youtube_dnn,mind_1,mind_k
ROWS=(
  "default|$ALL|"
  "full_softmax|$ALL|--set sampler=full"
  "hard_neg_beta=1|$ALL|--set hard_neg_beta=1"
  "K=2|mind_k|--set K=2"
  "K=8|mind_k|--set K=8"
  "r=1|mind_k|--set r=1"
  "sigma=5|mind_k|--set sigma=5"
  "p=1|mind_k|--set p=1"
  "static_K|mind_k|--set dynamic_k=false"
  "routing_reg=10|mind_k|--set routing_reg=10"
  # second round: the paper's levers on top of the full softmax (the first round's best shared setting)
  "full+K=2|mind_k|--set sampler=full --set K=2"
  "full+r=1|mind_k|--set sampler=full --set r=1"
  "full+sigma=5|mind_k|--set sampler=full --set sigma=5"
  "full+routing_reg=10|mind_k|--set sampler=full --set routing_reg=10"
  "full+r=1+routing_reg=10|mind_k|--set sampler=full --set r=1 --set routing_reg=10"
)
mkdir -p "$OUT"
jobs=()
for row in "${ROWS[@]}"; do
  IFS='|' read -r name methods flags <<<"$row"
  for data in "${DATA[@]}"; do
    ds=$(basename "$data" .txt)
    dir="$OUT/${name}__${ds}"
    jobs+=("$PY -m stream.cli eval --data $data --methods $methods --seeds 1 --device $DEVICE --quiet --out $dir $flags")
  done
done
printf '%s\n' "${jobs[@]}" > "$OUT/commands.txt"
printf '%s\n' "${jobs[@]}" | OMP_NUM_THREADS=2 xargs -P "$PARALLEL" -I{} sh -c '{} > /dev/null 2>&1 || echo "failed: {}"'
