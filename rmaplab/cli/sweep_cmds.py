"""`rmaplab sweep`: grids of replays on dask.distributed."""

from __future__ import annotations

from pathlib import Path

from rmaplab.cli._registry import command, json_out
from rmaplab.errors import RmaplabError


def _list(text: str, cast=str) -> list:
    out = []
    for part in text.split(","):
        part = part.strip()
        if cast is int and "-" in part[1:]:
            lo, hi = part.split("-", 1)
            out += list(range(int(lo), int(hi) + 1))
        elif cast is bool:
            if part.lower() not in ("yes", "no", "true", "false", "1", "0"):
                raise RmaplabError(f"expected yes or no, got {part!r}")
            out.append(part.lower() in ("yes", "true", "1"))
        else:
            try:
                out.append(cast(part))
            except ValueError:
                raise RmaplabError(f"cannot read {part!r} as {cast.__name__}") from None
    return out


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
                    "--kind micro: rmaplab.workloads with --workload/-k/-n.",
    )
    p.add_argument("--out", type=Path, required=True, help="result dataset directory")
    p.add_argument("--kind", default="generated", choices=["generated", "micro"])
    p.add_argument("--policy", default="all", help="policies, comma-separated, or all")
    p.add_argument("--units", default="1", help="recipes as multiples of the recorded build")
    p.add_argument("--shell", default="sh", help="sh and/or bash")
    p.add_argument("--make-forks", default="no",
                   help="no (make vforks or posix_spawns: 3.82, 4.2+) and/or yes (make 4.0/4.1 "
                        "fork for every recipe)")
    p.add_argument("--shell-forks", default="no",
                   help="no (dash 0.5.11+ vforks commands) and/or yes (dash 0.5.10 and older "
                        "fork every command: Debian 10); yes only with --shell sh")
    p.add_argument("--jobs", default="2", help="make -j")
    p.add_argument("--seeds", default="0", help="seeds, e.g. 0-4")
    p.add_argument("--workload", default="split", help="micro workloads")
    p.add_argument("-k", default="16", help="micro: region VMAs")
    p.add_argument("-n", default="10", help="micro: forks")
    p.add_argument("--scheduler", help="address of an existing dask scheduler")
    p.add_argument("--workers", type=int, help="LocalCluster workers (default: CPUs)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_run_sweep)


def _run_sweep(args) -> int:
    from rmaplab import sweep
    from rmaplab.model import POLICIES

    policies = list(POLICIES) if args.policy == "all" else _list(args.policy)
    unknown = [p for p in policies if p not in POLICIES]
    if unknown:
        raise RmaplabError(f"unknown policy {unknown[0]!r}", hint="one of: " + ", ".join(POLICIES))
    if args.kind == "generated":
        shells = _list(args.shell)
        bad = [s for s in shells if s not in ("sh", "bash", "dash2019")]
        if bad:
            raise RmaplabError(f"unknown shell {bad[0]!r}",
                               hint="sh, bash or dash2019 (a recorded build of each)")
        shell_forks = _list(args.shell_forks, bool)
        if True in shell_forks and shells != ["sh"]:
            raise RmaplabError("--shell-forks yes models dash's forks: use it with --shell sh")
        axes = {"kind": ["generated"], "units": _list(args.units, float), "shell": shells,
                "make_forks": _list(args.make_forks, bool)}
        cells = []
        for forks in shell_forks:   # cells without shell_forks: ids as before it existed
            extra = {"shell_forks": [True]} if forks else {}
            cells += sweep.grid(**axes, **extra, jobs=_list(args.jobs, int),
                                seed=_list(args.seeds, int), policy=policies)
    else:
        cells = sweep.grid(kind=["micro"], workload=_list(args.workload), k=_list(args.k, int),
                           n=_list(args.n, int), policy=policies)
    counts = sweep.sweep(cells, args.out, scheduler=args.scheduler, workers=args.workers)
    if args.json:
        json_out(counts)
    else:
        print(f"{counts['cells']} cells: {counts['skipped']} already done, {counts['ok']} ok, "
              f"{counts['failed']} failed; results in {args.out}")
    return 0 if counts["failed"] == 0 else 1
