"""Plug-in policies: written outside the package, used by replay, search and sweep.

The plug-in under test (PRE_CVE) is 6.18 with the reuse test of 7a3ef208e662 put
back, i.e. the rule CVE-2022-42703 exploited: its counts must equal the built-in
v5.4's (same rule, written independently), and the search must find the planted
double reuse that v6.0 does not allow.
"""

from __future__ import annotations

import json
import sys
import textwrap

import pytest

from rmaplab import sweep, traces, workloads
from rmaplab.cli import main
from rmaplab.errors import RmaplabError
from rmaplab.model import POLICIES, get_policy, plugins
from rmaplab.model.search import find_violation, random_search
from rmaplab.paths import repo_root

PRE_CVE = textwrap.dedent('''
    from rmaplab.model.policies import V60


    class PreCve(V60):
        """6.18 with the degree < 2 reuse test of 7a3ef208e662 (before 2555283eb40d)."""
        name = "pre-cve"

        def may_reuse(self, anon_vma, dst, src):
            degree = anon_vma.num_children + anon_vma.num_active_vmas
            return anon_vma is not src.anon_vma and degree < 2
''')
CVE_PREFIX = repo_root() / "data/traces/search-v5.4-same-chain.jsonl"


@pytest.fixture()
def pre_cve(tmp_path):
    path = tmp_path / "mypatch.py"
    path.write_text(PRE_CVE)
    return f"{path}:PreCve"


@pytest.fixture(scope="module")
def cluster():
    from dask.distributed import LocalCluster

    c = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    yield c.scheduler_address
    c.close()


def write_trace(tmp_path, events, name="t.jsonl"):
    return traces.write(events, tmp_path / name)


def status_of(argv):
    try:
        return main(argv)
    except SystemExit as e:            # argument errors leave through argparse
        return e.code


def cli_json(argv, capsys, stderr=False):
    assert main(argv) == 0
    out, err = capsys.readouterr()
    return (json.loads(out), err) if stderr else json.loads(out)


def test_plugin_file_replays_searches_and_sweeps(tmp_path, pre_cve, cluster, capsys):
    # replay: the plug-in's rule is v5.4's, so its counts are v5.4's on every workload
    for name in ("chainx", "chainw", "split"):
        trace = write_trace(tmp_path, workloads.WORKLOADS[name](8, 4), f"{name}.jsonl")
        mine, ref = cli_json(["replay", str(trace), "--policy", f"{pre_cve},v5.4", "--json",
                              "--check", "full"], capsys)
        assert mine["policy"] == "pre-cve" and ref["policy"] == "v5.4"
        for key in ("anon_vma_alloc", "avc_alloc", "reuse_at_fork", "peak_anon_vma"):
            assert mine[key] == ref[key], (name, key)
    # search: from the CVE's precondition the plug-in's rule double-reuses, v6.0's does not
    prefix = [ev for _, ev in traces.load(CVE_PREFIX)][:-1]
    found = find_violation(pre_cve, budget=300, prefix=prefix)
    assert found is not None and found.policy == "pre-cve"
    assert found.violation["invariant"] == "same-anon_vma-same-chain"
    # in forked workers too, with the same finding
    two = find_violation(pre_cve, budget=300, prefix=prefix, examples_per_seed=40, jobs=2)
    one = find_violation(pre_cve, budget=300, prefix=prefix, examples_per_seed=40, jobs=1)
    assert two is not None and (two.events, two.examples, two.seed) == \
        (one.events, one.examples, one.seed)
    assert find_violation("v6.0", budget=300, prefix=prefix) is None
    # sweep on a LocalCluster: the workers run the plug-in, results match a direct replay
    cells = sweep.grid(kind=["micro"], workload=["chainx", "split"], k=[8], n=[4],
                       policy=[pre_cve, "v6.0"])
    out = tmp_path / "sweep"
    counts = sweep.sweep(cells, out, scheduler=cluster, log=lambda s: None)
    assert counts == {"cells": 4, "skipped": 0, "ok": 4, "failed": 0}
    df = sweep.load(out)
    assert sorted(df.policy.unique()) == ["pre-cve", "v6.0"]
    row = df[(df.policy == "pre-cve") & (df.workload == "chainx")].iloc[0]
    assert row.policy_spec == pre_cve
    direct = traces.replay(workloads.numbered(workloads.chain_exited(8, 4)), policy="v5.4")
    assert row.anon_vma_alloc == direct.counters["anon_vma_alloc"]


