"""Share of perf samples per innermost compiled model function (CPyDef_*), from a
`perf record --call-graph=dwarf` of a replay: CPython's own functions (dict lookups,
allocation) are charged to the model function that called them.
    perf record -D 3000 -F 400 --call-graph=dwarf,32768 -o perf.data python replay.py
    python attr.py perf.data [N]"""
import collections
import subprocess
import sys

out = subprocess.run(["perf", "script", "-i", sys.argv[1], "-F", "ip,sym"],
                     capture_output=True, text=True, check=True).stdout
shares: collections.Counter = collections.Counter()
total = 0
for sample in out.split("\n\n"):
    stack = [line.split(None, 1)[1].split("+")[0].strip()
             for line in sample.splitlines() if len(line.split(None, 1)) == 2]
    if not stack:
        continue
    total += 1
    name = next((s for s in stack if s.startswith(("CPyDef_", "CPyPy_"))), "<none>")
    shares["<interpreter exit>" if "Py_FinalizeEx" in stack else name] += 1
for name, n in shares.most_common(int(sys.argv[2]) if len(sys.argv) > 2 else 40):
    print(f"{100 * n / total:6.2f}% {name}")
