"""`rmaplab replay` and `rmaplab search`: the model on traces, and the invariant search."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rmaplab.cli._registry import command, json_out
from rmaplab.errors import RmaplabError


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
    p.add_argument("--merge-rule", default=None, choices=["uncowed", "singular"],
                   help="VMA merge rule: 'uncowed' (v6.16+, 879bca0a2c4f) or 'singular' "
                        "(v3.0..v6.15, 965f55dea0e3); default: the policy's own era's "
                        "(singular for the 2019-era policies, uncowed for v6.0)")
    p.add_argument("--check", default="incremental", choices=["incremental", "full", "off"],
                   help="invariant checks after each event (default: what it touched)")
    p.add_argument("--walks", action="store_true",
                   help="also sample rmap-walk lengths (AVCs per walk of a COWed page) at "
                        "forks and at the end of forked mms")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_run_replay)


def _run_replay(args) -> int:
    from rmaplab import traces
    from rmaplab.model import POLICIES

    events = traces.load(args.trace)
    policies = list(POLICIES) if args.policy == "all" else [args.policy]
    results = [traces.replay(events, policy=p, merge_rule=args.merge_rule, check=args.check,
                             source=str(args.trace), walks=args.walks).as_dict()
               for p in policies]
    if args.json:
        json_out(results if args.policy == "all" else results[0])
        return 0
    keys = ["anon_vma_alloc", "anon_vma_fork", "anon_vma_prepare", "avc_alloc", "avc_fork",
            "avc_clone", "avc_prepare", "vma_alloc", "peak_anon_vma", "peak_avc",
            "peak_bytes_618", "violation_count"]
    width = max(len(k) for k in (*keys, "walk fork/child mean"))
    col = max(13, *(len(r["policy"]) for r in results))
    print(f"{args.trace}: {results[0]['events']} events")
    print(f"{'':<{width}} " + " ".join(f"{r['policy']:>{col}}" for r in results))
    print(f"{'merge rule':<{width}} " + " ".join(f"{r['merge_rule']:>{col}}" for r in results))
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
    return 0


@command("search")
def _search(sub) -> None:
    from rmaplab.model import POLICIES

    p = sub.add_parser(
        "search", help="search for an event sequence that breaks an invariant, and shrink it",
        description="Hypothesis-driven search over fork/exit/mprotect (and, with --with-writes, "
                    "page writes) on a two-page region, steered towards anon_vmas that sit in "
                    "chains of VMAs they are no ancestor of; the first sequence that breaks the "
                    "invariant is shrunk and written as a trace.  --unsteered draws programs "
                    "uniformly at random instead (all four operations, no target, no prefix).",
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
    p.add_argument("--unsteered", action="store_true",
                   help="uniform random programs (fork, exit, write, mprotect) instead of the "
                        "steered Hypothesis search")
    p.add_argument("--seed", type=int, default=0, help="random seed of --unsteered")
    p.add_argument("--budget", type=int, default=60_000, help="examples to try at most")
    p.add_argument("-o", "--output", type=Path, help="write the shrunk trace here (.jsonl)")
    p.add_argument("--summary", type=Path,
                   help="record the outcome (found or not, examples) in this JSON file")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_run_search)


def _record_search(path: Path, args, found, seconds: float) -> None:
    from rmaplab import atomic

    summary = json.loads(path.read_text()) if path.exists() else {}
    key = f"{args.policy}/{args.invariant}" + ("/writes" if args.with_writes else "") + \
        (f"/prefix={args.prefix.name}" if args.prefix is not None else "") + \
        ("/unsteered" if args.unsteered else "")
    summary[key] = {
        "policy": args.policy, "invariant": args.invariant,
        "with_writes": args.with_writes or args.unsteered,
        "mode": "unsteered" if args.unsteered else "steered",
        "prefix": str(args.prefix) if args.prefix is not None else None,
        "budget": args.budget, "found": found is not None,
        "examples": found.examples if found else args.budget,
        "seconds": round(found.seconds if found else seconds, 1),
        "seed": found.seed if found else (args.seed if args.unsteered else None),
        "events": len(found.events) if found else None,
        "trace": str(args.output) if found and args.output else None,
    }
    atomic.write_text(path, json.dumps(summary, indent=1, sort_keys=True) + "\n")


def _run_search(args) -> int:
    import time

    from rmaplab import traces
    from rmaplab.model.search import find_violation, random_search

    if args.budget <= 0:
        raise RmaplabError("--budget must be positive")
    if args.unsteered and (args.prefix is not None or args.with_writes):
        raise RmaplabError("--unsteered takes no --prefix and always generates writes")
    print(f"searching under {args.policy} for {args.invariant} (budget {args.budget:,} "
          f"examples{', unsteered' if args.unsteered else ''})...", file=sys.stderr)
    prefix = None
    if args.prefix is not None:
        prefix = [ev for _, ev in traces.load(args.prefix)]
        if args.drop_last:
            prefix = prefix[: -args.drop_last]
    start = time.perf_counter()
    if args.unsteered:
        found = random_search(args.policy, args.invariant, budget=args.budget, seed=args.seed)
    else:
        found = find_violation(args.policy, args.invariant, budget=args.budget,
                               with_writes=args.with_writes, prefix=prefix)
    if args.summary:
        _record_search(args.summary, args, found, time.perf_counter() - start)
    if found is None:
        msg = {"found": False, "policy": args.policy, "invariant": args.invariant,
               "examples": args.budget}
        if args.json:
            json_out(msg)
        else:
            print(f"no violation of {args.invariant} under {args.policy} in {args.budget:,} "
                  "examples")
        return 1
    if args.output:
        cont = (f" --prefix {args.prefix} --drop-last {args.drop_last}"
                if args.prefix is not None else "")
        how = (f" --unsteered --seed {args.seed}` after {found.examples} examples"
               if args.unsteered else
               f"{' --with-writes' if args.with_writes else ''}{cont}` after "
               f"{found.examples} examples (hypothesis seed {found.seed})")
        header = (f"# found by `rmaplab search --policy {args.policy} --invariant "
                  f"{args.invariant}{how}; shrunk\n"
                  f"# violation at event {found.violation['event']}: "
                  f"{found.violation['detail']}\n")
        traces.write(found.events, args.output, header=header)
    if args.json:
        json_out({"found": True, "policy": found.policy, "invariant": found.invariant,
                   "examples": found.examples, "seed": found.seed, "seconds": found.seconds,
                   "violation": found.violation, "events": found.events})
    else:
        print(f"violation of {found.invariant} under {found.policy} after {found.examples:,} "
              f"examples ({found.seconds:.1f} s), shrunk to {len(found.events)} events:")
        for i, ev in enumerate(found.events):
            print(f"  {i:3d} {traces.dumps(ev)}")
        print(f"  -> event {found.violation['event']}: {found.violation['detail']}")
    return 0
