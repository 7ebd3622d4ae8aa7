"""`rmaplab measure`, `trace`, `micro`, `forkcost`, `kbuild`: the live kernel."""

from __future__ import annotations

import argparse
from pathlib import Path

from rmaplab.cli._registry import command, json_out
from rmaplab.errors import RmaplabError


@command("measure")
def _measure(sub) -> None:
    p = sub.add_parser(
        "measure", help="count anon_vma/AVC/VMA allocations and time a command on this kernel",
        description="Run CMD under perf stat with tracepoint counters: anon_vma allocations at "
                    "anon_vma_fork and __anon_vma_prepare, anon_vma_chains at the three rmap "
                    "call sites (the merged slab cache's other users excluded), vm_area_struct, "
                    "mm-copying forks, forks, execs, and real/user/sys.  Raw perf output and host "
                    "metadata go to a new directory under data/raw/measure/ (see --out).",
        usage="rmaplab measure [--runs N] [--warmups N] [--json] [--out DIR] [--no-record] "
              "-- CMD [ARG...]",
    )
    p.add_argument("--runs", type=int, default=1, help="measured runs (default 1)")
    p.add_argument("--warmups", type=int, default=0, help="unrecorded-in-stats warm-up runs")
    p.add_argument("--label", help="name for the measurement directory")
    p.add_argument("--out", type=Path, help="parent directory (default data/raw/measure)")
    p.add_argument("--no-record", action="store_true", help="do not write raw data")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("cmd", nargs=argparse.REMAINDER, help="-- CMD [ARG...]")
    p.set_defaults(func=_run_measure)


def _run_measure(args) -> int:
    from rmaplab.measure import run

    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        raise RmaplabError("no command to measure", hint="rmaplab measure -- CMD [ARG...]")
    runs, where = run.measure(cmd, runs=args.runs, warmups=args.warmups, label=args.label,
                              out_root=args.out, record=not args.no_record)
    result = run.summary(runs)
    from rmaplab.measure import host

    result["host"] = host.describe()
    result["raw"] = str(where) if where else None
    if args.json:
        json_out(result)
        return 0
    keys = ["anon_vma_alloc", "anon_vma_fork", "anon_vma_prepare", "avc_alloc", "avc_fork",
            "avc_clone", "avc_prepare", "vma_alloc", "forks", "mm_forks", "execs"]
    for k in keys:
        if k in result:
            print(f"{k:<17} {int(result[k]):>12,}")
    for k in ("real", "user", "sys"):
        if k in result:
            print(f"{k:<17} {result[k]:>12.3f} s")
    print(f"runs: {len(runs)}, failed: {result['failed_runs']}" + (f"; raw data: {where}"
                                                                   if where else ""))
    return 0


@command("trace")
def _trace(sub) -> None:
    p = sub.add_parser(
        "trace", help="record a workload with perf and convert it to an event trace",
        description="perf record CMD (syscalls mmap/munmap/mprotect/brk/madvise/mremap, task and "
                    "exec/exit tracepoints, write page faults, mmap side-band records, and the "
                    "kmem counters of `rmaplab measure`), then convert it to the JSONL event "
                    "format, keeping only the faults that can change anon_vma state.  Writes "
                    "trace.jsonl.gz, live_counts.json (the same run's kernel counts) and "
                    "metadata.json to a new directory under data/raw/traces/ (or -o DIR).",
        usage="rmaplab trace [-o DIR] [--label L] [--perf-data FILE] -- CMD [ARG...]",
    )
    p.add_argument("-o", "--output", type=Path, help="output directory (must not exist)")
    p.add_argument("--label", help="name for the default output directory")
    p.add_argument("--perf-data", type=Path,
                   help="convert this existing perf.data instead of recording CMD")
    p.add_argument("--cwd", type=Path, help="run CMD in this directory")
    p.add_argument("cmd", nargs=argparse.REMAINDER, help="-- CMD [ARG...]")
    p.set_defaults(func=_run_trace)


