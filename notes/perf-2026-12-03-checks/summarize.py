"""Median per (side, measure) of compare.sh's output (stdin), as a markdown table."""
import statistics
import sys
from collections import defaultdict

times = defaultdict(list)
for line in sys.stdin:
    side, name, sec = line.split()
    times[(name, side)].append(float(sec))
names = list(dict.fromkeys(n for n, _ in times))
print("| measure | before (a71497f) | after | runs |")
print("|---|---:|---:|---:|")
for n in names:
    b, a = times[(n, "s23/start")], times[(n, "main")]
    print(f"| {n} | {statistics.median(b):.2f} | {statistics.median(a):.2f} | {len(a)} |")
