"""Seconds for N replays (default 3) of one trace under v6.0 in this process, checks as given:
    python replay3.py incremental|off|full [N]      (TRACE=path; default the sh build)"""
import os
import sys
import time

from rmaplab import traces

path = os.environ.get("TRACE", "/work/main/data/raw/traces/20261129T163725Z-kbuild-sh/trace.jsonl.gz")
decoded = traces.load_for_replay(path)
start = time.perf_counter()
for _ in range(int(sys.argv[2]) if len(sys.argv) > 2 else 3):
    traces.replay(decoded, policy="v6.0", check=sys.argv[1])
print(time.perf_counter() - start)
