"""Benchmarks (``make bench``): measured, reported, never asserted by the test suite.

1. Model vs kernel per fork: the model simulates fork + exit of a process with 64
   faulted one-page anon VMAs; the live kernel does fork + _exit + waitpid for a C
   process with the same layout (``avwork forkcost 64 N 2``).  Reports the ratio
   (target: at most 1.0), for the model as it runs here (``model_*``: the compiled fast
   path when built) and for the interpreted reference (``reference_*``, RMAPLAB_PURE=1),
   each in a fresh process, interleaved with the kernel's runs.
2. Replay speed: events per second for one policy over a trace (the recorded kernel
   build when present; target: at least 1,000,000), with peak memory (ru_maxrss of a
   fresh process), for the model as it runs (``replay``, and with the incremental checks
   ``replay_checked``) and for the reference (``replay_reference``); the trace loaded as
   ``rmaplab replay`` loads it (decoded events).  With --replay-all, ``rmaplab replay
   TRACE --policy all`` (target: well under the 6.9 s one policy took when issue #15 was
   filed).  Each the median of --repeat fresh processes.
3. Sweep scaling: the same sweep of generated builds on a LocalCluster with 1 and
   with 2 workers (target: at least 1.7x faster on 2).
4. ``rmaplab compare`` on 1,000 vs 1,000 runs of real/user/sys (times at 10 ms
   resolution, so with ties) in a fresh process: wall time including start-up
   (target: under 5 s) and peak memory; then the worst case for the Hodges-Lehmann
   selection: identical groups with heavy ties (three distinct user times, a shift of
   exactly 0 s).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from rmaplab import workloads
from rmaplab.model import Kernel


def _python(code: str, pure: bool) -> str:
    """Run ``code`` in a fresh interpreter, with the interpreted reference if ``pure``."""
    import os

    env = dict(os.environ)
    env.pop("RMAPLAB_PURE", None)
    if pure:
        env["RMAPLAB_PURE"] = "1"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env)
    if out.returncode != 0:
        raise RuntimeError(f"benchmark child failed: {out.stderr.strip()[-2000:]}")
    return out.stdout


def model_fork_ns_in(vmas: int, forks: int, pure: bool) -> float:
    """:func:`model_fork_ns` in a fresh process (the reference if ``pure``)."""
    code = (f"from rmaplab.bench import model_fork_ns; "
            f"print(model_fork_ns({vmas}, {forks}))")
    return float(_python(code, pure).split()[-1])


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


def replay_speed(path: Path, policy: str, pure: bool = False, check: str = "off",
                 repeat: int = 3) -> dict:
    """Load and replay as ``rmaplab replay`` does (traces.load_for_replay: parsed and
    decoded, the cache off), each of ``repeat`` times in a fresh process, so that peak RSS
    is the replay's own (``maxrss_children_mb``: of the largest process that parsed a slice
    of the trace for it, traces._decode_in_slices; 0 if none).  ``pure``: the interpreted
    reference; ``check``: the invariant checks after each event, none by default: the
    model's own speed.  Times are the
    median of the runs (this is a shared VM: single runs vary by up to 40%), with every
    run's kept."""
    code = (
        "import json,os,resource,sys,time\n"
        "from rmaplab import traces\n"
        "os.environ['RMAPLAB_TRACE_CACHE']='0'\n"           # parsed: the cold load
        f"t0=time.perf_counter(); ev=traces.load_for_replay({str(path)!r}); t1=time.perf_counter()\n"
        f"r=traces.replay(ev, policy={policy!r}, check={check!r}); t2=time.perf_counter()\n"
        "print(json.dumps({'events': len(ev), 'load_s': t1-t0, 'replay_s': t2-t1,"
        " 'maxrss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss/1024,"
        " 'maxrss_children_mb': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss/1024}))\n")
    runs = [json.loads(_python(code, pure).strip().splitlines()[-1]) for _ in range(repeat)]
    res = {"events": runs[0]["events"], "runs": len(runs)}
    for key in ("load_s", "replay_s", "maxrss_mb", "maxrss_children_mb"):
        res[key] = statistics.median(r[key] for r in runs)
        res[f"{key}_each"] = [r[key] for r in runs]
    res["events_per_s"] = res["events"] / res["replay_s"]
    res["events_per_s_best"] = res["events"] / min(res["replay_s_each"])
    return res


