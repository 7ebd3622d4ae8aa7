import time,sys,gc,collections
from rmaplab import traces
from rmaplab.model.machine import Kernel
T="data/raw/traces/20261202T220609Z-kbuild-tinyconfig-kvm_guest.config-dash2019/trace.jsonl.gz"
ev=traces.load(T)
gc.freeze()
k=Kernel("v6.0",check=sys.argv[1])
tot=collections.Counter(); n=collections.Counter()
pc=time.perf_counter
t00=pc()
for _,e in ev:
    t0=pc(); k.apply(e); t=pc()-t0
    tot[e["op"]]+=t; n[e["op"]]+=1
T=pc()-t00
print(f"total {T:.2f}; sum {sum(tot.values()):.2f}")
for op,t in tot.most_common(): print(f"{op:9s} {n[op]:8d} {t:6.2f} s {t/n[op]*1e6:7.2f} us")
