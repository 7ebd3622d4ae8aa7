"""Per-command table: host and guest, LANG=C and LANG=C.UTF-8."""
import json, sys
def load(*fs):
    d = {}
    for f in fs:
        try: d.update(json.load(open(f)))
        except FileNotFoundError: pass
    return d
H = {L: load(f"host-{L}.json", f"host-tr-{L}.json") for L in ("C", "C.UTF-8")}
G = {L: load(f"guest-small-{L}.json", f"guest-k-{L}.json") for L in ("C", "C.UTF-8")}
print("| command | host C | guest C | host−guest (C) | host C.UTF-8 | guest C.UTF-8 | host−guest (UTF-8) | host UTF-8 − guest C |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
def f(r): return f"{r['anon_vma_prepare']}+{r['prepare_reused_neighbour']}" if r else "-"
for n in H["C"]:
    hc, gc, hu, gu = H["C"].get(n), G["C"].get(n), H["C.UTF-8"].get(n), G["C.UTF-8"].get(n)
    d = lambda a, b: f"{a['anon_vma_prepare']-b['anon_vma_prepare']:+d}" if a and b else "-"
    print(f"| {n} | {f(hc)} | {f(gc)} | {d(hc,gc)} | {f(hu)} | {f(gu)} | {d(hu,gu)} | {d(hu,gc)} |")
