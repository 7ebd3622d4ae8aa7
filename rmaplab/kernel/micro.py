"""The micro workloads in the UML policy kernel against the model, policy by policy.

The same C program as on the host (rmaplab.measure.micro, workloads/avwork.c) runs
in the guest under every policy, with K region VMAs and with none; the difference
(K, N) - (0, N) of every counter the kernel reports by call site is compared with
the same difference of the model replaying rmaplab.workloads' trace under that
policy, with the program's own exit appended (so frees compare too).  6.12 still has the singular-chain merge rule of 965f55dea0e3, so the model
runs with ``merge_rule="singular"``.
"""

from __future__ import annotations

import pandas as pd

from rmaplab.kernel.run import Job, run_jobs
from rmaplab.measure import micro
from rmaplab.model.policies import POLICIES

# Every counter the guest kernel and the model both keep, by call site.
COMPARED = ("anon_vma_fork", "anon_vma_prepare", "anon_vma_free", "avc_fork", "avc_clone_fork",
            "avc_clone_split", "avc_clone_merge", "avc_clone_copy_vma", "avc_prepare",
            "avc_free", "vma_alloc", "vma_free", "mm_forks", "reuse_at_fork", "share_at_fork",
            "prepare_reused_neighbour")
MERGE_RULE = "singular"


def jobs(k: int, n: int, modes=micro.MODES, policies=tuple(POLICIES)) -> list[Job]:
    exe = str(micro.binary())
    return [Job(p, [exe, mode, str(kk), str(n)])
            for p in policies for mode in modes for kk in (k, 0)]


def compare(k: int = 16, n: int = 10, modes=micro.MODES,
            policies=tuple(POLICIES)) -> pd.DataFrame:
    """One row per (policy, mode, counter): live delta, model delta, exact agreement."""
    todo = jobs(k, n, modes, policies)
    results = run_jobs(todo).results
    rows = []
    for i in range(0, len(todo), 2):
        full, base, job = results[i], results[i + 1], todo[i]
        mode = job.argv[1]
        for res in (full, base):
            if res["failed"]:
                raise RuntimeError(f"{' '.join(job.argv)} failed under {job.policy}: "
                                   f"{res['error'] or res['stderr']}")
        model = micro.model_delta(mode, k, n, job.policy, MERGE_RULE, COMPARED,
                                  exit_at_end=True)
        for counter in COMPARED:
            live = full[counter] - base[counter]
            rows.append({"policy": job.policy, "mode": mode, "counter": counter, "live": live,
                         "model": model[counter], "match": live == model[counter]})
    return pd.DataFrame(rows)
