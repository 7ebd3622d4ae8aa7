import time,gc,pickle,marshal,sys
from rmaplab import traces
T="data/raw/traces/20261202T220609Z-kbuild-tinyconfig-kvm_guest.config-dash2019/trace.jsonl.gz"
ev=traces.load(T)
gc.disable()
p=pickle.dumps(ev,protocol=5); m=marshal.dumps(ev)
print("sizes MB", len(p)/1e6, len(m)/1e6)
for i in range(3):
    t=time.perf_counter(); x=pickle.loads(p); a=time.perf_counter()-t; del x
    t=time.perf_counter(); y=marshal.loads(m); b=time.perf_counter()-t
    print(f"pickle {a:.2f} marshal {b:.2f}", y==ev if i==0 else "")
    del y
