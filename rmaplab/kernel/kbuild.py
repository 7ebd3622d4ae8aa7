"""The tinyconfig kernel build inside the UML kernel, counted under each reuse policy.

The workload is the one of rmaplab.measure.kbuild on the host: Debian's
linux-source-6.12, ``make tinyconfig``, then ``make -s -jN`` with the default
``/bin/sh`` (dash) and with ``SHELL=/bin/bash``, each after an uncounted
``make -s clean``.  Here it runs inside the guest (one boot, the policy switched
before each job) with the host's toolchain through the read-only view of the host's
file system; the tree (``$RMAPLAB_CACHE/uml/kbuild/linux-source-6.12``, or ``--tree``;
one campaign at a time per tree) is mounted read-write.  The guest is otherwise idle, so the counts are the build's.

A campaign writes a new directory under ``data/raw/uml/`` atomically and adds it to
the manifest: ``metadata.json`` (kernel with its patches' hashes, host, command,
tree, policies), ``runs.csv`` (one row per counted build: policy, shell, exit
status, every counter, slab totals) and ``NN-<policy>-<shell>.log.gz`` (make's output).
"""

from __future__ import annotations

import csv
import fcntl
import gzip
import io
import json
import os
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from rmaplab.errors import RmaplabError
from rmaplab.kernel import source
from rmaplab.kernel.run import Job, run_jobs
from rmaplab.measure import host, record
from rmaplab.measure.kbuild import SOURCE_PACKAGE, TARBALL
from rmaplab.paths import raw_dir

SHELLS = {"sh": [], "bash": ["SHELL=/bin/bash"]}
COUNTED = ("anon_vma_alloc", "anon_vma_fork", "anon_vma_prepare", "avc_alloc", "avc_fork",
           "avc_clone", "avc_clone_fork", "avc_clone_split", "avc_clone_merge",
           "avc_clone_copy_vma", "avc_prepare", "vma_alloc", "forks", "mm_forks", "execs",
           "reuse_at_fork", "share_at_fork", "prepare_reused_neighbour")


# Marker: the guest has built this tree once.  The first guest build after unpacking -- or
# after a build on the host, whose kbuild command lines differ -- also rebuilds kbuild's
# host tools (fixdep, kconfig, modpost), which `make clean` keeps: ~150 more mm-copying
# forks than every later guest build.  _campaign makes that build first, uncounted.
WARMED = ".rmaplab-guest-warmed"


def default_tree() -> Path:
    return source.uml_dir() / "kbuild" / SOURCE_PACKAGE


def ensure_tree(tree: Path, log) -> Path:
    """The tinyconfig'd tree the guest builds (unpacked atomically, configured once)."""
    if not (tree / ".config").exists():
        tree.parent.mkdir(parents=True, exist_ok=True)
        if not (tree / "Makefile").exists():
            tmp = Path(tempfile.mkdtemp(dir=tree.parent, prefix=".unpack-"))
            log(f"unpacking {TARBALL} into {tree}")
            subprocess.run(["tar", "-xJf", str(TARBALL), "-C", str(tmp)], check=True)
            os.rename(tmp / SOURCE_PACKAGE, tree)
            tmp.rmdir()
        log("make tinyconfig")
        subprocess.run(["make", "-s", "tinyconfig"], cwd=tree, check=True,
                       stdout=subprocess.DEVNULL)
    return tree


def jobs_for(policies: list[str], shells: list[str], tree: Path, jobs: int) -> list[Job]:
    """Per (policy, shell): the uncounted clean, then the counted build."""
    out = []
    for policy in policies:
        for shell in shells:
            out.append(Job(policy, ["/usr/bin/make", "-s", "clean"], cwd=str(tree)))
            out.append(Job(policy, ["/usr/bin/make", "-s", f"-j{jobs}", *SHELLS[shell]],
                           cwd=str(tree)))
    return out


@contextmanager
def _tree_lock(tree: Path) -> Iterator[None]:
    """One campaign per tree: two would clean and build over each other."""
    with open(tree.parent / f".{tree.name}.lock", "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RmaplabError("another kbuild campaign is using this tree", path=tree,
                               hint="wait, or give this one its own --tree") from None
        yield


