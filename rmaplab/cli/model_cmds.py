"""`rmaplab replay` and `rmaplab search`: the model on traces, and the invariant search."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from rmaplab.cli import _args
from rmaplab.cli._registry import command, json_out
from rmaplab.errors import RmaplabError

POLICY_HELP = ("a built-in policy, PATH.py:Class or package.module:Class (a plug-in, see "
               "README: Plug-in policies), or an installed plug-in's name")


def _policy_list() -> str:
    from rmaplab.model import POLICIES
    from rmaplab.model.plugins import installed

    lines = [f"  {n:<13} {p.summary} ({p.commit})" for n, p in POLICIES.items()]
    lines += [f"  {n:<13} installed plug-in ({v})" for n, v in sorted(installed().items())]
    lines.append("  or PATH.py:Class, package.module:Class (README: Plug-in policies)")
    return "\n".join(lines)


@command("replay")
def _replay(sub) -> None:
    from rmaplab.model.vma import MERGE_RULES

    p = sub.add_parser(
        "replay", help="run an event trace through the model under a policy",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Replay a JSONL event trace (.jsonl or .jsonl.gz) through the model of the "
                    "anon rmap and report allocations by call site, live/peak objects, the "
                    "rmap structure and any invariant violations.  Several policies run in "
                    "parallel processes.  --validate compares the replay with the kernel's own "
                    "counts of the traced run (live_counts.json beside the trace, written by "
                    "`rmaplab trace`).\n\npolicies:\n" + _policy_list()
                    + "\n\nexit status: 0 no invariant broken (--validate: every counter "
                      "within the tolerance), 1 an invariant broken under any policy replayed "
                      "(--validate: a counter differs), 2 bad input.",
    )
    p.add_argument("trace", type=_args.nonempty_file, metavar="TRACE",
                   help="event trace (see README: Event traces)")
    p.add_argument("--policy", type=_args.policy_list, default="v6.0", metavar="P[,P...]",
                   help=f"policies to replay under, comma-separated: {POLICY_HELP}; 'all' for "
                        "every built-in one (default v6.0, what this machine runs)")
    p.add_argument("--merge-rule", default=None, choices=MERGE_RULES,
                   help="VMA merge rule: 'uncowed' (879bca0a2c4f with the mremap fixes "
                        "61f67c230a5e and 3b617fd3d317: v6.19, 6.18.8+), 'uncowed-6.16' "
                        "(879bca0a2c4f alone: v6.16..6.18.7) or 'singular' (v3.0..v6.15, "
                        "965f55dea0e3); default: the policy's own era's (singular for the "
                        "2019-era policies, uncowed for v6.0 and the v6.0+ ones)")
    p.add_argument("--thp", action=argparse.BooleanOptionalAction, default=True,
                   help="the replayed kernel has CONFIG_TRANSPARENT_HUGEPAGE: an mmap with "
                        "MAP_STACK (\"stack\": true) gets VM_NOHUGEPAGE and madvise "
                        "hugepage/nohugepage set VM_HUGEPAGE/VM_NOHUGEPAGE (default: yes, "
                        "this machine's 6.18); --no-thp for the User-Mode Linux 6.12 kernels "
                        "(with --merge-rule singular), where MAP_STACK changes nothing and "
                        "those advices fail.  Traces without either replay the same")
    p.add_argument("--check", default="incremental", choices=["incremental", "full", "off"],
                   help="invariant checks after each event (default: what it touched)")
    p.add_argument("--walks", action="store_true",
                   help="also sample rmap-walk lengths (AVCs per walk of a COWed page) at "
                        "forks and at the end of forked mms")
    p.add_argument("--jobs", type=_args.integer(1, 256), metavar="N",
                   help="policies replayed at once, one process each (default: one per "
                        "CPU, and the last CPUs+1 together so no CPU idles at the end)")
    p.add_argument("--validate", action="store_true",
                   help="compare the replay (minus the trace's preamble) with live_counts.json "
                        "beside the trace; exit 1 on a mismatch")
    p.add_argument("--tolerance", type=_args.real(0.0), default=0.01, metavar="PCT",
                   help="--validate: largest difference allowed per counter, in percent "
                        "(default 0.01)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_run_replay)


def _run_replay(args) -> int:
    from rmaplab import traces

    if args.validate:
        return _validate(args)
    from rmaplab.model import get_policy

    names = [get_policy(spec).name for spec in args.policy]
    twice = next((n for n in names if names.count(n) > 1), None)
    if twice is not None:
        raise RmaplabError(f"two policies of --policy are called {twice!r}: their columns "
                           "could not be told apart (give a plug-in its own name)")
    events = traces.load_for_replay(args.trace)
    if not events:
        raise RmaplabError("no events in this trace (only comments or blank lines)",
                           path=args.trace)

    def progress(done: int, total: int, policy: str, seconds: float) -> None:
        print(f"replay: [{done}/{total}] {policy} done ({seconds:.1f} s)", file=sys.stderr,
              flush=True)

    results = traces.replay_policies(events, args.policy, merge_rule=args.merge_rule,
                                     check=args.check, source=str(args.trace), jobs=args.jobs,
                                     progress=progress if len(args.policy) > 1 else None,
                                     walks=args.walks, thp=args.thp)
    status = REPLAY_VIOLATIONS if any(r["violations"] for r in results) else 0
    if args.json:
        json_out(results if len(results) > 1 else results[0])
        return status
    keys = ["anon_vma_alloc", "anon_vma_fork", "anon_vma_prepare", "avc_alloc", "avc_fork",
            "avc_clone", "avc_prepare", "vma_alloc", "peak_anon_vma", "peak_avc",
            "peak_bytes_618", "violation_count"]
    width = max(len(k) for k in (*keys, "walk fork/child mean"))
    col = max(13, *(len(r["policy"]) for r in results))
    print(f"{args.trace}: {results[0]['events']} events")
    print(f"{'':<{width}} " + " ".join(f"{r['policy']:>{col}}" for r in results))
    print(f"{'merge rule':<{width}} " + " ".join(f"{r['merge_rule']:>{col}}" for r in results))
    if not args.thp:
        print(f"{'thp':<{width}} " + " ".join(f"{'no':>{col}}" for r in results))
    for k in keys:
        print(f"{k:<{width}} " + " ".join(f"{r[k]:>{col},}" for r in results))
    if args.walks:
        from rmaplab.model.observe import walk_summary

        for moment, side in (("fork", "child"), ("end", "child")):
            stats = [walk_summary(r["walks"], moment, side) for r in results]
            for stat in ("mean", "p99", "max"):
                name = f"walk {moment}/{side} {stat}"
                print(f"{name:<{width}} " + " ".join(f"{s[stat]:>{col}.2f}" for s in stats))
    for r in results:
        for v in r["violations"][:5]:
            print(f"{r['policy']}: event {v['event']}: {v['invariant']}: {v['detail']}")
    return status


# `rmaplab replay`'s exit status when the model broke an invariant (scripts test for it).
REPLAY_VIOLATIONS = 1
# `rmaplab replay --validate`'s when a counter differs from the kernel's by more than allowed.
VALIDATION_MISMATCH = 1


def _validate(args) -> int:
    from rmaplab.measure import capture
    from rmaplab.model import get_policy

    if len(args.policy) != 1:
        raise RmaplabError("--validate takes one --policy: the one the traced kernel runs")
    # The traced kernel ran this machine's merge rule, whatever the policy's era.
    rows, live_path = capture.validate_trace(args.trace, args.policy[0],
                                             args.merge_rule or "uncowed", thp=args.thp)
    worst = max(abs(r["diff_pct"]) for r in rows)
    ok = worst <= args.tolerance
    name = get_policy(args.policy[0]).name
    if args.json:
        # A counter the kernel never counted but the model did differs by infinitely many
        # percent: null in strict JSON (and "ok" false).
        def finite(x: float) -> float | None:
            return x if math.isfinite(x) else None

        json_out({"trace": str(args.trace), "live_counts": str(live_path), "policy": name,
                  "tolerance_pct": args.tolerance, "ok": ok, "max_abs_diff_pct": finite(worst),
                  "counters": [{**r, "diff_pct": finite(r["diff_pct"])} for r in rows]})
    else:
        print(f"{args.trace} under {name} against {live_path}:")
        print(f"{'counter':<17} {'live':>12} {'model':>12} {'diff':>9}")
        for r in rows:
            flag = "" if abs(r["diff_pct"]) <= args.tolerance else "  MISMATCH"
            print(f"{r['counter']:<17} {r['live']:>12,} {r['model']:>12,} "
                  f"{r['diff_pct']:>+8.4f}%{flag}")
        print(("ok" if ok else "mismatch") + f": largest difference {worst:.4f}% "
              f"(tolerance {args.tolerance:g}%)")
    return 0 if ok else VALIDATION_MISMATCH


@command("search")
def _search(sub) -> None:
    p = sub.add_parser(
        "search", help="search for an event sequence that breaks an invariant, and shrink it",
        description="Hypothesis-driven search over fork/exit/mprotect (and, with --with-writes, "
                    "page writes) on a two-page region, steered towards anon_vmas that sit in "
                    "chains of VMAs they are no ancestor of; the first sequence that breaks the "
                    "invariant is shrunk and written as a trace.  --unsteered draws programs "
                    "uniformly at random instead (all four operations, no target, no prefix).  "
                    "Exit status: 0 found, 1 not found within the budget, 2 bad input.",
    )
    p.add_argument("--policy", type=_args.policy, default="v5.4", metavar="P",
                   help=f"the policy to search: {POLICY_HELP} (default v5.4)")
    p.add_argument("--invariant", default="same-anon_vma-same-chain",
                   choices=["same-anon_vma-same-chain", "page-unreachable", "page-mapping-freed",
                            "counts", "links", "anon_vma_merge-BUG"])
    p.add_argument("--with-writes", action="store_true", help="also generate page writes")
    p.add_argument("--prefix", type=_args.nonempty_file, metavar="TRACE",
                   help="continue this trace (e.g. an earlier finding minus its last event)")
    p.add_argument("--drop-last", type=_args.non_negative_int, default=0, metavar="N",
                   help="drop the prefix's last N events first")
    p.add_argument("--unsteered", action="store_true",
                   help="uniform random programs (fork, exit, write, mprotect) instead of the "
                        "steered Hypothesis search")
    p.add_argument("--seed", type=_args.non_negative_int, default=0, metavar="N",
                   # 5000: search.EXAMPLES_PER_SEED (not imported here: the model is
                   # heavy for a command line that may only print its help; a test checks)
                   help="random seed of --unsteered; of the steered search, its first "
                        "Hypothesis seed (seeds N, N+1, ... get 5000 examples each, so "
                        "--budget 5000 searches seed N alone) (0)")
    p.add_argument("--violators", action="store_true",
                   help="with --unsteered: run every program of the budget and record the "
                        "numbers of all that break the invariant (in --summary), not only "
                        "the first; nothing is shrunk or written with -o")
    p.add_argument("--budget", type=_args.integer(1, 10**9), default=60_000, metavar="N",
                   help="examples to try at most (60000)")
    p.add_argument("--jobs", type=_args.integer(1, 256), metavar="N",
                   help="worker processes (default: one per CPU); the finding -- examples, "
                        "seed, trace -- is the same for any N, only the time to it changes")
    p.add_argument("-o", "--output", type=_args.output_file, metavar="TRACE",
                   help="write the shrunk trace here (.jsonl or .jsonl.gz)")
    p.add_argument("--summary", type=_args.output_file, metavar="JSON",
                   help="record the outcome (found or not, examples) in this JSON file")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_run_search)


def _read_summary(path: Path) -> dict:
    """The existing --summary file's records (checked before the search, not after)."""
    if not path.exists():
        return {}
    try:
        summary = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RmaplabError(f"not a search summary (invalid JSON: {e})", path=path) from None
    if not isinstance(summary, dict):
        raise RmaplabError("not a search summary (expected a JSON object)", path=path)
    return summary


