import json, sys
h = json.load(open(sys.argv[1])); g = json.load(open(sys.argv[2]))
print(f"| command | host prep | host reused | guest prep | guest reused | diff prep | host vma | guest vma | host clone | guest clone |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for n in h:
    if n not in g: continue
    H, G = h[n], g[n]
    print(f"| {n} | {H['anon_vma_prepare']} | {H['prepare_reused_neighbour']} | {G['anon_vma_prepare']} | "
          f"{G['prepare_reused_neighbour']} | {H['anon_vma_prepare']-G['anon_vma_prepare']:+d} | {H['vma_alloc']} | {G['vma_alloc']} | {H['avc_clone']} | {G['avc_clone']} |")