def test_plugin_source_reaches_a_worker_without_the_file(tmp_path):
    """A worker on another machine gets the file's source with the cell, not its path."""
    spec = f"{tmp_path / 'elsewhere' / 'mypatch.py'}:PreCve"
    cell = {"kind": "micro", "workload": "chainx", "k": 8, "n": 4, "policy": spec}
    row = sweep.run_cell(cell, plugin_sources={spec: PRE_CVE})
    assert row["status"] == "ok", row.get("error")
    assert row["policy_name"] == "pre-cve"
    assert sweep.run_cell(cell)["error"].endswith("no such plug-in policy file")


def test_sweep_of_user_traces_from_the_command_line(tmp_path, pre_cve, capsys):
    a = write_trace(tmp_path, workloads.chain_exited(4, 3), "a.jsonl")
    b = write_trace(tmp_path, workloads.split(4, 2), "b.jsonl")
    out = tmp_path / "res"
    assert main(["sweep", "--kind", "trace", "--trace", str(a), str(b), "--policy",
                 f"v6.0,{pre_cve}", "--out", str(out), "--workers", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["ok"] == 4
    df = sweep.load(out)
    got = df.set_index(["policy", "trace"])["anon_vma_alloc"].to_dict()
    for path, events in ((a, workloads.chain_exited(4, 3)), (b, workloads.split(4, 2))):
        for spec, name in (("v6.0", "v6.0"), ("v5.4", "pre-cve")):
            want = traces.replay(workloads.numbered(events), policy=spec).counters
            assert got[(name, str(path.resolve()))] == want["anon_vma_alloc"]


@pytest.mark.parametrize("source, spec_tail, message", [
    (None, "PreCve", "no such plug-in policy file"),
    (PRE_CVE, "Nope", "no class 'Nope'"),
    ("class PreCve:\n    pass\n", "PreCve", "is not a Policy subclass"),
    ("def broken(:\n", "PreCve", "does not compile"),
    ("import no_such_module_here\n", "PreCve", "raised ModuleNotFoundError on import"),
    ("from rmaplab.model.policies import V60\nclass PreCve(V60):\n    name = 'v6.0'\n",
     "PreCve", "calls itself 'v6.0', a built-in policy"),
    (PRE_CVE.replace("return anon_vma is not", "return 1 / 0 or anon_vma is not"), "PreCve",
     "PreCve.may_reuse raised ZeroDivisionError"),
    # sys.exit() in a hook ended the command with 0 or 1, which mean found / broken.
    (PRE_CVE.replace("return anon_vma is not", "return __import__('sys').exit(0) or anon_vma is not"),
     "PreCve", "PreCve.may_reuse raised SystemExit: 0"),
    (PRE_CVE.replace("return anon_vma is not", "return __import__('sys').exit('bye') or anon_vma is not"),
     "PreCve", "PreCve.may_reuse raised SystemExit: bye"),
])
def test_a_broken_plugin_is_one_line_naming_it_exit_2(tmp_path, capsys, source, spec_tail,
                                                       message):
    path = tmp_path / "mypatch.py"
    if source is not None:
        path.write_text(source)
    trace = write_trace(tmp_path, workloads.chain_exited(4, 3))
    assert status_of(["replay", str(trace), "--policy", f"{path}:{spec_tail}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and str(path) in err


def test_two_plugins_with_one_name_are_refused(tmp_path, capsys, pre_cve):
    """Their columns were identical and could not be told apart (found by review)."""
    other = tmp_path / "other.py"
    other.write_text(PRE_CVE)
    trace = write_trace(tmp_path, workloads.chain_exited(4, 3))
    assert status_of(["replay", str(trace), "--policy", f"{pre_cve},{other}:PreCve"]) == 2
    err = capsys.readouterr().err
    assert "two policies of --policy are called 'pre-cve'" in err and err.count("\n") == 1


@pytest.mark.parametrize("failure, raised", [("1 / 0", "ZeroDivisionError"),
                                             ("__import__('sys').exit(0)", "SystemExit")])
def test_an_exception_inside_a_hook_names_the_plugin_line_in_search_too(tmp_path, failure,
                                                                        raised):
    path = tmp_path / "boom.py"
    path.write_text(PRE_CVE.replace("return anon_vma is not", f"return {failure} or anon_vma is not"))
    for search in (lambda: find_violation(f"{path}:PreCve", budget=50),
                   lambda: find_violation(f"{path}:PreCve", budget=50, jobs=2),
                   lambda: random_search(f"{path}:PreCve", budget=300, jobs=2)):
        with pytest.raises(RmaplabError) as e:
            search()
        assert e.value.path == str(path) and e.value.line == 11
        assert f"PreCve.may_reuse raised {raised}" in str(e.value)


def test_module_spec_and_entry_point(tmp_path, monkeypatch):
    """package.module:Class from sys.path, and a name registered by an installed
    distribution in the rmaplab.policies entry-point group."""
    pkg = tmp_path / "mypkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "rules.py").write_text(PRE_CVE)
    dist = tmp_path / "mypkg-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: mypkg\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[rmaplab.policies]\npre-cve-ep = mypkg.rules:PreCve\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "mypkg", raising=False)
    assert get_policy("mypkg.rules:PreCve").name == "pre-cve"
    assert plugins.installed()["pre-cve-ep"] == "mypkg.rules:PreCve"
    events = workloads.numbered(workloads.chain_exited(8, 4))
    assert (traces.replay(events, policy="pre-cve-ep").counters
            == traces.replay(events, policy="v5.4").counters)


def test_replay_of_several_policies_runs_in_parallel_and_keeps_the_order(tmp_path, pre_cve,
                                                                        capsys):
    trace = write_trace(tmp_path, workloads.chain_exited(8, 4))
    results, progress = cli_json(["replay", str(trace), "--policy", f"all,{pre_cve}",
                                  "--jobs", "2", "--json"], capsys, stderr=True)
    builtin = list(POLICIES)
    assert [r["policy"] for r in results] == [*builtin, "pre-cve"]
    assert sorted(line.split("] ")[1].split(" done")[0] for line in progress.splitlines()) \
        == sorted(r["policy"] for r in results)
    assert f"replay: [{len(builtin) + 1}/{len(builtin) + 1}] " in progress
    serial = [traces.replay(workloads.numbered(workloads.chain_exited(8, 4)), policy=p)
              .counters["avc_alloc"] for p in builtin]
    assert [r["avc_alloc"] for r in results[:len(builtin)]] == serial


def test_replay_validate_against_the_recorded_build(capsys):
    """replay --validate on a recorded kernel build: the v6.0 replay matches the kernel's
    own counts of the same run (live_counts.json) within 0.01 %, counter by counter."""
    trace = repo_root() / "data/raw/traces/20261129T163725Z-kbuild-sh/trace.jsonl.gz"
    report = cli_json(["replay", "--validate", str(trace), "--json"], capsys)
    assert report["ok"] and report["policy"] == "v6.0"
    live = json.loads((trace.parent / "live_counts.json").read_text())
    rows = {r["counter"]: r for r in report["counters"]}
    assert rows["anon_vma_fork"]["model"] == live["anon_vma_fork"]
    assert all(abs(r["model"] - r["live"]) <= 3 for r in rows.values())


def test_replay_validate_fails_on_a_mismatch_and_without_live_counts(tmp_path, capsys):
    directory = tmp_path / "run"
    directory.mkdir()
    trace = write_trace(directory, workloads.split(4, 2), "trace.jsonl")
    assert status_of(["replay", "--validate", str(trace)]) == 2
    assert "no live_counts.json beside the trace" in capsys.readouterr().err
    counts = traces.replay(workloads.numbered(workloads.split(4, 2))).counters
    live = {k: counts[k] for k in ("anon_vma_fork", "anon_vma_prepare", "anon_vma_alloc",
                                   "avc_fork", "avc_clone", "avc_prepare", "avc_alloc",
                                   "vma_alloc", "mm_forks")}
    (directory / "live_counts.json").write_text(json.dumps(live))
    (directory / "metadata.json").write_text(json.dumps({"preamble_events": 0}))
    assert main(["replay", "--validate", str(trace)]) == 0
    live["anon_vma_fork"] += 1
    (directory / "live_counts.json").write_text(json.dumps(live))
    assert main(["replay", "--validate", str(trace)]) == 1
    assert "MISMATCH" in capsys.readouterr().out
