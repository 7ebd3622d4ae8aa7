"""Median seconds (5 runs) of traces.validate over every event of the sh build, parsed first."""
import gc
import gzip
import statistics
import time

import orjson

from rmaplab import traces

gc.disable()
raw = gzip.decompress(open("/work/main/data/raw/traces/20261129T163725Z-kbuild-sh/trace.jsonl.gz",
                           "rb").read())
objs = [orjson.loads(line) for line in raw.splitlines() if line and line[0] != 35]
times = []
for _ in range(5):
    t = time.perf_counter()
    [traces.validate(o, "x", i) for i, o in enumerate(objs)]
    times.append(time.perf_counter() - t)
print("validate median %.3f" % statistics.median(times))