def _run_trace(args) -> int:
    from datetime import UTC, datetime

    from rmaplab.measure import capture
    from rmaplab.measure.run import slug
    from rmaplab.paths import raw_dir

    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd and args.perf_data is None:
        raise RmaplabError("no command to trace", hint="rmaplab trace -- CMD [ARG...]")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    target = args.output or raw_dir() / "traces" / f"{stamp}-{slug(args.label or ' '.join(cmd))}"
    events, conv = capture.trace(cmd, target, cwd=args.cwd, perf_data=args.perf_data)
    print(f"{len(events):,} events ({conv.stats['faults']:,} faults seen, "
          f"{conv.stats['faults_dropped']:,} dropped as irrelevant) -> {target}")
    return 0


@command("micro")
def _micro(sub) -> None:
    from rmaplab.workloads import WORKLOADS

    p = sub.add_parser(
        "micro", help="run the micro workloads on this kernel and compare with the model",
        description="Compile avwork.c, run every micro workload with K and with 0 region VMAs "
                    "under perf (interleaved, repeated), and compare the live (K,N)-(0,N) "
                    "deltas by call site with the v6.0 model's.  --record keeps the raw data "
                    "in data/raw/micro/.",
    )
    p.add_argument("-k", type=int, default=16, help="VMAs in the region (16)")
    p.add_argument("-n", type=int, default=10, help="forks or generations (10)")
    p.add_argument("--mode", action="append", choices=list(WORKLOADS),
                   help="workload(s) (default: all)")
    p.add_argument("--repeats", type=int, default=3, help="runs per condition (3)")
    p.add_argument("--record", action="store_true", help="write raw data to data/raw/micro/")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_run_micro)


def _run_micro(args) -> int:
    import pandas as pd

    from rmaplab.measure import micro, run
    from rmaplab.paths import raw_dir

    modes = tuple(args.mode or micro.MODES)
    runs, where = run.campaign(micro.conditions(args.k, args.n, modes), runs=args.repeats,
                               record=args.record, label=f"micro-k{args.k}-n{args.n}",
                               out_root=raw_dir() / "micro",
                               extra_meta={"k": args.k, "n": args.n, "modes": list(modes)})
    table = micro.compare(pd.DataFrame([r.row() for r in runs]), args.k, args.n, modes)
    if args.json:
        json_out(table.to_dict(orient="records"))
    else:
        print(table.to_string(index=False))
        print(f"{int(table['match'].sum())} of {len(table)} counters agree exactly"
              + (f"; raw data: {where}" if where else ""))
    return 0 if table["match"].all() else 1


@command("forkcost")
def _forkcost(sub) -> None:
    p = sub.add_parser(
        "forkcost", help="measure what one anon_vma costs a fork on this kernel",
        description="Time fork+_exit+waitpid of a process with K one-page VMAs with and without "
                    "an anon_vma (avwork forkcost), interleaved; fit the per-anon_vma cost "
                    "(OLS interaction term, HC3 95%% CI).  Raw data go to data/raw/cost/.",
    )
    p.add_argument("--ks", default="0,32,128", help="VMA counts (0,32,128)")
    p.add_argument("--forks", type=int, default=200, help="forks per run (200)")
    p.add_argument("--repeats", type=int, default=40, help="runs per (K, state) (40)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-record", action="store_true")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_run_forkcost)


def _run_forkcost(args) -> int:
    from rmaplab.measure import cost

    try:
        ks = tuple(int(x) for x in args.ks.split(","))
    except ValueError:
        raise RmaplabError(f"--ks must be integers separated by commas, got {args.ks!r}") from None
    df, where = cost.run(ks=ks, forks=args.forks, repeats=args.repeats, seed=args.seed,
                         record=not args.no_record)
    per = cost.per_anon_vma_cost(df)
    if args.json:
        json_out({**per, "raw": str(where) if where else None})
    else:
        print(f"per anon_vma at fork+exit: {per['ns_per_anon_vma']:.0f} ns "
              f"[{per['ci_low']:.0f}, {per['ci_high']:.0f}] (95% CI, {per['n']} runs); "
              f"per VMA without anon_vma: {per['ns_per_vma']:.0f} ns"
              + (f"; raw data: {where}" if where else ""))
    return 0


