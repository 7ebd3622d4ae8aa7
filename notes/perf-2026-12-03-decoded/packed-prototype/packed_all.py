import sys, time, multiprocessing as mp, statistics, gc
from concurrent.futures import ProcessPoolExecutor, wait, FIRST_COMPLETED
from rmaplab import traces
from rmaplab.model import POLICIES
from rmaplab.model.machine import Kernel, pack
D = traces.load_for_replay(sys.argv[1]); P = pack(D.events)
def work(form, policy):
    k = Kernel(policy, check='incremental'); gc.freeze()
    if form == 'packed': k.apply_all_packed(*P)
    else: k.apply_all_decoded(D.events)
    return k.result().counters
def all_policies(form):
    t = time.perf_counter()
    pool = ProcessPoolExecutor(3, mp_context=mp.get_context('fork'))
    pending = list(POLICIES); running = set()
    while pending or running:
        lim = 3 if len(pending) + len(running) <= 3 else 2
        while pending and len(running) < lim: running.add(pool.submit(work, form, pending.pop(0)))
        fin, _ = wait(running, return_when=FIRST_COMPLETED)
        for f in fin: running.discard(f); f.result()
    pool.shutdown()
    return time.perf_counter() - t
res = {}
for r in range(4):
    for form in ('tuples', 'packed'):
        res.setdefault(form, []).append(all_policies(form))
for k, v in res.items(): print(k, ['%.2f' % x for x in v], 'median %.2f' % statistics.median(v))
