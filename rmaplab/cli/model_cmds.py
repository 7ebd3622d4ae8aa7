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
    from rmaplab.model.vma import MERGE_RULES

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
    p.add_argument("--merge-rule", default="uncowed", choices=MERGE_RULES,
                   help="VMA merge rule: 'uncowed' (879bca0a2c4f with the mremap fixes "
                        "61f67c230a5e and 3b617fd3d317: v6.19, 6.18.8+), 'uncowed-6.16' "
                        "(879bca0a2c4f alone: v6.16..6.18.7) or 'singular' (v3.0..v6.15, "
                        "965f55dea0e3)")
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
        json_out(results if args.policy == "all" else results[0])
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
            json_out(msg)
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
        json_out({"found": True, "policy": found.policy, "invariant": found.invariant,
                   "examples": found.examples, "seed": found.seed,
                   "violation": found.violation, "events": found.events})
    else:
        print(f"violation of {found.invariant} under {found.policy} after {found.examples:,} "
              f"examples, shrunk to {len(found.events)} events:")
        for i, ev in enumerate(found.events):
            print(f"  {i:3d} {traces.dumps(ev)}")
        print(f"  -> event {found.violation['event']}: {found.violation['detail']}")
    return 0
