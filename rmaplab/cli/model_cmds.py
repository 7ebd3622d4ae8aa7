"""`rmaplab replay` and `rmaplab search`: the model on traces, and the invariant search."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rmaplab.cli import _args
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
                    + "\n".join(f"  {n:<13} {p.summary} ({p.commit})" for n, p in POLICIES.items())
                    + "\n\nexit status: 0 no invariant broken, 1 an invariant broken (under any "
                      "policy replayed), 2 bad input.",
    )
    p.add_argument("trace", type=_args.nonempty_file, metavar="TRACE",
                   help="event trace (see README: Event traces)")
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
    if not events:
        raise RmaplabError("no events in this trace (only comments or blank lines)",
                           path=args.trace)
    policies = list(POLICIES) if args.policy == "all" else [args.policy]
    results = [traces.replay(events, policy=p, merge_rule=args.merge_rule, check=args.check,
                             source=str(args.trace)).as_dict() for p in policies]
    status = REPLAY_VIOLATIONS if any(r["violations"] for r in results) else 0
    if args.json:
        json_out(results if args.policy == "all" else results[0])
        return status
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
    return status


# `rmaplab replay`'s exit status when the model broke an invariant (scripts test for it).
REPLAY_VIOLATIONS = 1


@command("search")
def _search(sub) -> None:
    from rmaplab.model import POLICIES

    p = sub.add_parser(
        "search", help="search for an event sequence that breaks an invariant, and shrink it",
        description="Hypothesis-driven search over fork/exit/mprotect (and, with --with-writes, "
                    "page writes) on a two-page region, steered towards anon_vmas that sit in "
                    "chains of VMAs they are no ancestor of; the first sequence that breaks the "
                    "invariant is shrunk and written as a trace.  Exit status: 0 found, 1 not "
                    "found within the budget, 2 bad input.",
    )
    p.add_argument("--policy", default="v5.4", choices=list(POLICIES))
    p.add_argument("--invariant", default="same-anon_vma-same-chain",
                   choices=["same-anon_vma-same-chain", "page-unreachable", "page-mapping-freed",
                            "counts", "links", "anon_vma_merge-BUG"])
    p.add_argument("--with-writes", action="store_true", help="also generate page writes")
    p.add_argument("--prefix", type=_args.nonempty_file, metavar="TRACE",
                   help="continue this trace (e.g. an earlier finding minus its last event)")
    p.add_argument("--drop-last", type=_args.non_negative_int, default=0, metavar="N",
                   help="drop the prefix's last N events first")
    p.add_argument("--budget", type=_args.integer(1, 10**9), default=60_000, metavar="N",
                   help="examples to try at most (60000)")
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


def _record_search(path: Path, args, found) -> None:
    from rmaplab import atomic

    summary = _read_summary(path)
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


def _search_prefix(args) -> list[dict] | None:
    """The --prefix trace minus --drop-last events, checked to be a state to continue from."""
    from rmaplab import traces
    from rmaplab.model.machine import EventError, Kernel

    if args.prefix is None:
        if args.drop_last:
            raise RmaplabError("--drop-last applies to a --prefix trace; none given")
        return None
    numbered = traces.load(args.prefix)
    if args.drop_last >= len(numbered):
        raise RmaplabError(f"--drop-last {args.drop_last} would leave nothing of the "
                           f"{len(numbered)} events in the prefix", path=args.prefix)
    numbered = numbered[: len(numbered) - args.drop_last]
    kernel = Kernel(args.policy, check="off")
    for line, ev in numbered:
        try:
            kernel.apply(ev)
        except EventError as e:
            raise RmaplabError(f"{ev['op']}: {e}", path=args.prefix, line=line) from None
    if not kernel.mms:
        raise RmaplabError("no process is alive at the end of the prefix to continue from",
                           path=args.prefix)
    return [ev for _, ev in numbered]


def _run_search(args) -> int:
    from rmaplab import traces
    from rmaplab.model.search import find_violation

    prefix = _search_prefix(args)
    if args.summary is not None:
        _read_summary(args.summary)
    print(f"searching under {args.policy} for {args.invariant} (budget {args.budget:,} "
          "examples)...", file=sys.stderr)
    found = find_violation(args.policy, args.invariant, budget=args.budget,
                           with_writes=args.with_writes, prefix=prefix)
    # The outcome goes to stdout first: a file that cannot be written loses nothing.
    if found is None:
        msg = {"found": False, "policy": args.policy, "invariant": args.invariant,
               "examples": args.budget}
        if args.json:
            json_out(msg)
        else:
            print(f"no violation of {args.invariant} under {args.policy} in {args.budget:,} "
                  "examples")
    elif args.json:
        json_out({"found": True, "policy": found.policy, "invariant": found.invariant,
                   "examples": found.examples, "seed": found.seed,
                   "violation": found.violation, "events": found.events})
    else:
        print(f"violation of {found.invariant} under {found.policy} after {found.examples:,} "
              f"examples, shrunk to {len(found.events)} events:")
        for i, ev in enumerate(found.events):
            print(f"  {i:3d} {traces.dumps(ev)}")
        print(f"  -> event {found.violation['event']}: {found.violation['detail']}")
    sys.stdout.flush()
    try:
        if found is not None and args.output:
            cont = (f" --prefix {args.prefix} --drop-last {args.drop_last}"
                    if args.prefix is not None else "")
            header = (f"# found by `rmaplab search --policy {args.policy} --invariant "
                      f"{args.invariant}{' --with-writes' if args.with_writes else ''}{cont}` "
                      f"after {found.examples} examples (hypothesis seed {found.seed}); shrunk\n"
                      f"# violation at event {found.violation['event']}: "
                      f"{found.violation['detail']}\n")
            traces.write(found.events, args.output, header=header)
        if args.summary:
            _record_search(args.summary, args, found)
    except OSError as e:
        raise RmaplabError(f"cannot write {e.filename or args.output} ({e.strerror or e}); the "
                           "outcome is printed above") from None
    return 0 if found is not None else 1