def _record_search(path: Path, args, outcome: dict) -> None:
    """Record a search's outcome (found, examples, seconds, seed, ...) under its key.
    Searches that share a summary may finish at once (two seeds run side by side): the
    read, update and atomic rewrite happen under a lock on the file's directory (created
    if missing), so neither loses the other's record and no lock file is left behind."""
    import fcntl
    import os

    from rmaplab import atomic

    path = Path(os.path.realpath(path))      # a symlink's target is the summary, not the link
    path.parent.mkdir(parents=True, exist_ok=True)
    held = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(held, fcntl.LOCK_EX)
        summary = _read_summary(path)
        summary[_summary_key(args)] = {
            "policy": args.policy, "invariant": args.invariant,
            "with_writes": args.with_writes or args.unsteered,
            "mode": "unsteered" if args.unsteered else "steered",
            "prefix": str(args.prefix) if args.prefix is not None else None,
            "drop_last": args.drop_last if args.prefix is not None else None,
            "budget": args.budget, **outcome}
        atomic.write_text(path, json.dumps(summary, indent=1, sort_keys=True) + "\n")
    finally:
        os.close(held)                     # and with it the lock


def _run_violators(args, name: str, start: float, progress) -> int:
    """``search --unsteered --violators``: every program of the budget is run."""
    import time

    from rmaplab.model.search import random_violators

    found = random_violators(args.policy, args.invariant, budget=args.budget, seed=args.seed,
                             jobs=args.jobs, progress=progress)
    seconds = time.perf_counter() - start
    first = found[0] if found else None
    if args.json:
        json_out({"found": bool(found), "policy": name, "invariant": args.invariant,
                  "seed": args.seed, "budget": args.budget, "violators": found})
    else:
        print(f"{len(found):,} of {args.budget:,} programs break {args.invariant} under {name}"
              + (f", the first at program {first:,}" if found else "") + f" ({seconds:.1f} s)")
    sys.stdout.flush()
    if args.summary:
        try:
            _record_search(args.summary, args, {
                "found": bool(found), "examples": first if found else args.budget,
                "seconds": round(seconds, 1), "seed": args.seed, "events": None,
                "trace": None, "violators": found})
        except OSError as e:
            raise RmaplabError(f"cannot write {args.summary} ({e.strerror or e}); the outcome "
                               "is printed above") from None
    return 0 if found else 1


