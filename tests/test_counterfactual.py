"""Notebook 04's analysis functions on hand-made tables, and the policy-kernel loader."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from rmaplab import counterfactual as cf
from rmaplab import integrity
from rmaplab.errors import RmaplabError


def counts(shell, policy, anon_vma, fork, avc, rule="singular"):
    return {"shell": shell, "policy": policy, "merge_rule": rule, "own_rule": True,
            "anon_vma_alloc": anon_vma, "anon_vma_fork": fork, "anon_vma_prepare": anon_vma - fork,
            "avc_alloc": avc, "avc_fork": fork, "avc_clone": 0, "avc_prepare": 0, "vma_alloc": 0,
            "merge_rules_disagree": 0}


TABLE = pd.DataFrame([counts("sh", "v5.4", 200, 100, 500), counts("sh", "v5.5", 190, 90, 480),
                      counts("sh", "wei-intended", 160, 60, 500)])


def test_savings_against_v54_by_hand():
    s = cf.savings(TABLE, "model").set_index("patch")
    assert s.loc["v5.5", "anon_vma saved"] == 10
    assert s.loc["v5.5", "% of all anon_vma"] == pytest.approx(5.0)
    assert s.loc["v5.5", "% of fork-path anon_vma"] == pytest.approx(10.0)
    assert s.loc["v5.5", "% of all AVC"] == pytest.approx(4.0)
    assert s.loc["wei-intended", "% of all anon_vma"] == pytest.approx(20.0)
    assert s.loc["wei-intended", "AVC saved"] == 0


def test_claim_is_set_against_v55_and_unmeasured_kernels_say_so():
    claim = cf.claim_comparison(cf.savings(TABLE, "model"), None).set_index("patch")
    assert claim.loc["v5.5", "model: share of the claim"] == pytest.approx(5.0 / 20.0)
    assert claim.loc["v5.5", "what it is"].startswith("as merged")
    assert (claim["policy kernel: % of all anon_vma"] == "not yet measured").all()
    measured = cf.savings(TABLE.assign(anon_vma_alloc=[200, 180, 150]), "policy kernel")
    claim = cf.claim_comparison(cf.savings(TABLE, "model"), measured).set_index("patch")
    assert claim.loc["v5.5", "policy kernel: % of all anon_vma"] == "10.00"


def test_merge_rule_effect_is_singular_minus_uncowed():
    t = pd.DataFrame([counts("sh", "v5.4", 200, 100, 500, "singular"),
                      counts("sh", "v5.4", 199, 100, 503, "uncowed")])
    e = cf.merge_rule_effect(t).iloc[0]
    assert (e["anon_vma_alloc diff"], e["avc_alloc diff"]) == (1, -3)
    assert e["own rule"] == "singular"


def test_model_vs_kernel_says_not_yet_measured_without_kernel_counts():
    t = cf.model_vs_kernel(TABLE, None)
    assert set(t["policy kernel"]) == {"not yet measured"}
    assert set(t["counter"]) == {"anon_vma_alloc", "anon_vma_fork", "avc_alloc"}


@pytest.fixture
def repo(tmp_path, monkeypatch):
    raw = tmp_path / "data" / "raw"
    raw.mkdir(parents=True)
    (raw / integrity.MANIFEST_NAME).write_text("")
    monkeypatch.setenv("RMAPLAB_ROOT", str(tmp_path))
    return raw


def test_uml_counts_are_none_until_recorded(repo):
    assert cf.uml_kbuild_counts() is None


def test_uml_counts_load_the_newest_directory_per_shell_from_the_manifest(repo):
    for stamp, n in (("20270101T000000Z", 100), ("20270102T000000Z", 90)):
        d = repo / "uml" / f"{stamp}-kbuild-sh"
        d.mkdir(parents=True)
        (d / "counts.json").write_text(json.dumps([
            {"policy": "v5.4", "anon_vma_alloc": 100, "anon_vma_fork": 50, "avc_alloc": 300},
            {"policy": "v5.5", "anon_vma_alloc": n, "anon_vma_fork": 40, "avc_alloc": 290}]))
        integrity.add([d])
    got = cf.uml_kbuild_counts()
    assert set(got["source"]) == {"uml/20270102T000000Z-kbuild-sh/counts.json"}
    assert got.set_index("policy").loc["v5.5", "anon_vma_alloc"] == 90
    s = cf.savings(got, "policy kernel").set_index("patch")
    assert s.loc["v5.5", "% of all anon_vma"] == pytest.approx(10.0)


def test_uml_counts_refuse_unrecorded_or_malformed_files(repo):
    d = repo / "uml" / "20270101T000000Z-kbuild-sh"
    d.mkdir(parents=True)
    (d / "counts.json").write_text(json.dumps([{"policy": "v5.4"}]))
    with pytest.raises(RmaplabError, match="not in the manifest"):
        cf.uml_kbuild_counts()
    integrity.add([d])
    with pytest.raises(RmaplabError, match="lacks anon_vma_alloc"):
        cf.uml_kbuild_counts()


def test_walks_of_sweep_unpacks_the_json_histograms():
    results = pd.DataFrame([{"status": "ok", "shell": "sh", "jobs": 2, "policy": "v5.5",
                             "merge_rule": "singular",
                             "walks": json.dumps([{"moment": "fork", "side": "child",
                                                   "avcs": 2.0, "vmas": 3}])},
                            {"status": "failed", "shell": "sh", "jobs": 4, "policy": "v5.5",
                             "merge_rule": None, "walks": None}])
    w = cf.walks_of_sweep(results)
    assert w.to_dict("records") == [{"shell": "sh", "jobs": 2, "policy": "v5.5",
                                     "merge_rule": "singular", "moment": "fork",
                                     "side": "child", "avcs": 2.0, "vmas": 3}]
    assert {c["jobs"] for c in cf.jobs_walk_cells()} == {1, 2, 4, 8}
    assert all(c["identity"] and c["walks"] for c in cf.jobs_walk_cells())
