#!/bin/bash
# Before (a71497f, the start of this work, in /work/s23/start with its own compiled build)
# against after (/work/main), interleaved, $1 rounds (default 3), parsed-trace cache warm.
# Prints "<side> <measure> <seconds>" lines; median them with summarize.py.
T=/work/main/data/raw/traces/20261129T163725Z-kbuild-sh/trace.jsonl.gz
PY=/work/main/.venv/bin/python
ROUNDS=${1:-3}
wall() {  # side measure command...
  local side=$1 name=$2; shift 2
  local s e; s=$(date +%s.%N); "$@" >/dev/null 2>&1; e=$(date +%s.%N)
  echo "$side $name $(echo "$e - $s" | bc)"
}
for side in s23/start main; do (cd /work/$side && PYTHONPATH=/work/$side $PY -m rmaplab replay $T --check off >/dev/null 2>&1); done  # warm caches
for round in $(seq $ROUNDS); do
 for side in s23/start main; do
  export PYTHONPATH=/work/$side
  cd /work/$side
  wall $side help $PY -m rmaplab --help
  wall $side replay $PY -m rmaplab replay $T
  wall $side replay_off $PY -m rmaplab replay $T --check off
  wall $side replay_all $PY -m rmaplab replay $T --policy all
  wall $side replay_all_off $PY -m rmaplab replay $T --policy all --check off
  $PY -c "
import time
from rmaplab import traces
ev = traces.load('$T')
t = time.perf_counter(); traces.replay(ev, policy='v6.0', check='off'); t1 = time.perf_counter()
traces.replay(ev, policy='v6.0', check='incremental'); t2 = time.perf_counter()
print('$side inproc_off', t1 - t); print('$side inproc_incremental', t2 - t1)"
 done
done