def load_speed(path: Path) -> dict:
    """The trace loaded in a fresh process: parsing (cache off), parsing and writing the
    parsed-trace cache, then reading it back (what every later load of the trace costs);
    each for traces.load (event dicts: notebooks, capture) and traces.load_for_replay
    (decoded events: ``rmaplab replay``), ``*_decoded_s``."""
    code = (
        "import json,os,tempfile,time\n"
        "from rmaplab import traces\n"
        "os.environ['RMAPLAB_CACHE']=tempfile.mkdtemp(prefix='rmaplab-bench-')\n"
        "out={}\n"
        "for load, suffix in ((traces.load, ''), (traces.load_for_replay, '_decoded')):\n"
        "  for key, env in (('parse','0'), ('parse_and_cache','1'), ('cached','1')):\n"
        "    os.environ['RMAPLAB_TRACE_CACHE']=env\n"
        f"    t=time.perf_counter(); ev=load({str(path)!r}); out[key+suffix+'_s']=time.perf_counter()-t\n"
        "    out['events']=len(ev); del ev\n"
        "import shutil; shutil.rmtree(os.environ['RMAPLAB_CACHE'])\n"
        "print(json.dumps(out))\n")
    res = json.loads(_python(code, pure=False).strip().splitlines()[-1])
    res["events_per_s_parsed"] = res["events"] / res["parse_s"]
    return res


def replay_all_wall(path: Path, pure: bool = False, cached: bool = False,
                    repeat: int = 3) -> dict:
    """``rmaplab replay TRACE --policy all --json`` (default checks, every policy on the
    CPUs) in a fresh process, ``repeat`` times: wall seconds from start-up to the printed
    result, the median and every run's.  The trace is parsed (cache off) unless
    ``cached``: then read from a parsed-trace cache that a first load (not timed) wrote."""
    code = ("import contextlib, io, os, shutil, sys, tempfile, time\n"
            "from rmaplab import traces\n"
            "from rmaplab.cli import main\n"
            "os.environ['RMAPLAB_CACHE'] = tempfile.mkdtemp(prefix='rmaplab-bench-')\n"
            f"os.environ['RMAPLAB_TRACE_CACHE'] = {'1' if cached else '0'!r}\n"
            f"if {cached}: traces.load_for_replay({str(path)!r})\n"
            "start = time.perf_counter()\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            f"    rc = main(['replay', {str(path)!r}, '--policy', 'all', '--json'])\n"
            "print(time.perf_counter() - start, rc)\n"
            "shutil.rmtree(os.environ['RMAPLAB_CACHE'])\n")
    walls, inside, status = [], [], []
    for _ in range(repeat):
        start = time.perf_counter()
        out = _python(code, pure).split()
        walls.append(time.perf_counter() - start)
        inside.append(float(out[-2]))
        status.append(int(out[-1]))
    return {"trace": str(path), "cached": cached, "runs": repeat,
            "wall_s": statistics.median(walls), "in_process_s": statistics.median(inside),
            "in_process_s_each": inside, "exit_status": max(status)}


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


