import time,sys,gc
from rmaplab import traces
T="data/raw/traces/20261202T220609Z-kbuild-tinyconfig-kvm_guest.config-dash2019/trace.jsonl.gz"
ev=traces.load(T)
acc={"t":0.0,"n":[0,0,0],"start":0}
def cb(phase, info):
    if phase=="start": acc["start"]=time.perf_counter()
    else:
        acc["t"]+=time.perf_counter()-acc["start"]; acc["n"][info["generation"]]+=1
if len(sys.argv)>2: gc.set_threshold(int(sys.argv[2]),10,10)
gc.callbacks.append(cb)
t1=time.perf_counter(); r=traces.replay(ev, policy="v6.0", check=sys.argv[1]); T1=time.perf_counter()-t1
print(sys.argv[1:], f"replay {T1:.2f} s, in gc {acc['t']:.2f} s, collections by gen {acc['n']}")
