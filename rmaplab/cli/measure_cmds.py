"""`rmaplab measure`, `trace`, `micro`, `forkcost`, `kbuild`: the live kernel."""

from __future__ import annotations

import argparse
import os
import re
import shlex
import sys
from pathlib import Path
from typing import Any

from rmaplab.cli import _args
from rmaplab.cli._registry import command, json_out
from rmaplab.errors import RmaplabError

# Bounds that keep the workloads inside vm.max_map_count (65530) and the process table.
MAX_REGION_VMAS = 10_000
MAX_FORKS = 1_000


@command("measure")
def _measure(sub) -> None:
    p = sub.add_parser(
        "measure", help="count anon_vma/AVC/VMA allocations and time commands on this kernel; "
                        "A/B several commands in one call",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run each command with perf stat counting tracepoints: anon_vma allocations "
                    "at anon_vma_fork and __anon_vma_prepare, anon_vma_chains at the three rmap "
                    "call sites (the merged slab cache's other users excluded), vm_area_struct, "
                    "mm-copying forks, forks, execs; and the command's own real/user/sys and "
                    "exit status.  Several commands (-n NAME CMD, or -- CMD... -- CMD...) are "
                    "run --runs times each after --warmups warm-ups, interleaved in a random "
                    "order drawn from --seed, with --prepare run unmeasured before every run; "
                    "each gets a summary (median, mean ± SD, range).  Raw perf output, the "
                    "commands' output and host metadata go to a new directory under "
                    "data/raw/measure/ (see --out), also when a command fails; `rmaplab compare "
                    "DIR` compares its commands' times and allocation counts.\n\n"
                    "exit status: 0 if every run succeeded (or -i), else the first failed run's "
                    "own status (128+N if killed by signal N); 2 for bad input, a command not "
                    "found, or a failure of rmaplab.",
        usage="rmaplab measure [--runs N] [--warmups N] [--prepare CMD]... [--seed N] [-i] "
              "[--label L] [--out DIR] [--no-record] [--json]\n"
              "                       (-n NAME CMD)... | -- CMD [ARG...] [-- CMD [ARG...]]...",
    )
    p.add_argument("-n", "--command", nargs=2, action="append", metavar=("NAME", "CMD"),
                   default=[], help="a command to measure, named; CMD is split like a shell "
                                    "line (no shell runs it: use sh -c '...' for one)")
    p.add_argument("--runs", type=_args.runs, default=1,
                   help="measured runs of each command (default 1)")
    p.add_argument("--warmups", type=_args.warmups, default=0,
                   help="warm-up runs of each command, recorded but left out of the summaries "
                        "(default 0)")
    p.add_argument("--prepare", action="append", default=[], metavar="CMD",
                   help="run (unmeasured) before every run: once for all commands, or once per "
                        "command in their order")
    p.add_argument("--seed", type=_args.seed, default=0,
                   help="seed of the interleaved run order (default 0)")
    p.add_argument("-i", "--ignore-failure", action="store_true",
                   help="exit 0 even if a measured command fails (its status is recorded)")
    p.add_argument("--label", type=_args.label, help="name for the measurement directory")
    p.add_argument("--out", type=_args.output_dir, metavar="DIR",
                   help="parent directory (default data/raw/measure)")
    p.add_argument("--no-record", action="store_true", help="do not write raw data")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("cmd", nargs=argparse.REMAINDER, help="-- CMD [ARG...] [-- CMD [ARG...]]...")
    p.set_defaults(func=_run_measure)


def command_of(args) -> list[str]:
    """The CMD after ``--`` (argparse.REMAINDER keeps the ``--``)."""
    return args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd


def _split_line(text: str, what: str) -> list[str]:
    try:
        argv = shlex.split(text)
    except ValueError as e:
        raise RmaplabError(f"{what} {text!r}: {e}") from None
    if not argv:
        raise RmaplabError(f"{what} is empty")
    return argv


