"""Medians (min-max) of compare.jsonl, per trace, cache state and side."""
import json
import statistics
import sys
from collections import defaultdict

rows = [json.loads(line) for line in open(sys.argv[1] if len(sys.argv) > 1 else "compare.jsonl")]
sides = list(dict.fromkeys(r["side"] for r in rows))
cells = defaultdict(list)
for r in rows:
    cells[(r["trace"], r["cached"], r["side"])].append(r)
print("| trace | parsed-trace cache | measure | " + " | ".join(sides) + " | before / after |")
print("|---|---|---|" + "---:|" * (len(sides) + 1))
for trace in ("sh", "big"):
    for cached in (0, 1):
        for key in ("wall_s", "maxrss_mb"):
            vals = [[r[key] for r in cells[(trace, cached, s)]] for s in sides]
            meds = [statistics.median(v) for v in vals]
            text = [f"{m:.2f} ({min(v):.2f}-{max(v):.2f}), n={len(v)}" for m, v in zip(meds, vals)]
            print(f"| {trace} | {'warm' if cached else 'off'} | {key} | " + " | ".join(text)
                  + f" | {meds[0] / meds[1]:.2f}x |")