def campaign(policies: list[str], shells: list[str], jobs: int = 2, mem: str = "2G",
             out_root: Path | None = None, tree: Path | None = None,
             log=lambda s: print(s, flush=True)) -> tuple[dict[str, Any], Path]:
    """Run and record the builds; returns (the recorded result, its directory)."""
    parent = out_root or raw_dir() / "uml"
    record.check_destination(parent)
    tree = (tree or default_tree()).absolute()
    tree.parent.mkdir(parents=True, exist_ok=True)
    with _tree_lock(tree):
        ensure_tree(tree, log)
        return _campaign(policies, shells, jobs, mem, parent, tree, log)


def _campaign(policies: list[str], shells: list[str], jobs: int, mem: str,
              parent: Path, tree: Path, log) -> tuple[dict[str, Any], Path]:
    todo = jobs_for(policies, shells, tree, jobs)
    warm = not (tree / WARMED).exists()
    if warm:
        todo = jobs_for(policies[:1], shells[:1], tree, jobs) + todo
    labels = [(p, s) for p in policies for s in shells]
    log(("one uncounted warm-up build, then " if warm else "")
        + f"{len(labels)} counted builds in one boot: "
        + ", ".join(f"{p}/{s}" for p, s in labels))
    start = time.perf_counter()
    batch = run_jobs(todo, writable=[tree], mem=mem, log=log)
    results = batch.results
    if warm:
        if results[1]["failed"]:
            raise RmaplabError("the warm-up build failed in the guest: "
                               f"{results[1]['error'] or results[1]['stderr'][-300:]}")
        (tree / WARMED).touch()
        results = results[2:]
    runs, logs = [], {}
    for i, ((policy, shell), clean, res) in enumerate(
            zip(labels, results[0::2], results[1::2], strict=True), 1):
        if clean["failed"]:
            raise RmaplabError(f"make clean failed under {policy}: "
                               f"{clean['error'] or clean['stderr'][-300:]}")
        row = {"policy": policy, "shell": shell, "exit_status": res["exit_status"],
               "failed": res["failed"], "error": res["error"], "strays": res["strays"]}
        row.update({k: res.get(k) for k in COUNTED})
        row.update({f"slab_{c}": n for c, n in res["slab"].items()})
        runs.append(row)
        logs[f"{i:02d}-{policy}-{shell}.log.gz"] = gzip.compress(
            (res["stdout"] + res["stderr"]).encode(), mtime=0)
        log(f"  {policy}/{shell}: anon_vma {row['anon_vma_alloc']}, avc {row['avc_alloc']}"
            + (" FAILED" if res["failed"] else ""))
    meta = {
        "what": "tinyconfig kernel build inside the UML policy kernel",
        "kernel": batch.kernel.describe(),
        "host": host.describe(),
        "tree": str(tree),
        "tree_version": source.kernel_version(tree),
        "source_package_version": source.package_version(),
        "commands": {s: ["make", "-s", f"-j{jobs}", *SHELLS[s]] for s in shells},
        "before_each": ["make", "-s", "clean"],
        "policies": policies, "shells": shells, "jobs": jobs, "guest_mem": mem,
        "boots": batch.boots, "warm_up_build": warm,
        "host_seconds": round(time.perf_counter() - start, 1),
        "counting": "differences of /proc/rmaplab_counters around each build, idle guest",
    }
    result = {"metadata": meta, "runs": runs}

    def write(d: Path) -> None:
        (d / "metadata.json").write_text(json.dumps(meta, indent=1) + "\n")
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(runs[0]))
        writer.writeheader()
        writer.writerows(runs)
        (d / "runs.csv").write_text(buf.getvalue())
        for name, data in logs.items():
            (d / name).write_bytes(data)

    target = record.save(parent, record.run_name(f"kbuild-tinyconfig-j{jobs}"), write)
    return result, target


def load(directories: list[Path]) -> pd.DataFrame:
    """Recorded campaigns as one table: runs.csv rows plus the kernel key and directory."""
    frames = []
    for d in directories:
        meta = json.loads((d / "metadata.json").read_text())
        runs = pd.read_csv(d / "runs.csv")
        runs["kernel_key"] = meta["kernel"]["key"]
        runs["campaign"] = d.name
        frames.append(runs)
    if not frames:
        raise RmaplabError("no kbuild campaigns given")
    return pd.concat(frames, ignore_index=True)


def table(result: dict[str, Any]) -> pd.DataFrame:
    cols = ["policy", "shell", "exit_status", "anon_vma_alloc", "anon_vma_fork",
            "anon_vma_prepare", "avc_alloc", "vma_alloc", "mm_forks", "execs"]
    return pd.DataFrame(result["runs"])[cols]
