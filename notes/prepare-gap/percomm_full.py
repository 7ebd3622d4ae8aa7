"""Model replay of a host trace (v6.0, uncowed): __anon_vma_prepare allocations per program,
with make's posix_spawn stacks (anon rw mmap whose first write is its top word) counted apart."""
import collections, json, sys
from pathlib import Path
from rmaplab import traces
from rmaplab.model.machine import Kernel
trace = sys.argv[1]
meta = json.loads((Path(trace).parent / "metadata.json").read_text())
pre = meta.get("preamble_events", 0)
k = Kernel("v6.0", merge_rule="uncowed", check="off"); c = k.counters
comm, runs = {}, collections.Counter()
alloc, reuse = collections.Counter(), collections.Counter()
last_anon = {}
spawn_stack = collections.Counter()
for i, (line, ev) in enumerate(traces.read(trace)):
    op, pid = ev["op"], ev["pid"]
    if op in ("exec", "spawn"):
        comm[pid] = ev.get("comm"); runs[comm[pid]] += 1
    elif op == "fork":
        comm[ev["child"]] = comm.get(pid, "?") + "(fork)"; runs[comm[ev["child"]]] += 1
    elif op == "mmap" and not ev.get("file") and ev["prot"] == "rw" and not ev.get("flags"):
        last_anon[pid] = (ev["start"], ev["end"])
    a0, r0 = c.anon_vma_prepare, c.prepare_reused_neighbour
    k.apply(ev)
    who = "preamble" if i < pre else comm.get(pid, "?")
    da, dr = c.anon_vma_prepare - a0, c.prepare_reused_neighbour - r0
    alloc[who] += da; reuse[who] += dr
    if op == "touch" and (da or dr) and pid in last_anon:
        s, e = last_anon[pid]
        if s <= ev["addr"] < e and e - ev["addr"] <= 64 and e - s <= 64 * 4096:
            spawn_stack[(who, "alloc" if da else "reuse")] += 1
res = {"total": [c.anon_vma_prepare, c.prepare_reused_neighbour], "runs": runs, "alloc": alloc,
       "reuse": reuse, "stack_top_first_write": {f"{a}/{b}": n for (a, b), n in spawn_stack.items()}}
json.dump(res, sys.stdout, indent=0)
