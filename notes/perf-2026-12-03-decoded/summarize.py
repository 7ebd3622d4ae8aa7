"""Medians and minima per side and measure of compare.sh's JSON lines (stdin), and whether
both sides' replays gave the same counters."""
import collections
import json
import statistics
import sys

times = collections.defaultdict(list)
counters = collections.defaultdict(set)
sides = []
for line in sys.stdin:
    r = json.loads(line)
    side = r.pop("side")
    if side not in sides:
        sides.append(side)
    for key, value in r.items():
        if key.startswith("counters_"):
            counters[key].add(json.dumps(value, sort_keys=True))
        elif key != "events":
            times[(side, key)].append(value)
measures = sorted({m for _, m in times})
print("| measure | " + " | ".join(f"{s} median (min)" for s in sides) + " | ratio of medians |")
print("|---|" + "---:|" * (len(sides) + 1))
for m in measures:
    cells = [times.get((s, m)) for s in sides]
    text = [f"{statistics.median(c):.3f} ({min(c):.3f}), n={len(c)}" if c else "" for c in cells]
    ratio = (statistics.median(cells[0]) / statistics.median(cells[-1])
             if all(cells) else float("nan"))
    print(f"| {m} | " + " | ".join(text) + f" | {ratio:.2f}x |")
for key, values in sorted(counters.items()):
    print(f"{key}: {'identical on every run of both sides' if len(values) == 1 else 'DIFFER'}")
