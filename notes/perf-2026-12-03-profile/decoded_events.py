import time,sys,gc
from rmaplab import traces
from rmaplab.model import machine
T="data/raw/traces/20261202T220609Z-kbuild-tinyconfig-kvm_guest.config-dash2019/trace.jsonl.gz"
ev=traces.load(T)
gc.freeze()
t=time.process_time(); dec=[machine.decode(e) for _,e in ev]; print(f"decode {time.process_time()-t:.2f}")
gc.freeze()
res={"dicts":[], "events":[]}
for r in range(3):
    for mode in ("dicts","events"):
        k=machine.Kernel("v6.0",check=sys.argv[1])
        t=time.process_time()
        if mode=="dicts": k.apply_all(ev)
        else: k.apply_events(dec)
        res[mode].append(time.process_time()-t)
        c=k.counters.as_dict(); del k
print(sys.argv[1], {m:" ".join(f"{x:.2f}" for x in v) for m,v in res.items()})
