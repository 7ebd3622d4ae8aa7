"""Per-program runs and kept write faults (touches: the faults that can prepare) of a trace."""
import collections, gzip, json, sys
def percomm(path):
    comm, runs, touches = {}, collections.Counter(), collections.Counter()
    with gzip.open(path, "rt") as f:
        for l in f:
            if l.startswith("#"): continue
            e = json.loads(l); op = e["op"]; p = e["pid"]
            if op in ("exec", "spawn"):
                comm[p] = e.get("comm"); runs[comm[p]] += 1
            elif op == "fork":
                comm[e["child"]] = comm.get(p, "?") + "(fork)"; runs[comm[e["child"]]] += 1
            elif op == "touch":
                touches[comm.get(p, "?")] += 1
    return runs, touches
if __name__ == "__main__":
    data = [percomm(p) for p in sys.argv[1:]]
    names = sorted(set().union(*[set(r) | set(t) for r, t in data]), key=lambda n: -data[0][1][n])
    print("| program | " + " | ".join(f"runs, touches ({i})" for i in range(len(data))) + " |")
    for n in names:
        if all(t[n] == 0 for _, t in data): continue
        print(f"| {n} | " + " | ".join(f"{r[n]}, {t[n]}" for r, t in data) + " |")
    print("| total | " + " | ".join(f"{sum(r.values())}, {sum(t.values())}" for r, t in data) + " |")