def measured_commands(args) -> list[tuple[str, list[str]]]:
    """(label, argv) of every command: -n NAME CMD first, then each --separated CMD."""
    for name, _ in args.command:
        if not re.search(r"[A-Za-z0-9]", name) or "," in name:
            # compare --groups A,B names two of them; the directory name is made of them
            raise RmaplabError(f"-n {name!r}: a name needs a letter or digit and no comma")
    out = [(name, _split_line(line, f"-n {name}")) for name, line in args.command]
    rest = command_of(args)
    while rest:
        cut = rest.index("--") if "--" in rest else len(rest)
        if cut == 0:
            raise RmaplabError("an empty command between two --")
        out.append((" ".join(rest[:cut]), rest[:cut]))
        rest = rest[cut + 1:]
    if not out:
        raise RmaplabError("no command to measure",
                           hint="rmaplab measure -- CMD [ARG...], or -n NAME 'CMD' ...")
    if len(out) == 1 and not args.command and args.label:
        out = [(args.label, out[0][1])]          # one command: --label names it too
    names = [name for name, _ in out]
    twice = next((n for n in names if names.count(n) > 1), None)
    if twice is not None:
        raise RmaplabError(f"two commands are named {twice!r}; name them apart with -n")
    return out


def _run_measure(args) -> int:
    from rmaplab.measure import host, run

    if args.no_record and args.out is not None:
        raise RmaplabError("--out and --no-record contradict each other")
    commands = measured_commands(args)
    prepare = [_split_line(line, "--prepare") for line in args.prepare]
    for argv in prepare:
        try:
            run.resolve_command(argv)
        except RmaplabError as e:
            raise RmaplabError(f"--prepare: {e}") from None
    if len(prepare) not in (0, 1, len(commands)):
        raise RmaplabError(f"{len(prepare)} --prepare for {len(commands)} commands: give one "
                           "for all, or one per command")
    conditions = [run.Condition(label, cmd, before=(prepare[i] if len(prepare) > 1 else
                                                    prepare[0] if prepare else None))
                  for i, (label, cmd) in enumerate(commands)]
    runs, where = run.campaign(conditions, runs=args.runs, warmups=args.warmups, seed=args.seed,
                               label=args.label or "-vs-".join(n for n, _ in commands),
                               out_root=args.out, record=not args.no_record)
    status = 0 if args.ignore_failure else run.exit_status(runs)
    if len(conditions) == 1:
        result = run.summary(runs)
        result.update(host=host.describe(), raw=str(where) if where else None)
        if args.json:
            json_out(result)
            return status
        _print_summary(result)
    else:
        per = run.summaries(runs, conditions)
        if args.json:
            json_out({"commands": per, "seed": args.seed, "exit_status": run.exit_status(runs),
                      "host": host.describe(), "raw": str(where) if where else None})
            return status
        for s in per:
            print(f"{s['label']}: {' '.join(s['cmd'])}")
            _print_summary(s, indent="  ")
    failed = sum(1 for r in runs if r.failed and not r.warmup)
    print(f"runs: {len(runs)}" + (f" in a random order (seed {args.seed})"
                                  if len(conditions) > 1 else "")
          + f", failed: {failed}" + (f"; raw data: {where}" if where else ""))
    if where and len(conditions) > 1:
        print(f"compare two of them: rmaplab compare {where} --groups "
              f"{conditions[0].label!r},{conditions[1].label!r}" if len(conditions) > 2
              else f"compare them: rmaplab compare {where}")
    return status


def _print_summary(result: dict[str, Any], indent: str = "") -> None:
    from rmaplab.stats.report import unit_for

    spreads = result.get("spread", {})
    for k in ("real", "user", "sys"):
        if k in spreads:
            s = spreads[k]
            scale, unit = unit_for(max(s["median"], s["mean"]))
            print(f"{indent}{k:<17} {s['median'] / scale:>10.3f} {unit:<2} median;  mean "
                  f"{s['mean'] / scale:.3f} ± {s['sd'] / scale:.3f} {unit}, range "
                  f"{s['min'] / scale:.3f} .. {s['max'] / scale:.3f} {unit} ({s['n']} runs)")
    for k in ("anon_vma_alloc", "anon_vma_fork", "anon_vma_prepare", "avc_alloc", "avc_fork",
              "avc_clone", "avc_prepare", "vma_alloc", "forks", "mm_forks", "execs"):
        if k in spreads:
            s = spreads[k]
            rng = "" if s["min"] == s["max"] else f"  (range {s['min']:,.0f} .. {s['max']:,.0f})"
            print(f"{indent}{k:<17} {s['median']:>10,.0f}{rng}")
    failed = [r for r in result["runs"] if r["failed"] and not r["warmup"]]
    if failed:
        print(f"{indent}failed runs: {len(failed)} (exit status "
              + ", ".join(str(r["exit_status"]) for r in failed[:5]) + ")")