def _summary_key(args) -> str:
    """What makes two searches different, so that one's record never replaces the
    other's: a --violators run is not the first-hit search of the same seed."""
    return f"{args.policy}/{args.invariant}" + ("/writes" if args.with_writes else "") + \
        (f"/prefix={args.prefix.name}" if args.prefix is not None else "") + \
        (f"/drop-last={args.drop_last}" if args.prefix is not None and args.drop_last else "") + \
        ("/unsteered" if args.unsteered else "") + \
        ("/violators" if getattr(args, "violators", False) else "") + \
        (f"/seed={args.seed}" if args.seed else "")  # seed 0: its old key


def _print_outcome(args, name: str, found) -> None:
    from rmaplab import traces

    if found is None:
        msg = {"found": False, "policy": name, "invariant": args.invariant,
               "examples": args.budget}
        if args.json:
            json_out(msg)
        else:
            print(f"no violation of {args.invariant} under {name} in {args.budget:,} "
                  "examples")
    elif args.json:
        json_out({"found": True, "policy": found.policy, "invariant": found.invariant,
                   "examples": found.examples, "seed": found.seed, "seconds": found.seconds,
                   "violation": found.violation, "events": found.events})
    else:
        print(f"violation of {found.invariant} under {found.policy} after {found.examples:,} "
              f"examples ({found.seconds:.1f} s), shrunk to {len(found.events)} events:")
        for i, ev in enumerate(found.events):
            print(f"  {i:3d} {traces.dumps(ev)}")
        print(f"  -> event {found.violation['event']}: {found.violation['detail']}")
    sys.stdout.flush()


