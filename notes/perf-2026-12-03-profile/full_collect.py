import time,sys,gc
from rmaplab import traces
T="data/raw/traces/20261202T220609Z-kbuild-tinyconfig-kvm_guest.config-dash2019/trace.jsonl.gz"
t=time.perf_counter(); ev=traces.load(T); print("load", time.perf_counter()-t)
t1=time.perf_counter(); r=traces.replay(ev, policy="v6.0", check="off"); print("replay",time.perf_counter()-t1)
t=time.perf_counter(); gc.collect(); print("full collect", time.perf_counter()-t)
t=time.perf_counter(); gc.collect(); print("again", time.perf_counter()-t)
t=time.perf_counter(); del ev; print("del events", time.perf_counter()-t)
