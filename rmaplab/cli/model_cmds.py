"""`rmaplab replay` and `rmaplab search`: the model on traces, and the invariant search."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rmaplab.cli._registry import command, json_out
from rmaplab.errors import RmaplabError

POLICY_HELP = ("a built-in policy, PATH.py:Class or package.module:Class (a plug-in, see "
               "README: Plug-in policies), or the name of an installed plug-in")


def policy_specs(text: str) -> list[str]:
    """``--policy`` values: comma-separated specs, ``all`` for the built-in policies.

    Each is resolved here, so a broken plug-in stops the command with one line (exit 2)
    before any work starts."""
    from rmaplab.model import POLICIES, get_policy

    specs: list[str] = []
    for part in text.split(","):
        part = part.strip()
        if part == "all":
            specs += [p for p in POLICIES if p not in specs]
        elif part and part not in specs:
            get_policy(part)
            specs.append(part)
    if not specs:
        raise RmaplabError("--policy is empty", hint=POLICY_HELP)
    return specs


def _policy_list() -> str:
    from rmaplab.model import POLICIES
    from rmaplab.model.plugins import installed

    lines = [f"  {n:<13} {p.summary} ({p.commit})" for n, p in POLICIES.items()]
    lines += [f"  {n:<13} installed plug-in ({v})" for n, v in sorted(installed().items())]
    return "\n".join(lines)


@command("replay")
def _replay(sub) -> None:
    p = sub.add_parser(
        "replay", help="run an event trace through the model under a policy",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Replay a JSONL event trace (.jsonl or .jsonl.gz) through the model of the "
                    "anon rmap and report allocations by call site, live/peak objects, the "
                    "rmap structure and any invariant violations.  Several policies run in "
                    "parallel processes.  --validate compares the replay with the kernel's own "
                    "counts of the traced run (live_counts.json beside the trace, written by "
                    "`rmaplab trace`).\n\npolicies:\n" + _policy_list()
                    + "\n  or PATH.py:Class, package.module:Class (README: Plug-in policies)",
    )
    p.add_argument("trace", type=Path, help="event trace (see README: Event traces)")
    p.add_argument("--policy", default="v6.0", metavar="P[,P...]",
                   help=f"policies to replay under, comma-separated: {POLICY_HELP}; 'all' for "
                        "every built-in one (default v6.0, what this machine runs)")
    p.add_argument("--merge-rule", default="uncowed", choices=["uncowed", "singular"],
                   help="VMA merge rule: 'uncowed' (v6.16+, 879bca0a2c4f) or 'singular' "
                        "(v3.0..v6.15, 965f55dea0e3)")
    p.add_argument("--check", default="incremental", choices=["incremental", "full", "off"],
                   help="invariant checks after each event (default: what it touched)")
    p.add_argument("--jobs", type=int, help="policies replayed at once (default: CPUs)")
    p.add_argument("--validate", action="store_true",
                   help="compare with live_counts.json beside the trace; exit 1 on a mismatch")
    p.add_argument("--tolerance", type=float, default=0.01, metavar="PCT",
                   help="--validate: largest difference per counter, percent (default 0.01)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_run_replay)


def _run_replay(args) -> int:
    from rmaplab import traces

    if args.jobs is not None and args.jobs < 1:
        raise RmaplabError("--jobs must be at least 1")
    policies = policy_specs(args.policy)
    if args.validate:
        return _validate(args, policies)
    events = traces.load(args.trace)

    def progress(done: int, total: int, policy: str, seconds: float) -> None:
        print(f"replay: [{done}/{total}] {policy} done ({seconds:.1f} s)", file=sys.stderr,
              flush=True)

    results = traces.replay_policies(events, policies, merge_rule=args.merge_rule,
                                     check=args.check, source=str(args.trace), jobs=args.jobs,
                                     progress=progress if len(policies) > 1 else None)
    if args.json:
        json_out(results if len(results) > 1 else results[0])
        return 0
    keys = ["anon_vma_alloc", "anon_vma_fork", "anon_vma_prepare", "avc_alloc", "avc_fork",
            "avc_clone", "avc_prepare", "vma_alloc", "peak_anon_vma", "peak_avc",
            "peak_bytes_618", "violation_count"]
    width = max(len(k) for k in keys)
    col = max(13, *(len(r["policy"]) for r in results))
    print(f"{args.trace}: {results[0]['events']} events, merge rule {args.merge_rule}")
    print(f"{'':<{width}} " + " ".join(f"{r['policy']:>{col}}" for r in results))
    for k in keys:
        print(f"{k:<{width}} " + " ".join(f"{r[k]:>{col},}" for r in results))
    for r in results:
        for v in r["violations"][:5]:
            print(f"{r['policy']}: event {v['event']}: {v['invariant']}: {v['detail']}")
    return 0


def _validate(args, policies: list[str]) -> int:
    from rmaplab.measure import capture

    if len(policies) != 1:
        raise RmaplabError("--validate takes one policy: the one the traced kernel runs")
    if not args.tolerance >= 0:
        raise RmaplabError("--tolerance must be a percentage >= 0")
    rows, live_path = capture.validate_trace(args.trace, policies[0], args.merge_rule)
    worst = max(abs(r["diff_pct"]) for r in rows)
    ok = worst <= args.tolerance
    if args.json:
        json_out({"trace": str(args.trace), "live_counts": str(live_path),
                  "policy": policies[0], "tolerance_pct": args.tolerance, "ok": ok,
                  "max_abs_diff_pct": worst, "counters": rows})
    else:
        print(f"{args.trace} under {policies[0]} against {live_path}:")
        print(f"{'counter':<17} {'live':>12} {'model':>12} {'diff':>9}")
        for r in rows:
            flag = "" if abs(r["diff_pct"]) <= args.tolerance else "  MISMATCH"
            print(f"{r['counter']:<17} {r['live']:>12,} {r['model']:>12,} "
                  f"{r['diff_pct']:>+8.4f}%{flag}")
        print(("ok" if ok else "mismatch") + f": largest difference {worst:.4f}% "
              f"(tolerance {args.tolerance}%)")
    return 0 if ok else 1


@command("search")
def _search(sub) -> None:
    p = sub.add_parser(
        "search", help="search for an event sequence that breaks an invariant, and shrink it",
        description="Hypothesis-driven search over fork/exit/mprotect (and, with --with-writes, "
                    "page writes) on a two-page region, steered towards anon_vmas that sit in "
                    "chains of VMAs they are no ancestor of; the first sequence that breaks the "
                    "invariant is shrunk and written as a trace.",
    )
    p.add_argument("--policy", default="v5.4", help=f"the policy to search: {POLICY_HELP}")
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
    from rmaplab.model import get_policy

    name = get_policy(args.policy).name
    print(f"searching under {name} for {args.invariant} (budget {args.budget:,} "
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
        msg = {"found": False, "policy": name, "invariant": args.invariant,
               "examples": args.budget}
        if args.json:
            json_out(msg)
        else:
            print(f"no violation of {args.invariant} under {name} in {args.budget:,} "
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
