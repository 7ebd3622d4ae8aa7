#!/bin/bash
# Before against after, interleaved, $3 rounds (default 5): in-process load and replay
# (inproc.py) and `rmaplab replay TRACE [--policy all]` wall, on the larger recorded build.
# Each side a checkout with its own compiled build (python -m rmaplab.model build in it).
#   compare.sh BEFORE_DIR AFTER_DIR [ROUNDS] > compare.jsonl
BEFORE=$1 AFTER=$2 ROUNDS=${3:-5}
PY=${PY:-/work/main/.venv/bin/python}
HERE=$(cd "$(dirname "$0")" && pwd)
BIG=/work/main/data/raw/traces/20261203T195414Z-kbuild-tinyconfig-kvm_guest.config-dash2019/trace.jsonl.gz
wall() {  # side measure command...
  local side=$1 name=$2; shift 2
  local s e; s=$(date +%s.%N); "$@" >/dev/null 2>&1; e=$(date +%s.%N)
  echo "{\"side\": \"$side\", \"$name\": $(echo "$e - $s" | bc)}"
}
for round in $(seq $ROUNDS); do
 for side in $BEFORE $AFTER; do
  export PYTHONPATH=$side
  cd $side
  tag=$(git -C $side rev-parse --short HEAD)
  $PY $HERE/inproc.py $BIG $tag
  wall $tag cli_replay_s $PY -m rmaplab replay $BIG
  wall $tag cli_replay_all_s $PY -m rmaplab replay $BIG --policy all
 done
done
