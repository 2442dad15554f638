#!/usr/bin/env bash
# The language-model results of docs/results/lm.md, from scratch: lm_agnews (its teacher
# trained once, in outputs/lm/teachers), three student seeds against the student trained
# alone, the divergence x top-k sweep, top-k against dense teacher logits, and on-policy GKD;
# then summarize.py on each and docs/results/lm.md assembled from the tables.
#   bash scripts/lm_results.sh                   # about an hour on 2 CPU cores
#   bash scripts/lm_results.sh --summarize-only  # the tables again from outputs/lm
# TEACHERS=<folder> uses (and keeps) another teacher store, e.g. one that already holds the teacher.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
OUT=${OUT:-outputs/lm}
TEACHERS=${TEACHERS:-$OUT/teachers}
QUIET=(callbacks.progress_bar.refresh_rate=0 "paths.teachers_dir=$TEACHERS")
run() {  # name, then distillab arguments
  local name=$1 start
  shift
  start=$(date +%s)
  "$BIN/distillab" "$@" "${QUIET[@]}" > "$OUT/$name.log" 2>&1
  echo "$name: $(( $(date +%s) - start )) s on $(nproc) cores" | tee -a "$OUT/time.txt"
}
if [ "${1:-}" != "--summarize-only" ]; then
  rm -rf "$OUT" && mkdir -p "$OUT"  # (TEACHERS outside it is kept)
  run first experiment=lm_agnews "hydra.run.dir=$OUT/first"  # the teacher trains here
  run seeds -m experiment=lm_agnews seed=1,2,3 "hydra.sweep.dir=$OUT/seeds"
  run loss_k -m experiment=lm_agnews baseline=false seed=1 loss.terms.kd.kind=forward_kl,reverse_kl,jsd \
    teacher.cache_topk=8,32 "hydra.sweep.dir=$OUT/loss_k"
  run dense -m experiment=lm_agnews baseline=false seed=1 teacher.cache_topk=32,null "hydra.sweep.dir=$OUT/dense"
  run gkd -m experiment=lm_agnews_gkd seed=1 baseline=false "hydra.sweep.dir=$OUT/gkd"  # alone: seeds/0
fi
for name in seeds loss_k dense gkd; do
  "$BIN/python" scripts/summarize.py "$OUT/$name" --out "$OUT/$name/summary" > /dev/null
done
"$BIN/python" scripts/lm_results.py "$OUT" > docs/results/lm.md
echo "wrote docs/results/lm.md"