@command("trace")
def _trace(sub) -> None:
    p = sub.add_parser(
        "trace", help="record a workload with perf and convert it to an event trace",
        description="perf record CMD (syscalls mmap/munmap/mprotect/brk/madvise/mremap, task and "
                    "exec/exit tracepoints, write page faults, mmap side-band records, and the "
                    "kmem counters of `rmaplab measure`), then convert it to the JSONL event "
                    "format, keeping only the faults that can change anon_vma state.  Writes "
                    "trace.jsonl.gz, live_counts.json (the same run's kernel counts) and "
                    "metadata.json to a new directory under data/raw/traces/ (or -o DIR), also "
                    "when CMD fails; the exit status is then CMD's own.",
        usage="rmaplab trace [-o DIR] [--label L] [--cwd DIR] -- CMD [ARG...]\n"
              "       rmaplab trace [-o DIR] [--label L] --perf-data FILE",
    )
    p.add_argument("-o", "--output", type=_args.new_dir, metavar="DIR",
                   help="output directory (must not exist)")
    p.add_argument("--label", type=_args.label, help="name for the default output directory")
    p.add_argument("--perf-data", type=_args.nonempty_file, metavar="FILE",
                   help="convert this existing perf.data instead of recording CMD")
    p.add_argument("--cwd", type=_args.existing_dir, metavar="DIR",
                   help="run CMD in this directory")
    p.add_argument("cmd", nargs=argparse.REMAINDER, help="-- CMD [ARG...]")
    p.set_defaults(func=_run_trace)


def _run_trace(args) -> int:
    from rmaplab.measure import perf, record, run
    from rmaplab.paths import raw_dir

    cmd = command_of(args)
    if args.perf_data is not None and cmd:
        raise RmaplabError("give either --perf-data FILE or a command to record, not both")
    if args.perf_data is not None and args.cwd is not None:
        raise RmaplabError("--cwd applies to a command to record, not to --perf-data")
    if not cmd and args.perf_data is None:
        raise RmaplabError("no command to trace", hint="rmaplab trace -- CMD [ARG...]")
    parent = args.output.parent if args.output else raw_dir() / "traces"
    name = args.output.name if args.output else record.run_name(args.label or " ".join(cmd))
    record.check_destination(parent)
    if args.perf_data is None:
        run.resolve_command(cmd, args.cwd)
        perf.check()
    events, conv, where, meta, status = _record_trace(cmd, parent, name, args.cwd,
                                                      args.perf_data, unique=args.output is None)
    print(f"{len(events):,} events ({conv.stats['faults']:,} faults seen, "
          f"{conv.stats['faults_dropped']:,} dropped as irrelevant) -> {where}")
    if status:
        print(f"rmaplab trace: the command failed ({run.status_text(meta['record']['exit_status'])}); "
              "its trace is recorded all the same", file=sys.stderr)
    return status



