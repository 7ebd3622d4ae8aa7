"""Replay speed by how the decoded trace was loaded (traces.load_for_replay), in a fresh
process each: ``parsed`` (RMAPLAB_TRACE_CACHE=0: the events as the parser left them),
``parsed-compacted`` (a fresh cache: parsed and written; in layout.jsonl, with a trial
change to traces._load_cached, not landed, that returned the cache's copy read back, its
events allocated together) and ``cached`` (read from that cache).  Prints one JSON line: the load's seconds and three replays' CPU
seconds (v6.0, checks off).  Run: python layout.py TRACE MODE"""
import json
import os
import sys
import tempfile
import time

path, mode = sys.argv[1], sys.argv[2]
if mode == "parsed":
    os.environ["RMAPLAB_TRACE_CACHE"] = "0"
else:
    os.environ["RMAPLAB_CACHE"] = cache = tempfile.mkdtemp(prefix="rmaplab-layout-")
from rmaplab import traces  # noqa: E402  (after the environment is set)

if mode == "cached":
    traces.load_for_replay(path)                 # writes the cache; not timed
t = time.perf_counter()
events = traces.load_for_replay(path)
load_s = time.perf_counter() - t
replays = []
for _ in range(3):
    c = time.process_time()
    traces.replay(events, policy="v6.0", check="off")
    replays.append(time.process_time() - c)
print(json.dumps({"mode": mode, "load_s": load_s, "replay_cpu_s": replays}))
if mode != "parsed":
    import shutil

    shutil.rmtree(cache)