def _refuse_same_file(args) -> None:
    """-o, --summary and --prefix name three different files: found before the search, not
    after it (the trace written over the summary, or over the prefix it continues)."""
    named = [(opt, path) for opt, path in (("-o", args.output), ("--summary", args.summary),
                                           ("--prefix", args.prefix)) if path is not None]
    for i, (opt, path) in enumerate(named):
        for other, other_path in named[i + 1:]:
            if path.resolve() == other_path.resolve():
                raise RmaplabError(f"{opt} and {other} name the same file ({path}): the search "
                                   "would write over it")


def _search_prefix(args) -> list[dict] | None:
    """The --prefix trace minus --drop-last events, checked to be a state to continue from."""
    from rmaplab import traces
    from rmaplab.model.machine import EventError, Kernel

    if args.prefix is None:
        if args.drop_last:
            raise RmaplabError("--drop-last applies to a --prefix trace; none given")
        return None
    numbered = traces.load(args.prefix)
    if not numbered:
        raise RmaplabError("the prefix has no events", path=args.prefix)
    if args.drop_last >= len(numbered):
        raise RmaplabError(f"--drop-last {args.drop_last} would leave nothing of the "
                           f"{len(numbered)} events in the prefix", path=args.prefix)
    numbered = numbered[: len(numbered) - args.drop_last]
    kernel = Kernel(args.policy, check="incremental")
    for line, ev in numbered:
        try:
            kernel.apply(ev)
        except EventError as e:
            raise RmaplabError(f"{ev['op']}: {e}", path=args.prefix, line=line) from None
    broken = next((v for v in kernel.violations if v.invariant == args.invariant), None)
    if broken is not None:
        # Every program would "find" it at once (reported as found after 1 example).
        raise RmaplabError(f"the prefix already breaks {args.invariant} under "
                           f"{kernel.policy.name} at its event {broken.event + 1}: nothing to "
                           "search for (cut it with --drop-last)", path=args.prefix,
                           line=numbered[broken.event][0])
    if not kernel.mms:
        raise RmaplabError("no process is alive at the end of the prefix to continue from",
                           path=args.prefix)
    return [ev for _, ev in numbered]