def _record_trace(cmd: list[str], parent: Path, name: str, cwd: Path | None,
                  perf_data: Path | None, extra_meta: dict[str, Any] | None = None,
                  unique: bool = True) -> tuple[list[dict], Any, Path, dict[str, Any], int]:
    """Record ``cmd`` with perf (or convert ``perf_data``) into the trace directory
    ``parent/name`` (added to the manifest under data/raw): (events, converter, directory,
    metadata, the command's exit status as the shell reports it)."""
    import shutil
    import tempfile

    from rmaplab import atomic
    from rmaplab.measure import capture, host, record, run
    from rmaplab.paths import cache_dir

    meta: dict[str, Any] = {"host": host.describe(), "command": cmd,
                            "cwd": str(cwd) if cwd else None,
                            # the locale decides which locale files every program maps, and
                            # so the mmap layout (notes/uml-prepare-gap-findings.md)
                            "locale_env": {k: v for k, v in os.environ.items()
                                           if k in ("LANG", "LANGUAGE") or k.startswith("LC_")},
                            "record_events": capture.RECORD_EVENTS, **(extra_meta or {})}
    status = 0
    scratch = None
    if perf_data is not None:
        data = perf_data
    else:
        cache = cache_dir()
        cache.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix="trace-", dir=cache if atomic.writable_error(
            cache) is None else None))
        data = scratch / "perf.data"
        try:
            meta["record"] = capture.record(cmd, data, cwd=cwd)
        except BaseException:
            shutil.rmtree(scratch, ignore_errors=True)
            raise
        status = run.shell_status(meta["record"]["exit_status"])
    meta["perf_data"] = str(data)
    try:
        print(f"converting {data} ...", file=sys.stderr, flush=True)
        events, conv = capture.convert(
            capture.perf_script_lines(data),
            progress=lambda n: print(f"  {n:,} perf lines", file=sys.stderr, flush=True))
        where = record.save(parent, name, lambda d: capture.write_outputs(d, events, conv, meta),
                            unique=unique)
    except BaseException as e:
        if scratch is None:
            raise
        # The recording is the measurement: keep it when what follows fails.
        kept = f"the recording is kept in {data} (convert it with `rmaplab trace --perf-data " \
               f"{data}`)"
        if isinstance(e, RmaplabError):
            raise RmaplabError(f"{e}; {kept}") from None
        print(f"rmaplab trace: {kept}", file=sys.stderr)
        raise
    if scratch is not None:
        shutil.rmtree(scratch, ignore_errors=True)
    return events, conv, where, meta, status


@command("micro")
def _micro(sub) -> None:
    from rmaplab.workloads import WORKLOADS

    p = sub.add_parser(
        "micro", help="run the micro workloads on this kernel and compare with the model",
        description="Compile avwork.c, run every micro workload with K and with 0 region VMAs "
                    "under perf (interleaved, repeated), and compare the live (K,N)-(0,N) "
                    "deltas by call site with the v6.0 model's.  --record keeps the raw data "
                    "in data/raw/micro/.  Exit status: 0 if every counter agrees, 1 if not.",
    )
    p.add_argument("-k", type=_args.integer(1, MAX_REGION_VMAS), default=16,
                   help="VMAs in the region (16)")
    p.add_argument("-n", type=_args.integer(1, MAX_FORKS), default=10,
                   help="forks or generations (10)")
    p.add_argument("--mode", action="append", choices=list(WORKLOADS),
                   help="workload(s) (default: all)")
    p.add_argument("--repeats", type=_args.runs, default=3, help="runs per condition (3)")
    p.add_argument("--record", action="store_true", help="write raw data to data/raw/micro/")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_run_micro)


def _run_micro(args) -> int:
    import pandas as pd

    from rmaplab.measure import micro, run
    from rmaplab.paths import raw_dir

    modes = tuple(args.mode or micro.MODES)
    if len(set(modes)) != len(modes):
        twice = next(m for m in modes if modes.count(m) > 1)
        raise RmaplabError(f"--mode {twice} is given twice")
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


@command("mremap-probe")
def _mremap_probe(sub) -> None:
    p = sub.add_parser(
        "mremap-probe", help="which 6.18.y mremap() merge behaviour this kernel has",
        description="Run mremap_merge.c (static) under perf: a faulted VMA moved next to an "
                    "unfaulted one (61f67c230a5e: the merged VMA takes the anon_vma) and a "
                    "forked child's VMA moved next to one (3b617fd3d317: no merge), each "
                    "against a move to a place with no neighbour.  The live deltas and the "
                    "VMAs the program prints are compared with the model under the rules "
                    "'uncowed' (v6.19, 6.18.8+) and 'uncowed-6.16' (v6.16..6.18.7).  Raw data "
                    "go to data/raw/mremap/.",
    )
    p.add_argument("--runs", type=_args.runs, default=2, help="runs per condition (2)")
    p.add_argument("--no-record", action="store_true", help="do not write raw data")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_run_mremap_probe)


def _run_mremap_probe(args) -> int:
    from rmaplab.measure import mremap_merge

    table, verdict, where = mremap_merge.probe(runs=args.runs, record=not args.no_record)
    if args.json:
        json_out({"verdict": verdict, "rows": table.to_dict(orient="records"),
                  "raw": str(where) if where else None})
    else:
        print(table.to_string(index=False))
        if verdict["rule"] is None:
            print("no merge rule of the model explains this kernel")
        else:
            print(f"this kernel behaves as merge rule {verdict['rule']} "
                  f"({verdict['kernels']})" + (f"; raw data: {where}" if where else ""))
    return 0 if verdict["rule"] is not None else 1


