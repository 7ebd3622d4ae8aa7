"""Benchmarks (``make bench``): measured, reported, never asserted by the test suite.

1. Model vs kernel per fork: the model simulates fork + exit of a process with 64
   faulted one-page anon VMAs; the live kernel does fork + _exit + waitpid for a C
   process with the same layout (``avwork forkcost 64 N 2``).  Reports the ratio.
2. Replay speed: events per second for one policy over a trace (the recorded kernel
   build when present), with peak memory (ru_maxrss of a fresh process).
3. Sweep scaling: the same sweep of generated builds on a LocalCluster with 1 and
   with 2 workers (target: at least 1.7x faster on 2).
4. ``rmaplab compare`` on 1,000 vs 1,000 runs of real/user/sys (times at 10 ms
   resolution, so with ties) in a fresh process: wall time including start-up
   (target: under 5 s) and peak memory.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

from rmaplab import workloads
from rmaplab.model import Kernel


def model_fork_ns(vmas: int, forks: int) -> float:
    kernel = Kernel("v6.0", check="off")
    for _, ev in workloads.numbered(workloads.sep(vmas, 0)):
        kernel.apply(ev)
    start = time.perf_counter_ns()
    for j in range(forks):
        kernel.fork(1, 1000 + j)
        kernel.exit(1000 + j)
    return (time.perf_counter_ns() - start) / forks


def kernel_fork_ns(vmas: int, forks: int, repeats: int = 11) -> tuple[float, float, float]:
    """(median, min, max) ns per fork+_exit+wait over repeated runs of avwork forkcost."""
    from rmaplab.measure import micro

    exe = str(micro.binary())
    runs = []
    for _ in range(repeats):
        out = subprocess.run([exe, "forkcost", str(vmas), str(forks), "2"], capture_output=True,
                             text=True, check=True).stdout.split()
        runs.append(int(out[0]) / forks)
    runs.sort()
    return runs[len(runs) // 2], runs[0], runs[-1]


def replay_speed(path: Path, policy: str) -> dict:
    """Replay in a fresh process so its peak RSS is the replay's own."""
    code = (
        "import json,resource,sys,time\n"
        "from rmaplab import traces\n"
        f"t0=time.perf_counter(); ev=traces.load({str(path)!r}); t1=time.perf_counter()\n"
        f"r=traces.replay(ev, policy={policy!r}, check='off'); t2=time.perf_counter()\n"
        "print(json.dumps({'events': len(ev), 'load_s': t1-t0, 'replay_s': t2-t1,"
        " 'maxrss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss/1024}))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    res = json.loads(out.stdout)
    res["events_per_s"] = res["events"] / res["replay_s"]
    return res


def sweep_speedup(cells: int = 16, units: float = 0.5) -> dict:
    import tempfile

    from rmaplab import sweep

    grid = sweep.grid(kind=["generated"], units=[units], shell=["sh"], make_forks=[False],
                      jobs=[2], seed=list(range(cells)), policy=["v6.0"])
    times = {}
    for workers in (1, 2):
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            counts = sweep.sweep(grid, Path(tmp) / "out", workers=workers, log=lambda s: None)
            times[workers] = time.perf_counter() - start
            if counts["failed"]:
                raise RuntimeError(f"sweep benchmark: {counts['failed']} cells failed")
    return {"cells": cells, "seconds_1_worker": times[1], "seconds_2_workers": times[2],
            "speedup": times[1] / times[2]}


def compare_speed(runs: int = 1000, seed: int = 0) -> dict:
    """`rmaplab compare --json` on a generated file of `runs` + `runs` timed runs."""
    import tempfile

    import numpy as np

    rng = np.random.default_rng(seed)
    blocks = []
    for label, scale in (("A", 1.0), ("B", 0.99)):
        blocks.append(f"{label}:\n")
        for _ in range(runs):
            real, user, sys_ = scale * rng.normal([170.0, 1075.0, 112.0], [1.5, 4.0, 1.5])
            blocks.append(f"real {real:.2f}\nuser {user:.2f}\nsys {sys_:.2f}\n\n")
    code = (
        "import json,resource,sys,time\n"
        "t0=time.perf_counter()\n"
        "from rmaplab.cli import main\n"
        "import contextlib,io\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    rc=main(['compare', sys.argv[1], '--json'])\n"
        "ru=resource.getrusage(resource.RUSAGE_SELF)\n"
        "print(json.dumps({'rc': rc, 'in_process_s': time.perf_counter()-t0,"
        " 'cpu_s': ru.ru_utime+ru.ru_stime, 'maxrss_mb': ru.ru_maxrss/1024}))\n")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "runs.txt"
        path.write_text("".join(blocks))
        start = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True,
                             text=True)
        wall = time.perf_counter() - start
    if out.returncode != 0:
        raise RuntimeError(f"compare benchmark failed: {out.stderr.strip()[-2000:]}")
    res = json.loads(out.stdout.strip().splitlines()[-1])
    if res["rc"] != 0:
        raise RuntimeError(f"compare benchmark failed: {out.stderr.strip()}")
    return {"runs_per_side": runs, "wall_s": wall, **res}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m rmaplab.bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--vmas", type=int, default=64)
    p.add_argument("--forks", type=int, default=2000)
    p.add_argument("--trace", type=Path, help="trace to replay (default: the recorded build)")
    p.add_argument("--policy", default="v6.0")
    p.add_argument("--no-sweep", action="store_true", help="skip the sweep-scaling benchmark")
    p.add_argument("--only-compare", action="store_true",
                   help="run only the `rmaplab compare` benchmark")
    p.add_argument("--compare-runs", type=int, default=1000, metavar="N",
                   help="runs per side for the compare benchmark (1000)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)

    if args.only_compare:
        results = {"compare": compare_speed(args.compare_runs)}
        _print(results, args)
        return 0
    results: dict = {"vmas": args.vmas, "forks": args.forks}
    results["model_ns_per_fork"] = model_fork_ns(args.vmas, args.forks)
    try:
        (results["kernel_ns_per_fork"], results["kernel_ns_min"],
         results["kernel_ns_max"]) = kernel_fork_ns(args.vmas, args.forks)
        results["model_over_kernel"] = results["model_ns_per_fork"] / results["kernel_ns_per_fork"]
    except Exception as e:  # no gcc here: report, do not hide
        results["kernel_error"] = str(e)
    trace = args.trace
    if trace is None:
        from rmaplab.measure.data import measurement_dirs

        dirs = [d for d in measurement_dirs("traces") if (d / "trace.jsonl.gz").exists()]
        trace = dirs[-1] / "trace.jsonl.gz" if dirs else None
    if trace is not None:
        results["replay"] = {"trace": str(trace), **replay_speed(trace, args.policy)}
    if not args.no_sweep:
        results["sweep"] = sweep_speedup()
    results["compare"] = compare_speed(args.compare_runs)
    results["maxrss_mb_bench"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    _print(results, args)
    return 0


def _print(results: dict, args) -> None:
    if args.json:
        print(json.dumps(results, indent=1))
        return
    if "model_ns_per_fork" in results:
        print(f"model : {results['model_ns_per_fork'] / 1000:8.1f} µs per fork+exit "
              f"({args.vmas} faulted VMAs)")
        if "kernel_ns_per_fork" in results:
            print(f"kernel: {results['kernel_ns_per_fork'] / 1000:8.1f} µs per fork+_exit+wait "
                  f"(median of 11; {results['kernel_ns_min'] / 1000:.1f} to "
                  f"{results['kernel_ns_max'] / 1000:.1f})")
            print(f"ratio model/kernel: {results['model_over_kernel']:.2f}")
    if "replay" in results:
        r = results["replay"]
        print(f"replay ({args.policy}): {r['events']:,} events in {r['replay_s']:.2f} s "
              f"({r['events_per_s']:,.0f}/s), load {r['load_s']:.2f} s, "
              f"peak RSS {r['maxrss_mb']:.0f} MB")
    if "sweep" in results:
        w = results["sweep"]
        print(f"sweep of {w['cells']} cells: {w['seconds_1_worker']:.1f} s on 1 worker, "
              f"{w['seconds_2_workers']:.1f} s on 2: {w['speedup']:.2f}x")
    if "compare" in results:
        c = results["compare"]
        print(f"compare {c['runs_per_side']:,} vs {c['runs_per_side']:,} runs (real, user, sys): "
              f"{c['wall_s']:.2f} s wall including start-up (target < 5 s), "
              f"{c['in_process_s']:.2f} s in process, {c['cpu_s']:.2f} s CPU, "
              f"peak RSS {c['maxrss_mb']:.0f} MB")


if __name__ == "__main__":
    raise SystemExit(main())