def _run_search(args) -> int:
    import time

    from rmaplab import traces
    from rmaplab.model import get_policy
    from rmaplab.model.search import find_violation, random_search

    if args.unsteered and (args.prefix is not None or args.with_writes):
        raise RmaplabError("--unsteered takes no --prefix and always generates writes")
    if args.violators and (not args.unsteered or args.output is not None):
        raise RmaplabError("--violators goes with --unsteered, and writes no trace (-o)")
    _refuse_same_file(args)
    name = get_policy(args.policy).name
    prefix = _search_prefix(args)
    if args.summary is not None:
        _read_summary(args.summary)
    print(f"searching under {name} for {args.invariant} (budget {args.budget:,} "
          f"examples{', unsteered' if args.unsteered else ''})...", file=sys.stderr)
    start = time.perf_counter()
    shown = [start]

    # --violators runs every program whatever it finds: its progress says how far, only.
    so_far = "" if args.violators else ", nothing yet"

    def progress(examples: int, budget: int, seconds: float) -> None:
        """A line on stderr at most every 10 s: searches run for minutes."""
        if time.perf_counter() - shown[0] >= 10:
            shown[0] = time.perf_counter()
            print(f"search: {examples:,} of {budget:,} examples{so_far} ({seconds:.0f} s)",
                  file=sys.stderr, flush=True)

    if args.violators:
        return _run_violators(args, name, start, progress)
    if args.unsteered:
        found = random_search(args.policy, args.invariant, budget=args.budget, seed=args.seed,
                              jobs=args.jobs, progress=progress)
    else:
        found = find_violation(args.policy, args.invariant, budget=args.budget,
                               with_writes=args.with_writes, prefix=prefix, jobs=args.jobs,
                               progress=progress, first_seed=args.seed)
    seconds = time.perf_counter() - start
    # The outcome goes to stdout first: a file that cannot be written loses nothing.  And
    # stdout that cannot be written (a full disk, a closed pipe) does not stop the files.
    unprinted: OSError | None = None
    try:
        _print_outcome(args, name, found)
    except OSError as e:
        unprinted = e
    try:
        if found is not None and args.output:
            cont = (f" --prefix {args.prefix} --drop-last {args.drop_last}"
                    if args.prefix is not None else "")
            seed = f" --seed {args.seed}" if args.seed else ""
            how = (f" --unsteered --seed {args.seed}` after {found.examples} examples"
                   if args.unsteered else
                   f"{' --with-writes' if args.with_writes else ''}{cont}{seed}` after "
                   f"{found.examples} examples (hypothesis seed {found.seed})")
            header = (f"# found by `rmaplab search --policy {args.policy} --invariant "
                      f"{args.invariant}{how}; shrunk\n"
                      f"# violation at event {found.violation['event']}: "
                      f"{found.violation['detail']}\n")
            traces.write(found.events, args.output, header=header)
        if args.summary:
            _record_search(args.summary, args, {
                "found": found is not None,
                "examples": found.examples if found else args.budget,
                "seconds": round(found.seconds if found else seconds, 1),
                "seed": found.seed if found else (args.seed if args.unsteered else None),
                "first_seed": args.seed,
                "events": len(found.events) if found else None,
                "trace": str(args.output) if found and args.output else None})
    except OSError as e:
        where = "printed above" if unprinted is None else "not printed either"
        raise RmaplabError(f"cannot write {e.filename or args.output} ({e.strerror or e}); the "
                           f"outcome is {where}") from None
    if isinstance(unprinted, BrokenPipeError):
        raise unprinted                    # the reader went away: main() stops quietly
    if unprinted is not None:
        written = [str(p) for p in (args.output if found else None, args.summary) if p]
        why = unprinted.strerror or unprinted
        kept = f"; it is in {', '.join(written)}" if written else ""
        raise RmaplabError(f"cannot write the outcome to standard output ({why}){kept}")
    return 0 if found is not None else 1
