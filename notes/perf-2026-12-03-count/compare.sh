#!/bin/bash
# Searches, before against after, interleaved, $3 rounds (default 3); each side a checkout
# with its own compiled build (python -m rmaplab.model build run in it).
# Prints "<commit> <measure> <seconds>" lines; median them with ../perf-2026-12-03-search/summarize.py.
#   compare.sh BEFORE_DIR AFTER_DIR [ROUNDS]
BEFORE=$1 AFTER=$2 ROUNDS=${3:-3}
PY=${PY:-/work/main/.venv/bin/python}
wall() {  # side measure command...
  local side=$1 name=$2; shift 2
  local s e; s=$(date +%s.%N); "$@" >/dev/null 2>&1; e=$(date +%s.%N)
  echo "$side $name $(echo "$e - $s" | bc)"
}
for round in $(seq $ROUNDS); do
 for side in $BEFORE $AFTER; do
  export PYTHONPATH=$side
  cd $side
  tag=$(git -C $side rev-parse --short HEAD)
  wall $tag steered_v54_finds $PY -m rmaplab search --policy v5.4 --budget 20000
  wall $tag steered_v60_nothing_10k $PY -m rmaplab search --policy v6.0 --budget 10000
  wall $tag unsteered_v60_nothing_100k $PY -m rmaplab search --unsteered --policy v6.0 --budget 100000
 done
done