@command("forkcost")
def _forkcost(sub) -> None:
    p = sub.add_parser(
        "forkcost", help="measure what anon_vmas and anon_vma_chains cost a fork on this kernel",
        description="--design objects (default): avwork forkdepth over split/sep regions of K "
                    "one-page VMAs with and without an anon_vma, chains of depth 1-4 with live "
                    "ancestors and depth 3-4 with exited ones (anon_vma reuse), so that anon_vmas, "
                    "AVCs and VMAs with an anon_vma per fork vary independently; every condition "
                    "is first counted with perf stat (per-fork allocations by call site), then "
                    "timed (CPU of fork+_exit+waitpid) in a seeded random order, together with "
                    "avwork teardown (children of one parent exiting together vs one at a time). "
                    "Fits ns per anon_vma and per AVC (OLS, HC3 95%% CIs) and the concurrent/"
                    "sequential teardown ratio.  Finished runs are staged; rerunning the same "
                    "command resumes.  --design state: the earlier benchmark (K VMAs with/without "
                    "an anon_vma, depth 1; OLS interaction term, HC3 95%% CI).  Raw data go to a "
                    "new directory under data/raw/objects/ (objects) or data/raw/cost/ (state).",
    )
    p.add_argument("--design", choices=("objects", "state"), default="objects")
    p.add_argument("--ks", type=_args.int_list(0, MAX_REGION_VMAS, ranges=False),
                   default=[0, 32, 128], metavar="K,K,...",
                   help="VMA counts, at least two different ones (0,32,128)")
    p.add_argument("--forks", type=_args.integer(1, 1_000_000), default=None,
                   help="forks per run (objects: 500; state: 200)")
    p.add_argument("--repeats", type=_args.integer(2, _args.MAX_RUNS), default=None,
                   help="runs per condition, at least 2 (objects: 20; state: 40)")
    p.add_argument("--children", type=_args.integer(1, 1024), default=16,
                   help="objects: children per teardown run (16)")
    p.add_argument("--teardown-repeats", type=_args.integer(2, _args.MAX_RUNS), default=40,
                   help="objects: runs per teardown condition (40)")
    p.add_argument("--seed", type=_args.seed, default=0, help="seed of the run order (0)")
    p.add_argument("--out", type=_args.output_dir, metavar="DIR",
                   help="parent directory (default data/raw/objects, or data/raw/cost for state)")
    p.add_argument("--no-record", action="store_true", help="do not write raw data")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_run_forkcost)


def _run_forkcost(args) -> int:
    from rmaplab.measure import cost

    if len(set(args.ks)) < 2:
        raise RmaplabError("--ks needs at least two different VMA counts to fit a cost per VMA")
    if args.no_record and args.out is not None:
        raise RmaplabError("--out and --no-record contradict each other")
    if args.design == "state":
        df, where = cost.run(ks=tuple(args.ks), forks=args.forks or 200,
                             repeats=args.repeats or 40, seed=args.seed,
                             record=not args.no_record, out_root=args.out)
        per = cost.per_anon_vma_cost(df)
        warnings = cost.fit_warnings(per)
        if args.json:
            json_out({**per, "warnings": warnings, "raw": str(where) if where else None})
        else:
            print(f"per anon_vma at fork+exit: {per['ns_per_anon_vma']:.0f} ns "
                  f"[{per['ci_low']:.0f}, {per['ci_high']:.0f}] (95% CI, {per['n']} runs); "
                  f"per VMA without anon_vma: {per['ns_per_vma']:.0f} ns"
                  + (f"; raw data: {where}" if where else ""))
        for text in warnings:
            print(f"rmaplab forkcost: warning: {text}", file=sys.stderr)
        return 0
    runs, counts, where = cost.objects_campaign(
        forks=args.forks or 500, repeats=args.repeats or 20, children=args.children,
        teardown_repeats=args.teardown_repeats, seed=args.seed, record=not args.no_record,
        out_root=args.out, conditions=cost.objects_conditions(ks=tuple(args.ks)))
    coef = cost.coefficients(cost.object_costs(runs, counts))
    tear = cost.teardown_effect(runs)
    warnings = cost.price_warnings(coef)
    for text in warnings:
        print(f"rmaplab forkcost: warning: {text}", file=sys.stderr)
    if args.json:
        json_out({"coefficients": coef.to_dict(orient="records"),
                  "teardown": tear.to_dict(orient="records"), "warnings": warnings,
                  "raw": str(where) if where else None})
        return 0
    for _, c in coef.iterrows():
        print(f"{c['term']:<26} {c['ns']:8.0f} ns  [{c['ci_low']:.0f}, {c['ci_high']:.0f}]")
    for _, t in tear.iterrows():
        print(f"teardown ({t['layout']}): concurrent/sequential {t['ratio']:.2f} "
              f"[{t['ratio_ci_low']:.2f}, {t['ratio_ci_high']:.2f}]")
    if where:
        print(f"raw data: {where}")
    return 0


