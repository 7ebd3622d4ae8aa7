"""Median (and min) per (measure, side) of compare.sh's output (stdin), as a markdown table;
sides in the order they first appear (before, after)."""
import statistics
import sys
from collections import defaultdict

times = defaultdict(list)
for line in sys.stdin:
    side, name, sec = line.split()
    times[(name, side)].append(float(sec))
sides = list(dict.fromkeys(s for _, s in times))
names = list(dict.fromkeys(n for n, _ in times))
print("| measure (s) | " + " | ".join(f"{s} median (min)" for s in sides) + " | runs |")
print("|---|" + "---:|" * len(sides) + "---:|")
for n in names:
    cells = [f"{statistics.median(times[(n, s)]):.2f} ({min(times[(n, s)]):.2f})" for s in sides]
    print(f"| {n} | " + " | ".join(cells) + f" | {len(times[(n, sides[-1])])} |")
