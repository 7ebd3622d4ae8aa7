"""Sweeps on a LocalCluster started here: results, a failing cell, resuming."""

from __future__ import annotations

import pytest

from rmaplab import sweep, traces, workloads


@pytest.fixture(scope="module")
def cluster():
    from dask.distributed import LocalCluster

    c = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                     scheduler_kwargs={"dashboard_address": ":0"})
    yield c.scheduler_address
    c.close()


def test_sweep_records_results_and_failures_and_resumes(tmp_path, cluster):
    cells = sweep.grid(kind=["micro"], workload=["split", "chainx"], k=[8], n=[4],
                       policy=["v5.4", "v6.0", "no-such-policy"])
    out = tmp_path / "results"
    first = sweep.sweep(cells, out, scheduler=cluster, log=lambda s: None)
    assert first == {"cells": 6, "skipped": 0, "ok": 4, "failed": 2}
    df = sweep.load(out)
    assert len(df) == 6
    failed = df[df.status == "failed"]
    assert set(failed.policy) == {"no-such-policy"}
    assert failed.error.str.contains("unknown policy").all()
    # The results are the model's: compare one cell with a direct replay.
    row = df[(df.policy == "v6.0") & (df.workload == "chainx")].iloc[0]
    direct = traces.replay(workloads.numbered(workloads.chain_exited(8, 4)), policy="v6.0")
    assert row.anon_vma_alloc == direct.counters["anon_vma_alloc"]
    # A rerun skips what is done and retries only the failed cells.
    second = sweep.sweep(cells, out, scheduler=cluster, log=lambda s: None)
    assert second == {"cells": 6, "skipped": 4, "ok": 0, "failed": 2}


def test_cell_ids_are_stable_and_distinct():
    a = {"kind": "micro", "workload": "split", "k": 8, "n": 4, "policy": "v6.0"}
    assert sweep.cell_id(a) == sweep.cell_id(dict(reversed(list(a.items()))))
    assert sweep.cell_id(a) != sweep.cell_id({**a, "policy": "v5.4"})