@command("kbuild")
def _kbuild(sub) -> None:
    p = sub.add_parser(
        "kbuild", help="kernel-build campaign: builds with each recipe shell, with and without "
                       "perf, interleaved",
        description="Install Debian's linux-source-6.12 and its build dependencies if missing "
                    "(root), unpack it into $RMAPLAB_CACHE (default ~/.cache/rmaplab), `make "
                    "CONFIG` (tinyconfig), then measure `make -s -jJOBS` after an unmeasured "
                    "`make -s clean`, once per shell (sh = /bin/sh, bash = SHELL=/bin/bash, "
                    "dash2019 = SHELL=dash-2019, built on demand: forks like Debian 10's dash), "
                    "each under perf stat (counts) and without perf (wait4 rusage, as `time` "
                    "reports it), in a seeded random order.  About 70 s per tinyconfig run on 2 "
                    "quiet cores: the defaults (10 runs x 4 conditions + 4 warm-ups) take about "
                    "50 min.  Finished runs are staged; rerunning the same command resumes an "
                    "interrupted campaign.  Results go to data/raw/kbuild/ (raw data: commit "
                    "them).  --trace records one build per shell with `rmaplab trace` into "
                    "data/raw/traces/ instead (its live counts come with it).  Exit status as for "
                    "measure.",
    )
    p.add_argument("--runs", type=_args.runs, default=10,
                   help="measured runs per shell and instrumentation (default 10)")
    p.add_argument("--warmups", type=_args.warmups, default=1,
                   help="warm-up runs per condition (default 1)")
    p.add_argument("--jobs", type=_args.integer(1, 1024), default=2, help="make -j (default 2)")
    p.add_argument("--no-plain", action="store_true",
                   help="only the runs under perf stat (no uninstrumented runs)")
    p.add_argument("--seed", type=_args.seed, default=2019, help="seed of the run order")
    p.add_argument("--config", type=_args.make_targets, default="tinyconfig",
                   help="make targets that configure the tree (default tinyconfig), e.g. "
                        "'tinyconfig kvm_guest.config'")
    p.add_argument("--shells", type=_args.choice_list(["sh", "bash", "dash2019"]),
                   default="sh,bash",
                   help="recipe shells, comma-separated: sh, bash, dash2019 (default sh,bash)")
    p.add_argument("--label", type=_args.label,
                   help="name of the measurement (default CONFIG-jJOBS)")
    p.add_argument("--trace", action="store_true",
                   help="record one traced build per shell (data/raw/traces/<time>-kbuild-"
                        "[CONFIG-]SHELL) instead of counting")
    p.add_argument("--mmap-layout", choices=("default", "legacy"), default="default",
                   help="with --trace: 'legacy' runs the build under `setarch -L -R` (bottom-up "
                        "mmap placement from TASK_UNMAPPED_BASE, no randomisation), the layout "
                        "a User-Mode Linux guest gives every process, so that a host trace can "
                        "be replayed against builds measured inside the UML policy kernels")
    p.add_argument("--out", type=_args.output_dir, metavar="DIR",
                   help="parent directory (default data/raw/kbuild, or data/raw/traces with "
                        "--trace)")
    p.add_argument("--tree", type=_args.existing_dir, metavar="DIR",
                   help="build this tree instead of CONFIG's (any Makefile with a clean target; "
                        "tests use a tiny one)")
    p.set_defaults(func=_run_kbuild)


