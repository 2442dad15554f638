#!/usr/bin/env bash
# The language-model results of docs/results/lm.md, from scratch: lm_agnews (its teacher
# trained once, in outputs/lm/teachers), three student seeds against the student trained
# alone, dense teacher logits, on-policy GKD, and two ablations run without gradient
# clipping (optimizer.max_grad_norm=null, how they were first measured): what the 32 cache
# slots hold (top tokens, sampled tokens, dense logits) and the divergence x top-k sweep;
# then distillab-summarize on each and docs/results/lm.md assembled from the tables.
#   bash scripts/lm_results.sh                   # everything, about 2 hours on 2 CPU cores
#   bash scripts/lm_results.sh seeds gkd         # only these sweeps (the others' outputs are kept)
#   bash scripts/lm_results.sh --summarize-only  # the tables again from outputs/lm
# TEACHERS=<folder> uses (and keeps) another teacher store, e.g. one that already holds the teacher.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
OUT=${OUT:-outputs/lm}
TEACHERS=${TEACHERS:-$OUT/teachers}
QUIET=(callbacks.progress_bar.refresh_rate=0 "paths.teachers_dir=$TEACHERS")
SWEEPS=(first seeds dense gkd targets targets_dense loss_k)
run() {  # name, then distillab arguments
  local name=$1 start
  shift
  start=$(date +%s)
  rm -rf "${OUT:?}/$name"
  "$BIN/distillab" "$@" "${QUIET[@]}" > "$OUT/$name.log" 2>&1
  echo "$name: $(( $(date +%s) - start )) s on $(nproc) cores" | tee -a "$OUT/time.txt"
}
sweep() {
  case $1 in
    first) run first experiment=lm_agnews "hydra.run.dir=$OUT/first" ;;  # the teacher trains here
    seeds) run seeds -m experiment=lm_agnews seed=1,2,3 "hydra.sweep.dir=$OUT/seeds" ;;
    dense) run dense -m experiment=lm_agnews baseline=false seed=1 cache.topk=null "hydra.sweep.dir=$OUT/dense" ;;
    targets) run targets -m experiment=lm_agnews baseline=false seed=1 optimizer.max_grad_norm=null \
      cache.samples=0,8,16,24,31 "hydra.sweep.dir=$OUT/targets" ;;
    targets_dense) run targets_dense -m experiment=lm_agnews baseline=false seed=1 optimizer.max_grad_norm=null \
      cache.topk=null "hydra.sweep.dir=$OUT/targets_dense" ;;
    loss_k) run loss_k -m experiment=lm_agnews baseline=false seed=1 optimizer.max_grad_norm=null \
      loss.terms.kd.kind=forward_kl,reverse_kl,jsd cache.topk=8,32 cache.samples=0 \
      "hydra.sweep.dir=$OUT/loss_k" ;;
    gkd) run gkd -m experiment=lm_agnews_gkd seed=1 "hydra.sweep.dir=$OUT/gkd" ;;  # the teacher from the store
    *) echo "unknown sweep $1 (one of ${SWEEPS[*]})" >&2; exit 2 ;;
  esac
}
if [ "${1:-}" = "--summarize-only" ]; then
  :
elif [ $# -gt 0 ]; then
  mkdir -p "$OUT"
  for name in "$@"; do sweep "$name"; done
else
  rm -rf "$OUT" && mkdir -p "$OUT"  # (TEACHERS outside it is kept)
  for name in "${SWEEPS[@]}"; do sweep "$name"; done
fi
for name in seeds dense gkd targets loss_k; do
  if [ -d "$OUT/$name" ]; then "$BIN/distillab-summarize" "$OUT/$name" --out "$OUT/$name/summary" > /dev/null; fi
done
"$BIN/python" scripts/lm_results.py "$OUT" > docs/results/lm.md
echo "wrote docs/results/lm.md"
