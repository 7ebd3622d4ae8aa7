"""`rmaplab sweep`: grids of replays on dask.distributed."""

from __future__ import annotations

from rmaplab.cli import _args
from rmaplab.cli._registry import command, json_out


@command("sweep")
def _sweep(sub) -> None:
    p = sub.add_parser(
        "sweep", help="replay a grid of workloads x policies x parameters x seeds on dask",
        description="Run every cell of a grid on dask.distributed (a LocalCluster unless "
                    "--scheduler is given) and write one Parquet file per cell to OUT, "
                    "partitioned by policy.  A rerun skips cells already done; a failed cell "
                    "is recorded with its error.  --kind generated: the synthetic kernel build "
                    "(rmaplab.generator) with --units/--shell/--make-forks/--shell-forks/--jobs/"
                    "--seeds; "
                    "--kind micro: rmaplab.workloads with --workload/-k/-n; --kind trace: the "
                    "event traces given with --trace.  Plug-in policies (PATH.py:Class) are "
                    "shipped to the workers as source.  Exit status: 0 if "
                    "every cell is ok, 1 if a cell failed, 2 for bad input.",
    )
    from rmaplab.workloads import WORKLOADS

    ints = _args.int_list
    p.add_argument("--out", type=_args.output_dir, required=True, metavar="DIR",
                   help="result dataset directory")
    p.add_argument("--kind", default="generated", choices=["generated", "micro", "trace"])
    p.add_argument("--policy", type=_args.policy_list, default="all", metavar="P[,P...]",
                   help="policies, comma-separated: built-in names, 'all' (every built-in), "
                        "PATH.py:Class, package.module:Class or an installed plug-in's name")
    p.add_argument("--trace", type=_args.nonempty_file, nargs="+", metavar="FILE",
                   help="--kind trace: event traces (.jsonl or .jsonl.gz) to replay")
    p.add_argument("--units", type=_args.float_list(0, 100, above=True), default="1",
                   help="recipes as multiples of the recorded build, e.g. 1,4")
    p.add_argument("--shell", type=_args.choice_list(["sh", "bash", "dash2019"]), default="sh",
                   help="sh, bash and/or dash2019 (a recorded build of each)")
    p.add_argument("--make-forks", type=_args.bool_list, default="no",
                   help="no (make vforks or posix_spawns: 3.82, 4.2+) and/or yes (make 4.0/4.1 "
                        "fork for every recipe)")
    p.add_argument("--shell-forks", type=_args.bool_list, default="no",
                   help="no (dash 0.5.11+ vforks commands) and/or yes (dash 0.5.10 and older "
                        "fork every command: Debian 10); yes only with --shell sh")
    p.add_argument("--jobs", type=ints(1, 1024), default="2", help="make -j")
    p.add_argument("--seeds", type=ints(0, _args.MAX_SEED), default="0", help="seeds, e.g. 0-4")
    p.add_argument("--workload", type=_args.choice_list(WORKLOADS), default="split",
                   help="micro workloads")
    p.add_argument("-k", type=ints(0, 10_000), default="16", help="micro: region VMAs")
    p.add_argument("-n", type=ints(1, 1_000), default="10", help="micro: forks")
    p.add_argument("--scheduler", type=_args.scheduler_address, metavar="ADDR",
                   help="address of an existing dask scheduler (tcp://HOST:PORT)")
    p.add_argument("--workers", type=_args.integer(1, 256),
                   help="LocalCluster workers (default: CPUs)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_run_sweep)


def _run_sweep(args) -> int:
    from rmaplab import sweep
    from rmaplab.errors import RmaplabError

    if args.scheduler and args.workers:
        raise RmaplabError("--workers sizes the local cluster; it cannot apply to --scheduler")
    if (args.kind == "trace") != (args.trace is not None):
        raise RmaplabError("--trace FILE... goes with --kind trace, and --kind trace needs it")
    if args.kind == "trace":
        from rmaplab import traces

        for path in args.trace:               # a broken line: refused before any cluster starts
            traces.load(path)                 # (and cached: the workers read it at once)
        cells = sweep.grid(kind=["trace"], trace=[str(p.resolve()) for p in args.trace],
                           policy=args.policy)
    elif args.kind == "generated":
        if True in args.shell_forks and args.shell != ["sh"]:
            raise RmaplabError("--shell-forks yes models dash's forks: use it with --shell sh")
        axes = {"kind": ["generated"], "units": args.units, "shell": args.shell,
                "make_forks": args.make_forks}
        cells = []
        for forks in args.shell_forks:  # cells without shell_forks: ids as before it existed
            extra = {"shell_forks": [True]} if forks else {}
            cells += sweep.grid(**axes, **extra, jobs=args.jobs, seed=args.seeds,
                                policy=args.policy)
    else:
        cells = sweep.grid(kind=["micro"], workload=args.workload, k=args.k, n=args.n,
                           policy=args.policy)
    counts = sweep.sweep(cells, args.out, scheduler=args.scheduler, workers=args.workers)
    if args.json:
        json_out(counts)
    else:
        print(f"{counts['cells']} cells: {counts['skipped']} already done, {counts['ok']} ok, "
              f"{counts['failed']} failed; results in {args.out}")
    return 0 if counts["failed"] == 0 else 1
