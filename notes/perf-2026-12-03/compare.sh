#!/bin/bash
# Before (e14f506, /work/before) vs after (/work/main), interleaved, 3 rounds.
T=/work/main/data/raw/traces/20261129T163725Z-kbuild-sh/trace.jsonl.gz
PY=/work/main/.venv/bin/python
export RMAPLAB_TRACE_CACHE=0
for round in 1 2 3; do
 for side in before main; do
  export PYTHONPATH=/work/$side
  cd /work/$side
  s=$(date +%s.%N); $PY -m rmaplab replay $T >/dev/null 2>&1; e=$(date +%s.%N); echo "$side replay1_incr $(echo "$e-$s"|bc)"
  s=$(date +%s.%N); $PY -m rmaplab replay $T --policy all >/dev/null 2>&1; e=$(date +%s.%N); echo "$side replay_all_incr $(echo "$e-$s"|bc)"
  s=$(date +%s.%N); $PY -m rmaplab replay $T --policy all --check off >/dev/null 2>&1; e=$(date +%s.%N); echo "$side replay_all_off $(echo "$e-$s"|bc)"
  $PY -c "
import time,sys
from rmaplab import traces
t=time.perf_counter(); ev=traces.load('$T'); t1=time.perf_counter()
r=traces.replay(ev, policy='v6.0', check='off'); t2=time.perf_counter()
r=traces.replay(ev, policy='v6.0', check='incremental'); t3=time.perf_counter()
print('$side load', t1-t); print('$side replay_off', t2-t1); print('$side replay_incr', t3-t2)"
  s=$(date +%s.%N); $PY -m rmaplab search --unsteered --seed 0 >/dev/null 2>&1; e=$(date +%s.%N); echo "$side search_unsteered0 $(echo "$e-$s"|bc)"
 done
done
