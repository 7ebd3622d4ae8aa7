#!/bin/bash
# The unsteered search alone, before against after, interleaved, $3 rounds (default 3);
# each side a checkout with its own compiled build.  Output as compare.sh's.
#   compare-unsteered.sh BEFORE_DIR AFTER_DIR [ROUNDS]
BEFORE=$1 AFTER=$2 ROUNDS=${3:-3}
PY=${PY:-/work/main/.venv/bin/python}
for round in $(seq $ROUNDS); do
 for side in $BEFORE $AFTER; do
  cd $side
  tag=$(git -C $side rev-parse --short HEAD)
  s=$(date +%s.%N)
  PYTHONPATH=$side $PY -m rmaplab search --unsteered --policy v6.0 --budget 100000 >/dev/null 2>&1
  e=$(date +%s.%N)
  echo "$tag unsteered_v60_nothing_100k $(echo "$e - $s" | bc)"
 done
done
