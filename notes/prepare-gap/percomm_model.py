"""Replay a host trace with the model (v6.0, merge rule uncowed) and attribute
__anon_vma_prepare allocations (and neighbour reuses) to the program that faulted."""
import collections, json, sys
from pathlib import Path
from rmaplab import traces
from rmaplab.model.machine import Kernel

def attribute(trace):
    meta = json.loads((Path(trace).parent / "metadata.json").read_text())
    pre = meta.get("preamble_events", 0)
    k = Kernel("v6.0", merge_rule="uncowed", check="off")
    comm, runs = {}, collections.Counter()
    alloc, reuse = collections.Counter(), collections.Counter()
    c = k.counters
    for i, (line, ev) in enumerate(traces.read(trace)):
        op, pid = ev["op"], ev["pid"]
        if op in ("exec", "spawn"):
            comm[pid] = ev.get("comm"); runs[comm[pid]] += 1
        elif op == "fork":
            comm[ev["child"]] = comm.get(pid, "?") + "(fork)"; runs[comm[ev["child"]]] += 1
        a0, r0 = c.anon_vma_prepare, c.prepare_reused_neighbour
        k.apply(ev)
        who = "preamble" if i < pre else comm.get(pid, "?")
        alloc[who] += c.anon_vma_prepare - a0
        reuse[who] += c.prepare_reused_neighbour - r0
    return runs, alloc, reuse, (c.anon_vma_prepare, c.prepare_reused_neighbour)

if __name__ == "__main__":
    out = {}
    for t in sys.argv[1:]:
        runs, alloc, reuse, tot = attribute(t)
        out[t] = {"runs": runs, "alloc": alloc, "reuse": reuse, "total": tot}
        print(t, "total prepare alloc, reuse:", tot, file=sys.stderr)
    json.dump(out, open("/work/wt/prepare-gap/percomm_model.json", "w"), indent=0)
