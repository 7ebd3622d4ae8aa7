"""Sweeps on a LocalCluster started here: results, a failing cell, resuming."""

from __future__ import annotations

import json

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


def test_a_cell_may_choose_the_merge_rule_and_record_walks():
    base = {"kind": "micro", "workload": "split", "k": 4, "n": 2, "policy": "v5.5"}
    own = sweep.run_cell(base)
    assert own["status"] == "ok" and own["merge_rule"] == "singular" and "walks" not in own
    other = sweep.run_cell({**base, "merge_rule": "uncowed", "walks": True})
    assert other["status"] == "ok" and other["merge_rule"] == "uncowed"
    walks = json.loads(other["walks"])
    assert sum(w["vmas"] for w in walks if w["moment"] == "fork" and w["side"] == "child") == 8
def test_committed_sweep_cells_replay_to_their_stored_counts_with_todays_generator():
    """The sweep behind notebook 05 stays valid as the generator changes: one stored cell
    with make forking (the path the shell_forks change touched) replays to the same counts."""
    from rmaplab.paths import data_dir

    stored = sweep.load(data_dir() / "sweeps" / "kbuild-2019")
    row = stored[(stored.units == 1.0) & (stored.shell == "sh") & stored.make_forks
                 & ~stored.shell_forks & (stored.policy == "v6.0") & (stored.seed == 0)].iloc[0]
    cell = {k: row[k].item() if hasattr(row[k], "item") else row[k]
            for k in ("kind", "units", "shell", "make_forks", "jobs", "seed", "policy")}
    assert sweep.cell_id(cell) == row.cell
    again = sweep.run_cell(cell)
    assert again["status"] == "ok", again["error"]
    for key in ("anon_vma_alloc", "avc_alloc", "vma_alloc", "mm_forks", "fork_walk_sum"):
        assert again[key] == row[key], key


def test_shell_forks_is_a_cell_parameter_and_false_when_absent():
    base = {"kind": "generated", "units": 1.0, "shell": "sh", "make_forks": False, "jobs": 2,
            "seed": 0, "policy": "v6.0"}
    assert sweep.cell_id(base) != sweep.cell_id({**base, "shell_forks": True})
    wrong = sweep.run_cell({**base, "shell": "bash", "shell_forks": True})
    assert wrong["status"] == "failed" and "shell_forks" in wrong["error"]


def test_trace_cells_name_traces_relative_to_the_repository(tmp_path, monkeypatch):
    """A trace cell's id does not depend on where the checkout is; the trace is replayed."""
    monkeypatch.setenv("RMAPLAB_ROOT", str(tmp_path))
    traces.write(workloads.split(4, 2), tmp_path / "traces" / "t.jsonl")
    row = sweep.run_cell({"kind": "trace", "trace": "traces/t.jsonl", "policy": "v6.0"})
    direct = traces.replay(workloads.numbered(workloads.split(4, 2)), policy="v6.0")
    assert row["status"] == "ok", row["error"]
    assert row["anon_vma_alloc"] == direct.counters["anon_vma_alloc"]
