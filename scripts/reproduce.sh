#!/usr/bin/env bash
# Runs the paper reproductions of docs/REPRODUCTIONS.md from scratch (each with its own,
# empty teacher store, so the wall time includes training the teachers) and summarises each.
#   bash scripts/reproduce.sh [hinton_mnist vit_fashion distilbert_sst2 distilbert_sst2_scratch
#                              cross_domain_text minilm_sst2 digits_few_labels sst2_few_labels digits_ard
#                              minilm_wnut17]
# Output: outputs/reproductions/<name>/ (runs, summary/ tables and plots, time.txt).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(hinton_mnist vit_fashion distilbert_sst2 distilbert_sst2_scratch
                                  cross_domain_text minilm_sst2 digits_few_labels sst2_few_labels digits_ard
                                  minilm_wnut17)
for name in "${names[@]}"; do
  out=outputs/reproductions/$name
  rm -rf "$out"
  mkdir -p "$out"
  case $name in
    hinton_mnist|vit_fashion) sweep=(-m "experiment=$name" seed=1,2,3) ;;  # one teacher, 3 student seeds
    minilm_sst2) sweep=(-m "experiment=$name" model.student.num_layers=3,2) ;;  # one fine-tuned teacher
    *) sweep=(-m "experiment=$name") ;;
  esac
  start=$(date +%s)
  "$BIN/distillab" "${sweep[@]}" "hydra.sweep.dir=$out" "paths.teachers_dir=$out/teachers" \
    callbacks.progress_bar.refresh_rate=0 > "$out/log.txt" 2>&1
  echo "$name: $(( $(date +%s) - start )) s on $(nproc) cores" | tee "$out/time.txt"
  case $name in
    *_few_labels) plot=(--x data.labelled_fraction) ;;  # accuracy against the labelled fraction
    *) plot=() ;;
  esac
  "$BIN/distillab-summarize" "$out" --out "$out/summary" "${plot[@]}" > /dev/null
done
