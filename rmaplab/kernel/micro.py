"""The micro workloads in the UML policy kernel against the model, policy by policy.

The same C program as on the host (rmaplab.measure.micro, workloads/avwork.c) runs
in the guest under every policy, with K region VMAs and with none; the difference
(K, N) - (0, N) of every counter the kernel reports by call site is compared with
the same difference of the model replaying rmaplab.workloads' trace under that
policy, with the program's own exit appended (so frees compare too).  6.12 still has
the singular-chain merge rule of 965f55dea0e3, so the model runs with
``merge_rule="singular"``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from pathlib import Path
from typing import Any

import pandas as pd

from rmaplab.errors import RmaplabError
from rmaplab.kernel.run import Job, run_jobs
from rmaplab.measure import host, micro, record
from rmaplab.model.policies import KERNEL_POLICIES as POLICIES  # the five patched into the kernel
from rmaplab.paths import raw_dir

# Every counter the guest kernel and the model both keep, by call site.
COMPARED = ("anon_vma_fork", "anon_vma_prepare", "anon_vma_free", "avc_fork", "avc_clone_fork",
            "avc_clone_split", "avc_clone_merge", "avc_clone_copy_vma", "avc_prepare",
            "avc_free", "vma_alloc", "vma_free", "mm_forks", "reuse_at_fork", "share_at_fork",
            "prepare_reused_neighbour")
MERGE_RULE = "singular"


def jobs(k: int, n: int, modes=micro.MODES, policies=tuple(POLICIES)) -> list[Job]:
    """For each policy and mode: the (K, N) run, then the (0, N) run."""
    exe = str(micro.binary())
    return [Job(p, [exe, mode, str(kk), str(n)])
            for p in policies for mode in modes for kk in (k, 0)]


def compare_results(todo: list[Job], results: list[dict[str, Any]], k: int,
                    n: int) -> pd.DataFrame:
    """One row per (policy, mode, counter): live delta, model delta, exact agreement."""
    rows = []
    for i in range(0, len(todo), 2):
        full, base, job = results[i], results[i + 1], todo[i]
        mode = job.argv[1]
        for res in (full, base):
            if res["failed"]:
                raise RmaplabError(f"{' '.join(res['argv'])} failed under {job.policy}: "
                                   f"{res['error'] or res['stderr'].strip()}")
        model = micro.model_delta(mode, k, n, job.policy, MERGE_RULE, COMPARED,
                                  exit_at_end=True)
        for counter in COMPARED:
            live = full[counter] - base[counter]
            rows.append({"policy": job.policy, "mode": mode, "counter": counter, "live": live,
                         "model": model[counter], "match": live == model[counter]})
    return pd.DataFrame(rows)


def compare(k: int = 16, n: int = 10, modes=micro.MODES,
            policies=tuple(POLICIES)) -> pd.DataFrame:
    todo = jobs(k, n, modes, policies)
    return compare_results(todo, run_jobs(todo).results, k, n)


def campaign(k: int, n: int, modes, policies, keep: bool,
             out_root: Path | None = None) -> tuple[pd.DataFrame, Path | None]:
    """Run and compare; with ``keep``, write the runs and the comparison to data/raw/uml/."""
    parent = out_root or raw_dir() / "uml"
    if keep:
        record.check_destination(parent)
    todo = jobs(k, n, modes, policies)
    batch = run_jobs(todo)
    table = compare_results(todo, batch.results, k, n)
    if not keep:
        return table, None
    meta = {"what": "micro workloads (avwork.c) in the UML policy kernel",
            "kernel": batch.kernel.describe(), "host": host.describe(), "k": k, "n": n,
            "modes": list(modes), "policies": list(policies), "model_merge_rule": MERGE_RULE,
            "avwork_sha256": hashlib.sha256(micro.source()).hexdigest()}
    keys = ["policy", "argv", "exit_status", "failed", *COMPARED]

    def write(d: Path) -> None:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=keys, extrasaction="ignore")
        writer.writeheader()
        writer.writerows({**r, "argv": " ".join(r["argv"][1:])} for r in batch.results)
        (d / "metadata.json").write_text(json.dumps(meta, indent=1) + "\n")
        (d / "runs.csv").write_text(buf.getvalue())
        table.to_csv(d / "comparison.csv", index=False)

    return table, record.save(parent, record.run_name(f"micro-k{k}-n{n}"), write)
