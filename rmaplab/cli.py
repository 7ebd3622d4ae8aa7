"""The ``rmaplab`` command line.  ``--json`` output is an interface (../DESIGN.md).

Errors a user can fix print one line on stderr and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rmaplab import __version__
from rmaplab.errors import RmaplabError

COMMANDS: dict[str, Callable[[argparse.ArgumentParser], None]] = {}


def command(name: str):
    def register(fn):
        COMMANDS[name] = fn
        return fn
    return register


def _json_out(obj: Any) -> None:
    json.dump(obj, sys.stdout, indent=1, sort_keys=False, allow_nan=False)
    sys.stdout.write("\n")


# ---------------------------------------------------------------- timings / compare
def _add_format_args(p: argparse.ArgumentParser) -> None:
    from rmaplab.timings import FORMATS

    p.add_argument("--format", default="auto", choices=["auto", *FORMATS],
                   help="input format (default: detect it)")
    p.add_argument("--time-format", metavar="FMT",
                   help="GNU time -f format the file was written with, e.g. '%%e %%U %%S'")


@command("timings")
def _timings(sub) -> None:
    from rmaplab.timings import FORMATS

    formats = "\n".join(f"  {name:<10} {mod.DESCRIPTION}" for name, mod in FORMATS.items())
    p = sub.add_parser(
        "timings", help="parse timing files into one tidy table",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Parse timing output of common tools into one record per run and metric "
                    "(real, user, sys).\n\nformats:\n" + formats,
    )
    p.add_argument("files", nargs="+", metavar="FILE")
    _add_format_args(p)
    p.add_argument("--json", action="store_true", help="JSON records instead of a table")
    p.set_defaults(func=_run_timings)


def _run_timings(args) -> int:
    from rmaplab import timings

    records = timings.load_many(args.files, format=args.format, time_format=args.time_format)
    if args.json:
        _json_out([r.as_dict() for r in records])
        return 0
    df = timings.to_frame(records)
    print(df[["source", "line", "group", "run", "metric", "seconds", "kind", "n"]]
          .to_string(index=False))
    return 0


@command("compare")
def _compare(sub) -> None:
    p = sub.add_parser(
        "compare", help="A/B inference on real/user/sys",
        description="Compare B against A per metric: change and its CI (Welch on log times), "
                    "exact Mann-Whitney and permutation tests with the smallest p the design "
                    "can reach, Holm across metrics, Hedges' g, Hodges-Lehmann, power, TOST, "
                    "drift and a user-time confounder check.  A and B are two files, or one "
                    "file holding two labelled groups (such as the seed email).",
    )
    p.add_argument("a", metavar="A", help="timing file for A (or for both groups)")
    p.add_argument("b", metavar="B", nargs="?", help="timing file for B")
    _add_format_args(p)
    p.add_argument("--groups", metavar="A,B", help="the two group labels to compare, in order")
    p.add_argument("--metric", action="append", choices=["real", "user", "sys"],
                   help="metric(s) to compare (default: all present)")
    p.add_argument("--alpha", type=float, default=0.05, help="significance level (0.05)")
    p.add_argument("--margin", type=float, default=1.0, metavar="PCT",
                   help="equivalence margin for TOST, percent (1.0)")
    p.add_argument("--target", type=float, metavar="PCT",
                   help="effect size for the runs-needed estimate (default: the observed one)")
    p.add_argument("--seed", type=int, default=0, help="seed for Monte Carlo and bootstrap")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_run_compare)


def _split_sides(df, args):
    """Return (frame A, frame B, label A, label B, same_file)."""
    groups = list(dict.fromkeys(df["group"].tolist()))
    if args.groups:
        wanted = [g.strip() for g in args.groups.split(",")]
        if len(wanted) != 2:
            raise RmaplabError("--groups takes two labels separated by a comma")
        for g in wanted:
            if g not in groups:
                raise RmaplabError(f"no group {g!r}", path=args.a,
                                   hint="groups: " + ", ".join(map(str, groups)))
        groups = wanted
    elif len(groups) != 2:
        raise RmaplabError(
            f"one file must hold exactly two labelled groups to compare, found {len(groups)}: "
            + ", ".join(map(str, groups)), path=args.a,
            hint="label the groups with heading lines such as 'Origin:' and 'Patched:', "
                 "give two files, or pick two with --groups")
    a = df[df["group"] == groups[0]]
    b = df[df["group"] == groups[1]]
    return a, b, str(groups[0]), str(groups[1])


def _run_compare(args) -> int:
    from rmaplab import timings
    from rmaplab.stats import compare, format_table

    if not 0 < args.alpha < 1:
        raise RmaplabError(f"--alpha must be between 0 and 1, got {args.alpha}")
    if args.margin <= 0:
        raise RmaplabError(f"--margin must be positive, got {args.margin}")
    load = lambda path: timings.to_frame(  # noqa: E731
        timings.load(path, format=args.format, time_format=args.time_format))
    if args.b is None:
        a, b, label_a, label_b = _split_sides(load(args.a), args)
        same_file = True
    else:
        a, b = load(args.a), load(args.b)
        labels = []
        for path, df in ((args.a, a), (args.b, b)):
            groups = list(dict.fromkeys(df["group"].tolist()))
            if len(groups) > 1:
                raise RmaplabError(f"holds {len(groups)} groups; compare one group per file",
                                   path=path, hint="or give one file and --groups A,B")
            labels.append(str(groups[0]) if groups[0] is not None else Path(path).name)
        label_a, label_b = labels
        same_file = False
    metrics = tuple(args.metric) if args.metric else ("real", "user", "sys")
    result = compare(a, b, label_a=label_a, label_b=label_b, metrics=metrics, alpha=args.alpha,
                     margin_pct=args.margin, target_pct=args.target, seed=args.seed,
                     same_file=same_file)
    if args.json:
        _json_out(result.as_dict())
    else:
        print(format_table(result))
    return 0


# ---------------------------------------------------------------- replay / search
@command("replay")
def _replay(sub) -> None:
    from rmaplab.model import POLICIES

    p = sub.add_parser(
        "replay", help="run an event trace through the model under a policy",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Replay a JSONL event trace (.jsonl or .jsonl.gz) through the model of the "
                    "anon rmap and report allocations by call site, live/peak objects, the "
                    "rmap structure and any invariant violations.\n\npolicies:\n"
                    + "\n".join(f"  {n:<13} {p.summary} ({p.commit})" for n, p in POLICIES.items()),
    )
    p.add_argument("trace", type=Path, help="event trace (see README: Event traces)")
    p.add_argument("--policy", default="v6.0", choices=[*POLICIES, "all"],
                   help="reuse policy (default v6.0, what this machine runs); 'all' for a table")
    p.add_argument("--merge-rule", default="uncowed", choices=["uncowed", "singular"],
                   help="VMA merge rule: 'uncowed' (v6.16+, 879bca0a2c4f) or 'singular' "
                        "(v3.0..v6.15, 965f55dea0e3)")
    p.add_argument("--check", default="incremental", choices=["incremental", "full", "off"],
                   help="invariant checks after each event (default: what it touched)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_run_replay)


def _run_replay(args) -> int:
    from rmaplab import traces
    from rmaplab.model import POLICIES

    events = traces.load(args.trace)
    policies = list(POLICIES) if args.policy == "all" else [args.policy]
    results = [traces.replay(events, policy=p, merge_rule=args.merge_rule, check=args.check,
                             source=str(args.trace)).as_dict() for p in policies]
    if args.json:
        _json_out(results if args.policy == "all" else results[0])
        return 0
    keys = ["anon_vma_alloc", "anon_vma_fork", "anon_vma_prepare", "avc_alloc", "avc_fork",
            "avc_clone", "avc_prepare", "vma_alloc", "peak_anon_vma", "peak_avc",
            "peak_bytes_618", "violation_count"]
    width = max(len(k) for k in keys)
    print(f"{args.trace}: {results[0]['events']} events, merge rule {args.merge_rule}")
    print(f"{'':<{width}} " + " ".join(f"{r['policy']:>13}" for r in results))
    for k in keys:
        print(f"{k:<{width}} " + " ".join(f"{r[k]:>13,}" for r in results))
    for r in results:
        for v in r["violations"][:5]:
            print(f"{r['policy']}: event {v['event']}: {v['invariant']}: {v['detail']}")
    return 0


@command("search")
def _search(sub) -> None:
    from rmaplab.model import POLICIES

    p = sub.add_parser(
        "search", help="search for an event sequence that breaks an invariant, and shrink it",
        description="Hypothesis-driven search over fork/exit/mprotect (and, with --with-writes, "
                    "page writes) on a two-page region, steered towards anon_vmas that sit in "
                    "chains of VMAs they are no ancestor of; the first sequence that breaks the "
                    "invariant is shrunk and written as a trace.",
    )
    p.add_argument("--policy", default="v5.4", choices=list(POLICIES))
    p.add_argument("--invariant", default="same-anon_vma-same-chain",
                   choices=["same-anon_vma-same-chain", "page-unreachable", "page-mapping-freed",
                            "counts", "links", "anon_vma_merge-BUG"])
    p.add_argument("--with-writes", action="store_true", help="also generate page writes")
    p.add_argument("--prefix", type=Path,
                   help="continue this trace (e.g. an earlier finding minus its last event)")
    p.add_argument("--drop-last", type=int, default=0, metavar="N",
                   help="drop the prefix's last N events first")
    p.add_argument("--budget", type=int, default=60_000, help="examples to try at most")
    p.add_argument("-o", "--output", type=Path, help="write the shrunk trace here (.jsonl)")
    p.add_argument("--summary", type=Path,
                   help="record the outcome (found or not, examples) in this JSON file")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_run_search)


def _record_search(path: Path, args, found) -> None:
    from rmaplab import atomic

    summary = json.loads(path.read_text()) if path.exists() else {}
    key = f"{args.policy}/{args.invariant}" + ("/writes" if args.with_writes else "") + \
        (f"/prefix={args.prefix.name}" if args.prefix is not None else "")
    summary[key] = {
        "policy": args.policy, "invariant": args.invariant, "with_writes": args.with_writes,
        "prefix": str(args.prefix) if args.prefix is not None else None,
        "budget": args.budget, "found": found is not None,
        "examples": found.examples if found else args.budget,
        "seed": found.seed if found else None,
        "events": len(found.events) if found else None,
        "trace": str(args.output) if found and args.output else None,
    }
    atomic.write_text(path, json.dumps(summary, indent=1, sort_keys=True) + "\n")


def _run_search(args) -> int:
    from rmaplab import traces
    from rmaplab.model.search import find_violation

    if args.budget <= 0:
        raise RmaplabError("--budget must be positive")
    print(f"searching under {args.policy} for {args.invariant} (budget {args.budget:,} "
          "examples)...", file=sys.stderr)
    prefix = None
    if args.prefix is not None:
        prefix = [ev for _, ev in traces.load(args.prefix)]
        if args.drop_last:
            prefix = prefix[: -args.drop_last]
    found = find_violation(args.policy, args.invariant, budget=args.budget,
                           with_writes=args.with_writes, prefix=prefix)
    if args.summary:
        _record_search(args.summary, args, found)
    if found is None:
        msg = {"found": False, "policy": args.policy, "invariant": args.invariant,
               "examples": args.budget}
        if args.json:
            _json_out(msg)
        else:
            print(f"no violation of {args.invariant} under {args.policy} in {args.budget:,} "
                  "examples")
        return 1
    if args.output:
        cont = (f" --prefix {args.prefix} --drop-last {args.drop_last}"
                if args.prefix is not None else "")
        header = (f"# found by `rmaplab search --policy {args.policy} --invariant "
                  f"{args.invariant}{' --with-writes' if args.with_writes else ''}{cont}` after "
                  f"{found.examples} examples (hypothesis seed {found.seed}); shrunk\n"
                  f"# violation at event {found.violation['event']}: "
                  f"{found.violation['detail']}\n")
        traces.write(found.events, args.output, header=header)
    if args.json:
        _json_out({"found": True, "policy": found.policy, "invariant": found.invariant,
                   "examples": found.examples, "seed": found.seed,
                   "violation": found.violation, "events": found.events})
    else:
        print(f"violation of {found.invariant} under {found.policy} after {found.examples:,} "
              f"examples, shrunk to {len(found.events)} events:")
        for i, ev in enumerate(found.events):
            print(f"  {i:3d} {traces.dumps(ev)}")
        print(f"  -> event {found.violation['event']}: {found.violation['detail']}")
    return 0


# ---------------------------------------------------------------- measure
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
        _json_out(result)
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
    import tempfile
    from datetime import UTC, datetime

    from rmaplab import atomic, integrity
    from rmaplab.measure import capture, host
    from rmaplab.measure.run import slug
    from rmaplab.paths import cache_dir, raw_dir

    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd and args.perf_data is None:
        raise RmaplabError("no command to trace", hint="rmaplab trace -- CMD [ARG...]")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    target = args.output or raw_dir() / "traces" / f"{stamp}-{slug(args.label or ' '.join(cmd))}"
    if target.exists():
        raise RmaplabError("output directory exists; traces are never overwritten", path=target)
    meta: dict[str, Any] = {"host": host.describe(), "command": cmd,
                            "cwd": str(args.cwd) if args.cwd else None,
                            "record_events": capture.RECORD_EVENTS}
    if args.perf_data is not None:
        data = args.perf_data
        if not data.exists():
            raise RmaplabError("no such perf.data", path=data)
    else:
        cache_dir().mkdir(parents=True, exist_ok=True)
        data = Path(tempfile.mkdtemp(dir=cache_dir(), prefix="trace-")) / "perf.data"
        import os

        cwd = os.getcwd()
        if args.cwd:
            os.chdir(args.cwd)
        try:
            meta["record"] = capture.record(cmd, data)
        finally:
            os.chdir(cwd)
    meta["perf_data"] = str(data)
    print(f"converting {data} ...", file=sys.stderr, flush=True)
    events, conv = capture.convert(
        capture.perf_script_lines(data),
        progress=lambda n: print(f"  {n:,} perf lines", file=sys.stderr, flush=True))
    with atomic.new_directory(target) as d:
        capture.write_outputs(d, events, conv, meta)
    try:
        target.resolve().relative_to(raw_dir().resolve())
        integrity.add([target])
    except ValueError:
        pass
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
        _json_out(table.to_dict(orient="records"))
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
        _json_out({**per, "raw": str(where) if where else None})
    else:
        print(f"per anon_vma at fork+exit: {per['ns_per_anon_vma']:.0f} ns "
              f"[{per['ci_low']:.0f}, {per['ci_high']:.0f}] (95% CI, {per['n']} runs); "
              f"per VMA without anon_vma: {per['ns_per_vma']:.0f} ns"
              + (f"; raw data: {where}" if where else ""))
    return 0


@command("kbuild")
def _kbuild(sub) -> None:
    p = sub.add_parser(
        "kbuild", help="kernel-build campaign: tinyconfig builds with sh and bash, interleaved",
        description="Install Debian's linux-source-6.12 and its build dependencies if missing "
                    "(root), unpack it into $RMAPLAB_CACHE (default ~/.cache/rmaplab), make "
                    "tinyconfig, then measure `make -s -jJOBS` after an unmeasured `make -s "
                    "clean`, with the default /bin/sh and with SHELL=/bin/bash, in a seeded random "
                    "order.  Takes about 80 s per run on 2 cores.  Results go to "
                    "data/raw/kbuild/ (raw data: commit them).",
    )
    p.add_argument("--runs", type=int, default=10, help="measured runs per shell (default 10)")
    p.add_argument("--warmups", type=int, default=1, help="warm-up runs per shell (default 1)")
    p.add_argument("--jobs", type=int, default=2, help="make -j (default 2)")
    p.add_argument("--seed", type=int, default=2019, help="seed of the run order")
    p.add_argument("--out", type=Path, help="parent directory (default data/raw/kbuild)")
    p.set_defaults(func=_run_kbuild)


def _run_kbuild(args) -> int:
    from rmaplab.measure import kbuild, run
    from rmaplab.paths import raw_dir

    tree = kbuild.ensure_source()
    runs, where = run.campaign(kbuild.conditions(tree, args.jobs), runs=args.runs,
                               warmups=args.warmups, seed=args.seed,
                               label=f"tinyconfig-j{args.jobs}",
                               out_root=args.out or raw_dir() / "kbuild")
    failed = sum(1 for r in runs if r.failed)
    print(f"{len(runs)} runs, {failed} failed; raw data: {where}")
    return 0 if not failed else 1


# ---------------------------------------------------------------- data
@command("data")
def _data(sub) -> None:
    p = sub.add_parser("data", help="check or extend the raw-data manifest",
                       description="data/raw is immutable and checksummed (MANIFEST.sha256).")
    dsub = p.add_subparsers(dest="data_command", required=True)
    v = dsub.add_parser("verify", help="check every raw file against the manifest")
    v.set_defaults(func=_run_data_verify)
    a = dsub.add_parser("add", help="record new raw files (never changes a recorded one)")
    a.add_argument("paths", nargs="+", type=Path)
    a.set_defaults(func=_run_data_add)


def _run_data_verify(args) -> int:
    from rmaplab import integrity

    n = integrity.verify()
    print(f"{n} raw files match data/raw/{integrity.MANIFEST_NAME}")
    return 0


def _run_data_add(args) -> int:
    from rmaplab import integrity

    added = integrity.add(args.paths)
    print(f"recorded {len(added)} new file(s)" + "".join(f"\n  {a}" for a in added))
    return 0


# ---------------------------------------------------------------- reproduce
@command("reproduce")
def _reproduce(sub) -> None:
    p = sub.add_parser(
        "reproduce", help="run every notebook, build figures and the paper",
        description="Execute notebooks/NN_*.ipynb in order with papermill (in place), then "
                    "build paper/paper.pdf.  Stops at the first failing notebook and keeps its "
                    "executed copy under build/failed/.",
    )
    p.add_argument("-p", "--parameter", nargs=2, action="append", metavar=("NAME", "VALUE"),
                   default=[], help="notebook parameter (VALUE is read as YAML: 3, true, 'x')")
    p.add_argument("-f", "--params-file", type=Path, help="YAML file of notebook parameters")
    p.add_argument("--only", action="append", metavar="NB",
                   help="run only this notebook (prefix such as 01, or stem); repeatable")
    p.add_argument("--no-paper", action="store_true", help="skip the PDF build")
    p.set_defaults(func=_run_reproduce)


def _run_reproduce(args) -> int:
    import yaml

    from rmaplab.reproduce import reproduce

    params: dict[str, Any] = {}
    if args.params_file:
        try:
            loaded = yaml.safe_load(args.params_file.read_text())
        except FileNotFoundError:
            raise RmaplabError("no such file", path=args.params_file) from None
        except yaml.YAMLError as e:
            raise RmaplabError(f"not valid YAML: {e}", path=args.params_file) from None
        if not isinstance(loaded, dict):
            raise RmaplabError("parameters file must map names to values", path=args.params_file)
        params.update(loaded)
    for name, value in args.parameter:
        try:
            params[name] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise RmaplabError(f"parameter {name}: cannot read value {value!r}") from None
    reproduce(params, only=args.only, paper=not args.no_paper)
    return 0


# ---------------------------------------------------------------- entry point
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rmaplab",
        description="Put the 2019 'reuse mergeable anon_vma as parent when fork' claim on trial: "
                    "timing statistics, a model of mm/rmap.c, live-kernel counts.",
    )
    parser.add_argument("--version", action="version", version=f"rmaplab {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in COMMANDS.values():
        register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except RmaplabError as e:
        print(f"rmaplab {args.command}: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:
        print(f"rmaplab {args.command}: interrupted", file=sys.stderr)
        return 130
