"""`rmaplab difftest`: random programs on a real kernel against the model."""

from __future__ import annotations

import argparse

from rmaplab.cli import _args
from rmaplab.cli._registry import command, json_out
from rmaplab.errors import RmaplabError


@command("difftest")
def _difftest(sub) -> None:
    from rmaplab.difftest.generate import Params
    from rmaplab.model.vma import MERGE_RULES

    d = Params()
    p = sub.add_parser(
        "difftest", help="random programs on a real kernel vs the model, exact counts",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Generate N random multi-process programs (fork, exit, mmap, munmap, "
                    "mprotect, madvise, mremap, page writes), run each with the freestanding "
                    "C interpreter on a kernel, and compare its exact anon_vma, AVC and VMA "
                    "allocation counts by call site with the model's replay of the same trace. "
                    "A disagreement is shrunk to a minimal program and saved under "
                    "tests/data/difftest/ (see --case-dir) to be explained and fixed.\n\n"
                    "backends:\n"
                    "  host  this machine's kernel (policy v6.0, merge rule uncowed), perf stat\n"
                    "  uml   User-Mode Linux 6.12 policy kernels (merge rule singular); needs "
                    "rmaplab kernel build\n\n"
                    "With --trace FILE, run that one trace (a difftest program) instead.",
    )
    p.add_argument("-n", type=_args.integer(1, 1_000_000), default=100, help="programs (default 100)")
    p.add_argument("--seed", type=_args.integer(0), default=0, help="seed of the first program (default 0)")
    p.add_argument("--backend", default="host", choices=["host", "uml"])
    p.add_argument("--policy", default=None,
                   help="policy, or 'all' (default: v6.0 on host, all on uml)")
    p.add_argument("--events", type=_args.integer(1, 1000), default=d.events,
                   help=f"operations per program ({d.events})")
    p.add_argument("--procs", type=_args.integer(1, 64), default=d.procs,
                   help=f"most processes alive at once ({d.procs})")
    p.add_argument("--pages", type=_args.integer(2, 100_000), default=d.pages, help=f"arena pages ({d.pages})")
    p.add_argument("--max-map", type=_args.integer(1, 10_000), default=d.max_map,
                   help=f"largest mmap in pages ({d.max_map})")
    p.add_argument("--files", type=_args.integer(0, 8), default=d.files,
                   help=f"files for file-backed private mappings, 0 for none ({d.files})")
    p.add_argument("--like", choices=["host", "uml"],
                   help="generate the programs this other backend runs (--backend host "
                        "--like uml: the UML campaign's programs on the host)")
    p.add_argument("--merge-rule", choices=list(MERGE_RULES),
                   help="the model's VMA merge rule (default: the backend kernel's, uncowed "
                        "for the 6.18 host, singular for 6.12 UML)")
    p.add_argument("--thp", action=argparse.BooleanOptionalAction, default=None,
                   help="the model's kernel has transparent huge pages: MAP_STACK mmaps get "
                        "VM_NOHUGEPAGE, madvise hugepage/nohugepage work (default: the backend "
                        "kernel's, yes for the host, no for UML)")
    p.add_argument("--no-shrink", action="store_true", help="report disagreements unshrunk")
    p.add_argument("--case-dir", type=_args.output_dir, help="where shrunk cases go (tests/data/difftest)")
    p.add_argument("--record", action="store_true",
                   help="write the run to data/raw/difftest/ (and the manifest)")
    p.add_argument("--out", type=_args.output_dir, help="parent directory for --record")
    p.add_argument("--trace", type=_args.existing_file, help="run this one trace instead of random programs")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_run_difftest)


def _policies(backend, choice: str | None) -> list[str]:
    available = list(backend.policies())
    if choice is None:
        return available if backend.name != "host" else ["v6.0"]
    if choice == "all":
        return available
    if choice not in available:
        raise RmaplabError(f"backend {backend.name} cannot run policy {choice!r}",
                           hint="one of: " + ", ".join(available))
    return [choice]


def _run_difftest(args) -> int:
    from rmaplab.difftest import driver
    from rmaplab.difftest.backends import BACKENDS, get_backend
    from rmaplab.difftest.generate import Params

    backend = get_backend(args.backend)
    if args.merge_rule:
        backend.merge_rule = args.merge_rule
    if args.thp is not None:
        backend.thp = args.thp
    policies = _policies(backend, args.policy)
    if args.trace:
        return _run_trace(args, backend, policies)
    params = Params(events=args.events, procs=args.procs, pages=args.pages,
                    max_map=args.max_map, files=args.files,
                    mremap_spans=BACKENDS[args.like or backend.name].mremap_spans,
                    thp=BACKENDS[args.like or backend.name].thp)
    summary, programs, outcomes = driver.run(args.n, args.seed, backend, policies, params,
                                             shrink=not args.no_shrink,
                                             case_dir=args.case_dir)
    if args.record:
        driver.record(summary, programs, outcomes, args.out, extra=backend.metadata())
    result = summary.as_dict()
    if args.json:
        json_out(result)
    else:
        per = result["seconds_per_program"]["mean"]
        print(f"{backend.describe()}, merge rule {backend.merge_rule}"
              f"{'' if backend.thp else ', no THP'}: {result['agree']} of "
              f"{result['runs']} runs agree exactly"
              + (f" ({per * 1000:.0f} ms per program)" if per else ""))
        for policy, count in result["agree_by_policy"].items():
            print(f"  {policy:<13} {count}/{len(summary.seeds)}")
        for m in result["mismatches"]:
            diff = ", ".join(f"{k} kernel {v['kernel']} model {v['model']}"
                             for k, v in m["differences"].items())
            print(f"seed {m['seed']} {m['policy']}: {diff}"
                  + (f" -> {m['case']}" if m["case"] else ""))
        for e in result["errors"]:
            print(f"seed {e['seed']} {e['policy']}: {e['error']}")
        if summary.raw:
            print(f"raw data: {summary.raw}")
    return 0 if result["agree"] == result["runs"] else 1


def _run_trace(args, backend, policies: list[str]) -> int:
    from rmaplab import traces
    from rmaplab.difftest import shrink

    events = [ev for _, ev in traces.load(args.trace)]
    rows = []
    for policy in policies:
        comparison = shrink.run_and_compare(events, backend, policy)
        if comparison is None:
            raise RmaplabError("the model or the kernel refused this program", path=args.trace,
                               hint="a difftest program: spawn of pid 1, then fork, exit, "
                                    "private mmap, munmap, mprotect, madvise, mremap, touch")
        rows.append({"policy": policy, "agree": comparison.agree,
                     "kernel": {k: comparison.live[k] for k in comparison.keys},
                     "model": {k: comparison.model[k] for k in comparison.keys}})
    if args.json:
        json_out(rows)
    else:
        for row in rows:
            print(f"{args.trace} {row['policy']}: {'agree' if row['agree'] else 'DIFFER'}")
            for k, v in row["kernel"].items():
                mark = "" if v == row["model"][k] else "   <--"
                print(f"  {k:<20} kernel {v:>6} model {row['model'][k]:>6}{mark}")
    return 0 if all(r["agree"] for r in rows) else 1
