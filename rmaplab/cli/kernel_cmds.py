"""`rmaplab kernel build|run|kbuild`: UML policy kernels (rmaplab.kernel)."""

from __future__ import annotations

import argparse
import re
import shutil
import sys
from pathlib import Path
from typing import Any

from rmaplab.cli import _args
from rmaplab.cli._registry import command, json_out
from rmaplab.errors import RmaplabError

# The keys `rmaplab measure --json` prints, in its order; times are not reported.
MEASURE_KEYS = ("anon_vma_alloc", "anon_vma_fork", "anon_vma_prepare", "avc_alloc", "avc_fork",
                "avc_clone", "avc_prepare", "vma_alloc", "forks", "mm_forks", "execs")
FINER_KEYS = ("avc_clone_fork", "avc_clone_split", "avc_clone_merge", "avc_clone_copy_vma",
              "anon_vma_free", "avc_free", "vma_free", "reuse_at_fork", "share_at_fork",
              "prepare_reused_neighbour")


def _policy_list(text: str) -> list[str]:
    """Built-in policies only: a plug-in is Python run by the model, not C in the kernel."""
    from rmaplab.model import plugins
    from rmaplab.model.policies import KERNEL_POLICIES as POLICIES  # what the UML patches implement

    for part in (p.strip() for p in text.split(",")):
        if part not in POLICIES and (":" in part or part in plugins.installed()):
            raise _args.Invalid(
                f"{part!r} is a plug-in policy, and the UML kernel only has the "
                f"{len(POLICIES)} built-in policies ({', '.join(POLICIES)}); replay, search "
                "or sweep a plug-in with the model")
    return _args.choice_list(POLICIES, everything="all")(text)


def _shell_list(text: str) -> list[str]:
    from rmaplab.kernel.kbuild import SHELLS

    return _args.choice_list(SHELLS)(text)


def _modes(chosen: list[str] | None) -> tuple[str, ...]:
    from rmaplab.workloads import WORKLOADS

    modes = tuple(chosen or WORKLOADS)
    if len(set(modes)) != len(modes):
        twice = next(m for m in modes if modes.count(m) > 1)
        raise RmaplabError(f"--mode {twice} is given twice")
    return modes


