#!/bin/bash
# Before against after, interleaved, $3 rounds (default 5): `rmaplab replay TRACE --policy
# all` wall seconds and peak RSS (GNU time's %M: the largest single process), each trace
# parsed (RMAPLAB_TRACE_CACHE=0) and from a warm parsed-trace cache (one per side).
# Each side a checkout with its own compiled build (python -m rmaplab.model build in it).
#   compare.sh BEFORE_DIR AFTER_DIR [ROUNDS] > compare.jsonl
BEFORE=$1 AFTER=$2 ROUNDS=${3:-5}
PY=${PY:-/work/main/.venv/bin/python}
RAW=/work/main/data/raw/traces
SH=$RAW/20261129T163725Z-kbuild-sh/trace.jsonl.gz
BIG=$RAW/20261203T195414Z-kbuild-tinyconfig-kvm_guest.config-dash2019/trace.jsonl.gz
run() {  # side trace-name trace cache(0|1)
  local side=$1 name=$2 trace=$3 cache=$4 tag out
  tag=$(git -C "$side" rev-parse --short HEAD)
  out=$(cd "$side" && PYTHONPATH=$side RMAPLAB_CACHE=/tmp/rmaplab-compare-$tag \
        RMAPLAB_TRACE_CACHE=$cache /usr/bin/time -f "%e %M" \
        "$PY" -m rmaplab replay "$trace" --policy all 2>&1 >/dev/null | tail -1)
  set -- $out
  echo "{\"side\": \"$tag\", \"trace\": \"$name\", \"cached\": $cache, \"wall_s\": $1, \"maxrss_mb\": $(echo "$2 / 1024" | bc -l)}"
}
for side in $BEFORE $AFTER; do              # warm each side's cache (not recorded)
  run "$side" sh "$SH" 1 >/dev/null; run "$side" big "$BIG" 1 >/dev/null
done
for round in $(seq "$ROUNDS"); do
  for trace in sh big; do
    t=$SH; [ $trace = big ] && t=$BIG
    for cache in 0 1; do
      for side in $BEFORE $AFTER; do run "$side" $trace "$t" $cache; done
    done
  done
done