@command("kbuild")
def _kbuild(sub) -> None:
    p = sub.add_parser(
        "kbuild", help="kernel-build campaign: builds with each recipe shell, interleaved",
        description="Install Debian's linux-source-6.12 and its build dependencies if missing "
                    "(root), unpack it into $RMAPLAB_CACHE (default ~/.cache/rmaplab), `make "
                    "CONFIG` (tinyconfig), then measure `make -s -jJOBS` after an unmeasured "
                    "`make -s clean`, once per shell (sh = /bin/sh, bash = SHELL=/bin/bash, "
                    "dash2019 = SHELL=dash-2019, built on demand: forks like Debian 10's dash), "
                    "in a seeded random order.  Takes about 80 s per tinyconfig run on 2 cores. "
                    "Results go to data/raw/kbuild/ (raw data: commit them).  --trace records "
                    "one build per shell with `rmaplab trace` into data/raw/traces/ instead.",
    )
    p.add_argument("--runs", type=int, default=10, help="measured runs per shell (default 10)")
    p.add_argument("--warmups", type=int, default=1, help="warm-up runs per shell (default 1)")
    p.add_argument("--jobs", type=int, default=2, help="make -j (default 2)")
    p.add_argument("--seed", type=int, default=2019, help="seed of the run order")
    p.add_argument("--config", default="tinyconfig",
                   help="make targets that configure the tree (default tinyconfig), e.g. "
                        "defconfig")
    p.add_argument("--shells", default="sh,bash",
                   help="recipe shells, comma-separated: sh, bash, dash2019 (default sh,bash)")
    p.add_argument("--label", help="name of the measurement (default CONFIG-jJOBS)")
    p.add_argument("--trace", action="store_true",
                   help="record one traced build per shell (data/raw/traces/<time>-kbuild-"
                        "[CONFIG-]SHELL) instead of counting")
    p.add_argument("--out", type=Path, help="parent directory (default data/raw/kbuild)")
    p.set_defaults(func=_run_kbuild)


def _run_kbuild(args) -> int:
    from rmaplab.measure import kbuild, run
    from rmaplab.paths import raw_dir

    shells = tuple(s.strip() for s in args.shells.split(",") if s.strip())
    bad = [s for s in shells if s not in kbuild.SHELLS]
    if bad or not shells:
        raise RmaplabError(f"unknown shell {bad[0] if bad else args.shells!r}",
                           hint="one or more of: " + ", ".join(kbuild.SHELLS))
    tree = kbuild.ensure_source(args.config)
    meta = kbuild.describe(tree, args.config, shells)
    if args.trace:
        return _trace_kbuild(args, tree, shells, meta)
    label = args.label or kbuild.config_slug(args.config)
    runs, where = run.campaign(kbuild.conditions(tree, args.jobs, shells), runs=args.runs,
                               warmups=args.warmups, seed=args.seed,
                               label=f"{label}-j{args.jobs}",
                               out_root=args.out or raw_dir() / "kbuild", extra_meta=meta)
    failed = sum(1 for r in runs if r.failed)
    print(f"{len(runs)} runs, {failed} failed; raw data: {where}")
    return 0 if not failed else 1


def _trace_kbuild(args, tree: Path, shells: tuple[str, ...], meta: dict) -> int:
    import subprocess
    from datetime import UTC, datetime

    from rmaplab.measure import capture, kbuild
    from rmaplab.paths import raw_dir

    for shell in shells:
        subprocess.run(["make", "-s", "clean"], cwd=tree, check=True, capture_output=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        target = (args.out or raw_dir() / "traces") / f"{stamp}-{kbuild.trace_label(args.config, shell)}"
        events, conv = capture.trace(kbuild.build_command(shell, args.jobs), target, cwd=tree,
                                     extra_meta=meta)
        print(f"{shell}: {len(events):,} events -> {target}")
    return 0