def _mem(text: str) -> str:
    if not re.fullmatch(r"[1-9][0-9]*[KMG]", text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a size such as 512M or 2G")
    return text


@command("kernel")
def _kernel(sub) -> None:
    from rmaplab.workloads import WORKLOADS

    p = sub.add_parser(
        "kernel", help="UML kernels of linux-source-6.12 with every reuse policy patched in",
        description="Build one User-Mode Linux kernel that carries every anon_vma reuse policy "
                    "(rmaplab/kernel/patches/), and run commands in it with exact allocation "
                    "counts by call site.")
    ks = p.add_subparsers(dest="kernel_command", required=True, metavar="SUBCOMMAND")

    b = ks.add_parser(
        "build", help="build (or reuse) the UML kernel",
        description="Install missing packages (apt-get, as root), unpack linux-source-6.12 into "
                    "$RMAPLAB_CACHE/uml, apply the patch series, configure (uml.config) and "
                    "build; boot it once under every policy.  Cached: a second build does "
                    "nothing, a patch edit rebuilds only what it touches.")
    b.add_argument("--jobs", type=_args.integer(1, 64), help="make -j (default: number of CPUs)")
    b.add_argument("--fresh", action="store_true",
                   help="unpack and build from scratch (the cached kernels stay)")
    b.add_argument("--json", action="store_true", help="print the kernel's metadata as JSON")
    b.set_defaults(func=_run_build)

    r = ks.add_parser(
        "run", help="run a command in the UML kernel under a policy and count",
        description="Boot the UML kernel, switch to each policy, run CMD and report the "
                    "differences of /proc/rmaplab_counters around it (the keys of `rmaplab "
                    "measure --json` plus finer call sites and SLUB statistics).  The host's "
                    "files appear read-only at the same paths in the guest (and at /host); "
                    "--rw mounts a host directory read-write.  Times inside UML are not "
                    "representative and are not reported.",
        usage="rmaplab kernel run --policy P|all [--json] [--rw DIR]... [--cwd DIR] [--mem SIZE] "
              "[--timeout S] -- CMD [ARG...]")
    r.add_argument("--policy", required=True, type=_policy_list,
                   help="a policy, a comma list, or all")
    r.add_argument("--json", action="store_true")
    r.add_argument("--rw", action="append", default=[], metavar="DIR", type=_args.existing_dir,
                   help="host directory the command may write (repeatable)")
    r.add_argument("--cwd", type=_args.existing_dir, default=None,
                   help="working directory (default: the current one)")
    r.add_argument("--mem", type=_mem, default=None, help="guest memory (default 512M)")
    r.add_argument("--timeout", type=_args.real(0, above=True), default=None,
                   help="seconds per boot")
    r.add_argument("cmd", nargs=argparse.REMAINDER, help="-- CMD [ARG...]")
    r.set_defaults(func=_run_run)

    m = ks.add_parser(
        "micro", help="the micro workloads in the UML kernel vs the model, every policy",
        description="Run avwork MODE K N and MODE 0 N under each policy in one boot and compare "
                    "the (K,N)-(0,N) differences of every call-site counter with the model's "
                    "(--merge-rule singular, the rule of 6.12).  --record writes the runs and "
                    "the comparison to data/raw/uml/.")
    m.add_argument("-k", type=_args.integer(1, 4096), default=16, help="VMAs in the region (16)")
    m.add_argument("-n", type=_args.integer(1, 4096), default=10,
                   help="forks or generations (10)")
    m.add_argument("--mode", action="append", choices=list(WORKLOADS),
                   help="workload(s) (default: all)")
    m.add_argument("--policy", default="all", type=_policy_list, help="policies (default all)")
    m.add_argument("--record", action="store_true", help="write data/raw/uml/<time>-micro-...")
    m.add_argument("--out", type=_args.output_dir, help="parent directory (default data/raw/uml)")
    m.add_argument("--json", action="store_true")
    m.set_defaults(func=_run_micro)

    k = ks.add_parser(
        "kbuild", help="count the tinyconfig kernel build inside the UML kernel, every policy",
        description="Unpack linux-source-6.12 into $RMAPLAB_CACHE/uml/kbuild, make tinyconfig, "
                    "and inside the guest run `make -s clean` (not counted) then `make -s -jN` "
                    "with the default /bin/sh and with SHELL=/bin/bash, under each policy.  "
                    "Records a new directory under data/raw/uml/ (metadata, counts, logs).")
    k.add_argument("--policy", default="all", type=_policy_list, help="policies (default all)")
    k.add_argument("--shell", default="sh,bash", type=_shell_list,
                   help="sh, bash or both (default sh,bash)")
    k.add_argument("--jobs", type=_args.integer(1, 64), default=2,
                   help="make -j inside the guest (2)")
    k.add_argument("--mem", type=_mem, default="2G", help="guest memory (2G)")
    k.add_argument("--out", type=_args.output_dir, help="parent directory (default data/raw/uml)")
    k.add_argument("--tree", type=_args.output_dir,
                   help="source tree to build in (default $RMAPLAB_CACHE/uml/kbuild/"
                        "linux-source-6.12; unpacked there if missing)")
    k.add_argument("--json", action="store_true")
    k.set_defaults(func=_run_kbuild)


def _run_build(args) -> int:
    from rmaplab.kernel import build

    kernel = build.build(jobs=args.jobs, fresh=args.fresh)
    if args.json:
        json_out(kernel.meta | {"path": str(kernel.path)})
    return 0


def _resolve(cmd: list[str]) -> list[str]:
    """argv[0] as an absolute path, found on the host's PATH like a shell would."""
    if "/" in cmd[0]:
        return [str(Path(cmd[0]).absolute()), *cmd[1:]]
    found = shutil.which(cmd[0])
    if found is None:
        raise RmaplabError(f"{cmd[0]}: command not found on PATH")
    return [found, *cmd[1:]]


def summary(res: dict[str, Any], kernel: dict[str, Any]) -> dict[str, Any]:
    """One job's result with measure --json's keys first, then the rest."""
    out: dict[str, Any] = {"policy": res["policy"]}
    out.update({k: res.get(k) for k in MEASURE_KEYS})
    out.update(real=None, user=None, sys=None)       # not representative inside UML
    out.update({k: res.get(k) for k in FINER_KEYS})
    out.update(slab=res["slab"], exit_status=res["exit_status"], failed=res["failed"],
               error=res["error"], strays=res["strays"], command=res["argv"], cwd=res["cwd"],
               stdout=res["stdout"], stderr=res["stderr"], kernel=kernel)
    return out


def _run_run(args) -> int:
    import os

    from rmaplab.kernel.run import DEFAULT_MEM, Job, run_jobs

    policies = args.policy
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        raise RmaplabError("no command to run", hint="rmaplab kernel run --policy P -- CMD")
    cwd = str(Path(args.cwd or os.getcwd()).absolute())
    argv = _resolve(cmd)
    batch = run_jobs([Job(p, argv, cwd=cwd) for p in policies], writable=args.rw,
                     mem=args.mem or DEFAULT_MEM, timeout=args.timeout)
    kernel = batch.kernel.describe()
    rows = [summary(res, kernel) for res in batch.results]
    if args.json:
        json_out(rows[0] if len(rows) == 1 else {"kernel": kernel, "runs": rows})
    else:
        _print_table(rows)
    return first_failure(rows)


def first_failure(rows: list[dict[str, Any]]) -> int:
    """0, or the first failed command's own status (shell style: 128+N for signal N; 127
    if it could not be executed; 1 if the guest stopped under it)."""
    for r in rows:
        if r["failed"]:
            status = r["exit_status"]
            if status is None:
                return 127 if r["error"].startswith("cannot ") else 1
            return 128 - status if status < 0 else status
    return 0


def _print_table(rows: list[dict[str, Any]]) -> None:
    keys = [*MEASURE_KEYS, *FINER_KEYS]
    print(f"{'':<25}" + "".join(f"{r['policy']:>13}" for r in rows))
    for k in keys:
        print(f"{k:<25}" + "".join(f"{r[k] if r[k] is not None else '-':>13}" for r in rows))
    for c in ("anon_vma", "anon_vma_chain", "vm_area_struct"):
        print(f"{'slab ' + c:<25}" + "".join(f"{r['slab'].get(c, '-'):>13}" for r in rows))
    print(f"{'exit status':<25}" + "".join(f"{str(r['exit_status']):>13}" for r in rows))
    for r in rows:
        if r["stdout"]:
            sys.stdout.write(f"--- stdout ({r['policy']})\n{r['stdout']}")
        if r["failed"]:
            from rmaplab.measure.run import status_text

            what = r["error"] or status_text(r["exit_status"])
            tail = r["stderr"].strip()[-500:]
            print(f"FAILED under {r['policy']}: {what}" + (f": {tail}" if tail else ""),
                  file=sys.stderr)


def _run_micro(args) -> int:
    from rmaplab.kernel import micro

    table, where = micro.campaign(args.k, args.n, _modes(args.mode), args.policy, args.record,
                                  out_root=args.out)
    if args.json:
        json_out(table.to_dict(orient="records"))
    else:
        wide = table.pivot_table(index=["mode", "counter"], columns="policy", values="live",
                                 aggfunc="first", sort=False)[list(table["policy"].unique())]
        print(wide.to_string())
        print(f"{int(table['match'].sum())} of {len(table)} counters equal the model's"
              + (f"; recorded in {where}" if where else ""))
        for row in table[~table["match"]].itertuples():
            print(f"MISMATCH {row.policy} {row.mode} {row.counter}: kernel {row.live}, "
                  f"model {row.model}")
    return 0 if table["match"].all() else 1


def _run_kbuild(args) -> int:
    from rmaplab.kernel import kbuild

    result, where = kbuild.campaign(args.policy, args.shell, jobs=args.jobs,
                                    mem=args.mem, out_root=args.out, tree=args.tree)
    if args.json:
        json_out(result)
    else:
        print(kbuild.table(result).to_string(index=False))
        print(f"recorded in {where}")
    return first_failure(result["runs"])