def _run_kbuild(args) -> int:
    from rmaplab.measure import kbuild, perf, record, run
    from rmaplab.paths import raw_dir

    shells = tuple(args.shells)
    if args.mmap_layout != "default" and not args.trace:
        raise RmaplabError("--mmap-layout applies to traced builds only",
                           hint="add --trace, and --out DIR: a legacy-layout trace must not "
                                "become the recorded build that notebook 04 replays")
    out_root = args.out or raw_dir() / ("traces" if args.trace else "kbuild")
    record.check_destination(out_root)     # before installing, unpacking or building
    perf.check()
    tree = args.tree or kbuild.ensure_source(args.config)
    if not (tree / "Makefile").exists():
        raise RmaplabError("no Makefile in the tree to build", path=tree)
    meta = kbuild.describe(tree, args.config if args.tree is None else f"none (--tree {tree})",
                           shells)
    if args.trace:
        return _trace_kbuild(args, tree, shells, meta, out_root)
    label = args.label or (kbuild.config_slug(args.config) if args.tree is None else tree.name)
    conditions = kbuild.conditions(tree, args.jobs, shells, plain=not args.no_plain)
    runs, where = run.campaign(conditions, runs=args.runs, warmups=args.warmups, seed=args.seed,
                               label=f"{label}-j{args.jobs}", out_root=out_root,
                               extra_meta=meta)
    failed = sum(1 for r in runs if r.failed)
    print(f"{len(runs)} runs, {failed} failed; raw data: {where}")
    return run.exit_status(runs)


def _trace_kbuild(args, tree: Path, shells: tuple[str, ...], meta: dict[str, Any],
                  out_root: Path) -> int:
    import subprocess

    from rmaplab.measure import kbuild, record

    status = 0
    for shell in shells:
        # A tree's first build also runs Kconfig's syncconfig and builds the host tools,
        # which `make clean` keeps: a different workload (notebook 05), so say which it is.
        built_before = (tree / "include" / "config" / "auto.conf").exists()
        subprocess.run(["make", "-s", "clean"], cwd=tree, check=True, capture_output=True)
        label = (kbuild.trace_label(args.config, shell) if args.tree is None
                 else f"kbuild-{tree.name}-{shell}")
        name = record.run_name(label)
        cmd = kbuild.build_command(shell, args.jobs)
        shell_meta = {**meta, "tree_built_before": built_before}
        if args.mmap_layout == "legacy":
            cmd = kbuild.legacy_layout(cmd)
            shell_meta = {**shell_meta, "mmap_layout": kbuild.LEGACY_LAYOUT_NOTE}
        events, _, where, _, status_shell = _record_trace(
            cmd, out_root, name, tree, None, extra_meta=shell_meta)
        print(f"{shell}: {len(events):,} events -> {where}")
        status = status or status_shell
    return status


