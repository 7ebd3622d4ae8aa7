#!/bin/bash
# Before against after, interleaved, $3 rounds (default 3); each side a checkout with its own
# compiled build (python -m rmaplab.model build run in it).  Parsed-trace cache warm.
# Prints "<side> <measure> <seconds>" lines; median them with ../perf-2026-12-03-checks/summarize.py.
#   compare.sh BEFORE_DIR AFTER_DIR [ROUNDS]
BEFORE=$1 AFTER=$2 ROUNDS=${3:-3}
PY=${PY:-/work/main/.venv/bin/python}
SH=/work/main/data/raw/traces/20261129T163725Z-kbuild-sh/trace.jsonl.gz
BIG=/work/main/data/raw/traces/20261202T220609Z-kbuild-tinyconfig-kvm_guest.config-dash2019/trace.jsonl.gz
wall() {  # side measure command...
  local side=$1 name=$2; shift 2
  local s e; s=$(date +%s.%N); "$@" >/dev/null 2>&1; e=$(date +%s.%N)
  echo "$side $name $(echo "$e - $s" | bc)"
}
for side in $BEFORE $AFTER; do
  (cd $side && PYTHONPATH=$side $PY -m rmaplab replay $SH --check off >/dev/null 2>&1
   PYTHONPATH=$side $PY -m rmaplab replay $BIG --check off >/dev/null 2>&1)   # warm caches
done
for round in $(seq $ROUNDS); do
 for side in $BEFORE $AFTER; do
  export PYTHONPATH=$side
  cd $side
  tag=$(git -C $side rev-parse --short HEAD)
  wall $tag replay $PY -m rmaplab replay $SH
  wall $tag replay_off $PY -m rmaplab replay $SH --check off
  wall $tag replay_all $PY -m rmaplab replay $SH --policy all
  wall $tag replay_all_off $PY -m rmaplab replay $SH --policy all --check off
  wall $tag search_unsteered $PY -m rmaplab search --unsteered --policy v5.4 --seed 0 --budget 25000
  wall $tag search_steered $PY -m rmaplab search --policy v5.4 --budget 20000
  $PY -c "
import time
from rmaplab import traces
from rmaplab.model import fastpath
assert fastpath.status()['compiled'], fastpath.status()
for name, path in (('sh', '$SH'), ('big', '$BIG')):
    ev = traces.load(path)
    for check in ('off', 'incremental'):
        t = time.perf_counter(); traces.replay(ev, policy='v6.0', check=check)
        print('$tag', f'inproc_{name}_{check}', time.perf_counter() - t)
    del ev"
 done
done
