import sys, time, pickle
from rmaplab import traces
from rmaplab.model.machine import Kernel, pack
d = traces.load_for_replay(sys.argv[1])
t = time.perf_counter(); data, strings = pack(d.events); print('pack s', round(time.perf_counter() - t, 2), 'bytes', len(data), 'strings', len(strings))
blob = pickle.dumps((data, strings), protocol=5)
t = time.perf_counter(); pickle.loads(blob); print('unpickle packed s', round(time.perf_counter() - t, 3))
blob2 = pickle.dumps(d, protocol=5)
t = time.perf_counter(); pickle.loads(blob2); print('unpickle decoded s', round(time.perf_counter() - t, 3))
import gc
def run(form, check, policy='v6.0'):
    k = Kernel(policy, check=check)
    gc.freeze()
    c = time.process_time()
    if form == 'packed': k.apply_all_packed(data, strings)
    else: k.apply_all_decoded(d.events)
    c = time.process_time() - c
    gc.unfreeze()
    return c, k.result().as_dict()
for pol in ('v5.4', 'v6.0', 'no-reuse'):
    for check in ('off', 'incremental'):
        assert run('packed', check, pol)[1] == run('tuples', check, pol)[1], (pol, check)
print('identical results: v5.4 v6.0 no-reuse x off incremental')
res = {}
for r in range(5):
    for form in ('tuples', 'packed'):
        for check in ('off', 'incremental'):
            res.setdefault((form, check), []).append(run(form, check)[0])
import statistics
for k, v in sorted(res.items()): print(k, 'median %.3f min %.3f' % (statistics.median(v), min(v)))
