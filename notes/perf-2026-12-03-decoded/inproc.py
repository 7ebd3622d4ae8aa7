"""In-process load and replay times of one checkout (run with PYTHONPATH at it), as JSON
lines: the trace loaded the way `rmaplab replay` loads it in that checkout (traces.load
before decoded events existed, traces.load_for_replay after), parsed-trace cache warm,
then v6.0 replayed with checks off and incremental.  Wall (perf_counter) and CPU seconds."""
import json
import sys
import time

from rmaplab import traces
from rmaplab.model import fastpath

assert fastpath.status()["compiled"], fastpath.status()
path, tag = sys.argv[1], sys.argv[2]
loader = getattr(traces, "load_for_replay", traces.load)
loader(path)                                     # the cache warm
t, c = time.perf_counter(), time.process_time()
events = loader(path)
out = {"side": tag, "load_s": time.perf_counter() - t, "load_cpu_s": time.process_time() - c}
for check in ("off", "incremental"):
    t, c = time.perf_counter(), time.process_time()
    r = traces.replay(events, policy="v6.0", check=check)
    out[f"replay_{check}_s"] = time.perf_counter() - t
    out[f"replay_{check}_cpu_s"] = time.process_time() - c
    out[f"counters_{check}"] = r.counters
out["events"] = len(events)
print(json.dumps(out))
