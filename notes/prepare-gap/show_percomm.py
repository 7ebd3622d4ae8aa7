import json, sys
d = json.load(open(sys.argv[1])); R, A, U = d["runs"], d["alloc"], d["reuse"]
print(d["total"], d["stack_top_first_write"])
for n, v in sorted(A.items(), key=lambda x: -x[1])[:int(sys.argv[2]) if len(sys.argv) > 2 else 25]:
    r = R.get(n, 0); u = U.get(n, 0)
    print(f"{n:20} runs {r:5} alloc {v:6} reuse {u:5} per-run {(v + u) / max(1, r):.2f}")