@command("ceiling")
def _ceiling(sub) -> None:
    p = sub.add_parser(
        "ceiling", help="in-vivo ceiling: sys time of a build spent where anon_vma work happens",
        description="Build tinyconfig under `perf record -a` in separate passes, interleaved in "
                    "a seeded random order: plain (no perf: the sys-time denominator), trace "
                    "(on-CPU time inside mm-copying fork/clone syscalls, exit and exec teardown "
                    "up to mmap:exit_mmap, and the mmap_lock read sections around "
                    "__anon_vma_prepare), sample (cpu-clock call chains attributed to "
                    "anon_vma_fork/anon_vma_clone/unlink_anon_vmas/__anon_vma_prepare) and locks "
                    "(lock:contention_begin/end; anon_vma root locks recognised by address); "
                    "plain and locks also oversubscribed.  A sampled micro workload of known "
                    "extra cost (avwork forkcost, with and without anon_vmas) validates the "
                    "attribution.  Defaults: 2 shells x 6 conditions x 3 repeats = 36 builds + 9 "
                    "validation runs, about 60 min on 2 quiet cores.  Finished runs are staged; "
                    "rerunning the same command resumes.  Reduced results (no perf.data) go to "
                    "a new directory under data/raw/ceiling/.  With `-- CMD` the workload is CMD "
                    "instead of the kernel build ({jobs} in CMD is replaced by the -j value).",
        usage="rmaplab ceiling [--shells sh,bash] [--passes plain,trace,sample,locks] "
              "[--jobs 2] [--oversubscribed 8] [--repeats 3] [--freq 4000] "
              "[--validate K,FORKS,REPEATS | --no-validate] [--seed N] [--tree DIR] [--out DIR] "
              "[--no-record] [-- CMD ...]",
    )
    p.add_argument("--shells", type=_args.choice_list(("sh", "bash", "dash2019")),
                   default=["sh", "bash"], metavar="SHELL,...",
                   help="recipe shells: sh, bash, dash2019 (default sh,bash)")
    p.add_argument("--passes", type=_args.choice_list(("plain", "trace", "sample", "locks")),
                   default=["plain", "trace", "sample", "locks"], metavar="PASS,...",
                   help="passes at -jJOBS (default all four)")
    p.add_argument("--jobs", type=_args.integer(1, 1024), default=2, help="make -j (default 2)")
    p.add_argument("--oversubscribed", type=_args.integer(0, 1024), default=8,
                   help="also run plain and locks at this -j (default 8; 0: no)")
    p.add_argument("--repeats", type=_args.runs, default=3, help="runs per condition (default 3)")
    p.add_argument("--freq", type=_args.integer(1, 100_000), default=4000,
                   help="cpu-clock samples/s (default 4000)")
    p.add_argument("--validate", type=_validation, default=(128, 4000, 3),
                   metavar="K,FORKS,REPEATS",
                   help="avwork forkcost K,FORKS,REPEATS for the sampling check (default "
                        "128,4000,3)")
    p.add_argument("--no-validate", action="store_true", help="skip the sampling check")
    p.add_argument("--seed", type=_args.seed, default=2019, help="seed of the run order")
    p.add_argument("--tree", type=_args.existing_dir, metavar="DIR",
                   help="build this tree instead of linux-source-6.12")
    p.add_argument("--label", type=_args.label, default=None,
                   help="name of the raw directory (default ceiling)")
    p.add_argument("--out", type=_args.output_dir, metavar="DIR",
                   help="parent directory (default data/raw/ceiling)")
    p.add_argument("--no-record", action="store_true", help="do not write raw data")
    p.add_argument("cmd", nargs=argparse.REMAINDER, help="-- CMD [ARG...]")
    p.set_defaults(func=_run_ceiling)


def _validation(text: str) -> tuple[int, int, int]:
    """K,FORKS,REPEATS of the sampling check (values may repeat, unlike int_list's grids)."""
    parts = text.split(",")
    if len(parts) != 3:
        raise _args.Invalid(f"needs three integers K,FORKS,REPEATS, got {text!r}")
    one = _args.integer(1, 10_000_000)
    return (one(parts[0]), one(parts[1]), one(parts[2]))


def _run_ceiling(args) -> int:
    from rmaplab.measure import ceiling, kbuild

    cmd = command_of(args)
    shells = args.shells
    if args.no_record and args.out is not None:
        raise RmaplabError("--out and --no-record contradict each other")
    if cmd:
        builds = {"cmd": lambda j: [a.replace("{jobs}", str(j)) for a in cmd]}
        cwd, before = None, None
    else:
        tree = args.tree or kbuild.ensure_source()
        if not (tree / "Makefile").exists():
            raise RmaplabError("no Makefile in the tree to build", path=tree)
        builds = {s: (lambda j, s=s: kbuild.build_command(s, j)) for s in shells}
        cwd, before = tree, ["make", "-s", "clean"]
    passes = args.passes
    conds = ceiling.build_conditions(builds, cwd, before, passes, args.jobs,
                                     args.oversubscribed)
    validate = None if args.no_validate else args.validate
    table, where = ceiling.campaign(conds, repeats=args.repeats, freq=args.freq, seed=args.seed,
                                    validate=validate, label=args.label or "ceiling",
                                    out_root=args.out, record=not args.no_record)
    failed = int(table["failed"].sum())
    print(f"{len(table)} runs, {failed} failed" + (f"; raw data: {where}" if where else ""))
    return 0 if not failed else 1
