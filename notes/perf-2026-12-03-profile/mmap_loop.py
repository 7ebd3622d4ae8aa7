import time
from rmaplab.model.machine import Kernel
k=Kernel("v6.0",check="off")
k.apply({"op":"spawn","pid":1})
base=0x7f0000000000
evs=[{'file': '254:0:%d'%i, 'pgoff': 0, 'shared': False, 'flags': [], 'stack': False, 'op': 'mmap', 'pid': 1, 'start': base+i*0x100000, 'end': base+i*0x100000+0x5000, 'prot': 'r'} for i in range(40)]
for e in evs: k.apply(e)
N=2000000
rep=[dict(evs[i%40], file='254:0:%d'%(1000+i%7)) for i in range(1000)]
t=time.perf_counter()
for j in range(N//1000):
    k.apply_all([(0,e) for e in rep])
print(f"{(time.perf_counter()-t)/N*1e6:.2f} us per mmap-over-mmap")