def compare_speed(runs: int = 1000, seed: int = 0, identical_ties: bool = False) -> dict:
    """`rmaplab compare --json` on a generated file of `runs` + `runs` timed runs.

    ``identical_ties``: both sides the same heavily tied runs (10 ms resolution, user
    times 1.00 to 1.02 s), so every Hodges-Lehmann quantity is an exact tie at 0 s.
    """
    import tempfile

    import numpy as np

    rng = np.random.default_rng(seed)
    blocks = []
    for label, scale in (("A", 1.0), ("B", 1.0 if identical_ties else 0.99)):
        blocks.append(f"{label}:\n")
        if identical_ties:
            rng = np.random.default_rng(seed)      # B repeats A's runs exactly
        for _ in range(runs):
            mean, sd = (([10.0, 1.01, 2.0], [0.02, 0.008, 0.01]) if identical_ties
                        else ([170.0, 1075.0, 112.0], [1.5, 4.0, 1.5]))
            real, user, sys_ = scale * rng.normal(mean, sd)
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
    return {"runs_per_side": runs, "identical_ties": identical_ties, "wall_s": wall, **res}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m rmaplab.bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--vmas", type=int, default=64)
    p.add_argument("--forks", type=int, default=2000)
    p.add_argument("--trace", type=Path, help="trace to replay (default: the recorded build)")
    p.add_argument("--policy", default="v6.0")
    p.add_argument("--no-sweep", action="store_true", help="skip the sweep-scaling benchmark")
    p.add_argument("--replay-all", action="store_true",
                   help="also time `rmaplab replay TRACE --policy all` (fast path, and the "
                        "reference unless --no-reference: minutes)")
    p.add_argument("--no-reference", action="store_true",
                   help="skip the interpreted reference (RMAPLAB_PURE=1) runs")
    p.add_argument("--only-compare", action="store_true",
                   help="run only the `rmaplab compare` benchmark")
    p.add_argument("--compare-runs", type=int, default=1000, metavar="N",
                   help="runs per side for the compare benchmark (1000)")
    p.add_argument("--repeat", type=int, default=3, metavar="N",
                   help="fresh-process runs of each replay measure, the median reported (3)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if args.trace is not None and not args.trace.is_file():
        p.error(f"--trace {args.trace}: no such trace file")   # before minutes of benchmarks
    if args.vmas < 1 or args.forks < 1 or args.compare_runs < 2 or args.repeat < 1:
        p.error("--vmas, --forks and --repeat must be at least 1, --compare-runs at least 2")
    from rmaplab.model import POLICIES

    if args.policy not in POLICIES:
        p.error(f"--policy {args.policy}: not a built-in policy ({', '.join(POLICIES)})")

    if args.only_compare:
        results = {"compare": compare_speed(args.compare_runs),
                   "compare_ties": compare_speed(args.compare_runs, identical_ties=True)}
        _print(results, args)
        return 0
    results: dict = {"vmas": args.vmas, "forks": args.forks}
    from rmaplab.model import fastpath

    status = fastpath.status_in_child()          # what the model_* children run
    results["fastpath"] = {"compiled": status["compiled"], "reason": status["reason"]}
    # Model (as it runs: compiled if built), reference and kernel, each measured in turn
    # over the same minutes: the ratios share the machine's load.
    results["model_ns_per_fork"] = model_fork_ns_in(args.vmas, args.forks, pure=False)
    if not args.no_reference:
        results["reference_ns_per_fork"] = model_fork_ns_in(args.vmas, args.forks, pure=True)
    try:
        (results["kernel_ns_per_fork"], results["kernel_ns_min"],
         results["kernel_ns_max"]) = kernel_fork_ns(args.vmas, args.forks)
        results["model_over_kernel"] = results["model_ns_per_fork"] / results["kernel_ns_per_fork"]
        if "reference_ns_per_fork" in results:
            results["reference_over_kernel"] = (results["reference_ns_per_fork"]
                                                / results["kernel_ns_per_fork"])
    except Exception as e:  # no gcc here: report, do not hide
        results["kernel_error"] = str(e)
    trace = args.trace
    if trace is None:
        from rmaplab.measure.data import measurement_dirs

        dirs = [d for d in measurement_dirs("traces") if (d / "trace.jsonl.gz").exists()]
        trace = dirs[-1] / "trace.jsonl.gz" if dirs else None
    if trace is not None:
        results["load"] = {"trace": str(trace), **load_speed(trace)}
        n = args.repeat
        results["replay"] = {"trace": str(trace), **replay_speed(trace, args.policy, repeat=n)}
        # What `rmaplab replay TRACE` runs by default: the incremental invariant checks.
        results["replay_checked"] = {"trace": str(trace), **replay_speed(
            trace, args.policy, check="incremental", repeat=n)}
        if not args.no_reference:       # minutes a run: once
            results["replay_reference"] = {"trace": str(trace),
                                           **replay_speed(trace, args.policy, pure=True,
                                                          repeat=1)}
        if args.replay_all:
            results["replay_all"] = replay_all_wall(trace, repeat=n)
            results["replay_all_cached"] = replay_all_wall(trace, cached=True, repeat=n)
            if not args.no_reference:
                results["replay_all_reference"] = replay_all_wall(trace, pure=True, repeat=1)
    if not args.no_sweep:
        results["sweep"] = sweep_speedup()
    results["compare"] = compare_speed(args.compare_runs)
    results["compare_ties"] = compare_speed(args.compare_runs, identical_ties=True)
    results["maxrss_mb_bench"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    _print(results, args)
    return 0


def _print(results: dict, args) -> None:
    if args.json:
        print(json.dumps(results, indent=1))
        return
    if "fastpath" in results:
        fp = results["fastpath"]
        print(f"model runs: {'compiled (fast path)' if fp['compiled'] else 'interpreted'}"
              f" ({fp['reason']}); reference = interpreted sources (RMAPLAB_PURE=1)")
    if "model_ns_per_fork" in results:
        print(f"model    : {results['model_ns_per_fork'] / 1000:8.1f} µs per fork+exit "
              f"({args.vmas} faulted VMAs)")
        if "reference_ns_per_fork" in results:
            print(f"reference: {results['reference_ns_per_fork'] / 1000:8.1f} µs per fork+exit")
        if "kernel_ns_per_fork" in results:
            print(f"kernel   : {results['kernel_ns_per_fork'] / 1000:8.1f} µs per "
                  f"fork+_exit+wait (median of 11; {results['kernel_ns_min'] / 1000:.1f} to "
                  f"{results['kernel_ns_max'] / 1000:.1f})")
            print(f"ratio model/kernel: {results['model_over_kernel']:.2f} (target <= 1.0)"
                  + (f"; reference/kernel: {results['reference_over_kernel']:.2f}"
                     if "reference_over_kernel" in results else ""))
    if "load" in results:
        r = results["load"]
        print(f"load {r['events']:,} events: parsed {r['parse_s']:.2f} s "
              f"({r['events_per_s_parsed']:,.0f} events/s), parsed and cached "
              f"{r['parse_and_cache_s']:.2f} s, from the cache {r['cached_s']:.2f} s")
        print(f"load for replay (decoded events): parsed {r['parse_decoded_s']:.2f} s, "
              f"parsed and cached {r['parse_and_cache_decoded_s']:.2f} s, "
              f"from the cache {r['cached_decoded_s']:.2f} s")
    for key, label in (("replay", "model"), ("replay_checked", "model, incremental checks"),
                       ("replay_reference", "reference")):
        if key in results:
            r = results[key]
            print(f"replay ({args.policy}, {label}): {r['events']:,} events in "
                  f"{r['replay_s']:.2f} s = {r['events_per_s']:,.0f} events/s "
                  f"(median of {r['runs']}; best {r['events_per_s_best']:,.0f}), "
                  f"load {r['load_s']:.2f} s, peak RSS {r['maxrss_mb']:.0f} MB"
                  + (f" (and {r['maxrss_children_mb']:.0f} MB in a process parsing a slice)"
                     if r.get("maxrss_children_mb") else ""))
    for key, label in (("replay_all", "model, trace parsed"),
                       ("replay_all_cached", "model, parsed trace cached"),
                       ("replay_all_reference", "reference, trace parsed")):
        if key in results:
            r = results[key]
            print(f"replay --policy all ({label}): {r['in_process_s']:.1f} s "
                  f"(median of {r['runs']}: "
                  + ", ".join(f"{x:.1f}" for x in r["in_process_s_each"])
                  + f"; exit status {r['exit_status']})")
    if "sweep" in results:
        w = results["sweep"]
        print(f"sweep of {w['cells']} cells: {w['seconds_1_worker']:.1f} s on 1 worker, "
              f"{w['seconds_2_workers']:.1f} s on 2: {w['speedup']:.2f}x")
    for key in ("compare", "compare_ties"):
        if key not in results:
            continue
        c = results[key]
        what = "identical groups, heavy ties" if c["identical_ties"] else "real, user, sys"
        print(f"compare {c['runs_per_side']:,} vs {c['runs_per_side']:,} runs ({what}): "
              f"{c['wall_s']:.2f} s wall including start-up (target < 5 s), "
              f"{c['in_process_s']:.2f} s in process, {c['cpu_s']:.2f} s CPU, "
              f"peak RSS {c['maxrss_mb']:.0f} MB")


if __name__ == "__main__":
    raise SystemExit(main())
