"""Per pid: touches vs model prepares (alloc+reuse); list the touches the model did not prepare at."""
import collections, json, sys
from rmaplab import traces
from rmaplab.model.machine import Kernel
trace, want = sys.argv[1], sys.argv[2]
k = Kernel("v6.0", merge_rule="uncowed", check="off"); c = k.counters
comm = {}; per = collections.defaultdict(lambda: [0, 0]); silent = collections.defaultdict(list)
for line, ev in traces.read(trace):
    op, pid = ev["op"], ev["pid"]
    if op in ("exec", "spawn"): comm[pid] = ev.get("comm")
    a0 = c.anon_vma_prepare + c.prepare_reused_neighbour; cl0 = c.avc_clone
    k.apply(ev)
    if op == "touch" and comm.get(pid) == want:
        per[pid][0] += 1
        d = c.anon_vma_prepare + c.prepare_reused_neighbour - a0
        per[pid][1] += d
        if d == 0: silent[pid].append((line, hex(ev["addr"])))
for pid, (t, p) in per.items():
    if t != p: print(pid, "touches", t, "prepares", p, "silent", silent[pid][:12])
