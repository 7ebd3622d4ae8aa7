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


def campaign(raw, stamp, rows, manifest=True, kernel="k"):
    """A directory as `rmaplab kernel kbuild` writes it (metadata.json, runs.csv)."""
    d = raw / "uml" / f"{stamp}-kbuild-tinyconfig-j2"
    d.mkdir(parents=True)
    (d / "metadata.json").write_text(json.dumps({"kernel": {"key": kernel}, "jobs": 2}))
    pd.DataFrame([{"policy": p, "shell": "sh", "exit_status": rc, "failed": rc != 0,
                   "anon_vma_alloc": av, "anon_vma_fork": fork, "avc_alloc": avc}
                  for p, rc, av, fork, avc in rows]).to_csv(d / "runs.csv", index=False)
    if manifest:
        integrity.add([d])
    return d


def test_uml_counts_are_none_until_recorded(repo):
    assert cf.uml_kbuild_counts() is None
    assert cf.uml_kbuild_counts("") is None


def test_uml_counts_load_the_newest_campaign_and_price_savings_by_hand(repo):
    campaign(repo, "20270101T000000Z", [("v5.4", 0, 100, 50, 300), ("v5.5", 0, 100, 50, 300)])
    campaign(repo, "20270102T000000Z", [("v5.4", 0, 200, 100, 500), ("v5.5", 0, 150, 50, 450),
                                        ("wei-intended", 2, 10, 5, 20)])
    got = cf.uml_kbuild_counts()
    assert set(got["source"]) == {"uml/20270102T000000Z-kbuild-tinyconfig-j2/runs.csv"}
    assert got.set_index("policy")["ok"].to_dict() == {"v5.4": True, "v5.5": True,
                                                       "wei-intended": False}
    s = cf.savings(got[got.ok], "policy kernel").set_index("patch")
    # by hand: (200 - 150) / 200 = 25 %, (500 - 450) / 500 = 10 %
    assert s.loc["v5.5", "% of all anon_vma"] == pytest.approx(25.0)
    assert s.loc["v5.5", "% of all AVC"] == pytest.approx(10.0)
    assert "wei-intended" not in s.index
    # an older campaign by name
    older = cf.uml_kbuild_counts("uml/20270101T000000Z-kbuild-tinyconfig-j2")
    assert older.set_index("policy").loc["v5.5", "anon_vma_alloc"] == 100


def test_uml_counts_join_campaigns_split_by_policy_on_one_kernel(repo):
    campaign(repo, "20261231T000000Z", [("v6.0", 0, 1, 1, 1)], kernel="old")
    campaign(repo, "20270101T000000Z", [("v5.4", 0, 200, 100, 500), ("v5.5", 0, 150, 50, 450),
                                        ("no-reuse", 1, 7, 7, 7)])
    campaign(repo, "20270101T000001Z", [("v6.0", 0, 201, 101, 501),
                                        ("wei-intended", 0, 170, 50, 500)])
    got = cf.uml_kbuild_counts().set_index("policy")
    # the other kernel's v6.0 is not mixed in; every policy of kernel "k" is, once
    assert got["anon_vma_alloc"].to_dict() == {"v5.4": 200, "v5.5": 150, "no-reuse": 7,
                                               "v6.0": 201, "wei-intended": 170}
    assert not got.loc["no-reuse", "ok"]
    assert got.loc["v6.0", "source"] == "uml/20270101T000001Z-kbuild-tinyconfig-j2/runs.csv"
    # a later successful build of a policy replaces a failed one, not the other way round
    campaign(repo, "20270102T000000Z", [("no-reuse", 0, 199, 99, 499), ("v5.4", 3, 1, 1, 1)])
    got = cf.uml_kbuild_counts().set_index("policy")
    assert got.loc["no-reuse", "anon_vma_alloc"] == 199 and got.loc["no-reuse", "ok"]
    assert got.loc["v5.4", "anon_vma_alloc"] == 200 and got.loc["v5.4", "ok"]


def test_model_beside_the_kernel_counts_with_failed_builds_marked(repo):
    campaign(repo, "20270102T000000Z", [("v5.4", 0, 210, 100, 500), ("v5.5", 1, 150, 50, 450)])
    t = cf.model_vs_kernel(TABLE, cf.uml_kbuild_counts()).set_index(["policy", "counter"])
    assert t.loc[("v5.4", "anon_vma_alloc"), "policy kernel"] == 210
    assert t.loc[("v5.4", "anon_vma_alloc"), "diff %"] == "+5.000"       # (210 - 200) / 200
    assert t.loc[("v5.5", "avc_alloc"), "policy kernel"] == "build failed"
    assert t.loc[("wei-intended", "avc_alloc"), "policy kernel"] == "not yet measured"
    model = cf.savings(TABLE, "model")
    both = cf.savings_model_vs_kernel(model, None)
    assert set(both["policy kernel: anon_vma saved"]) == {"not yet measured"}
    assert list(both["model: anon_vma saved"]) == [10, 40]


def test_uml_counts_refuse_unrecorded_or_malformed_campaigns(repo):
    d = campaign(repo, "20270101T000000Z", [("v5.4", 0, 1, 1, 1)], manifest=False)
    with pytest.raises(RmaplabError, match="not in the manifest"):
        cf.uml_kbuild_counts()
    with pytest.raises(RmaplabError, match="no such policy-kernel campaign"):
        cf.uml_kbuild_counts("uml/nowhere")
    integrity.add([d])
    other = campaign(repo, "20270102T000000Z", [("v5.4", 0, 1, 1, 1)], manifest=False)
    pd.read_csv(other / "runs.csv").drop(columns=["avc_alloc"]).to_csv(other / "runs.csv",
                                                                        index=False)
    integrity.add([other])
    with pytest.raises(RmaplabError, match="lacks avc_alloc"):
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


def test_replay_builds_models_the_policy_kernels_without_thp():
    # mergetest 4 (tests/data/mapstack): measured 2 prepares and no split clone on the host
    # (THP: the MAP_STACK mapping gets VM_NOHUGEPAGE and merges with nothing), 1 prepare and
    # 1 clone in the UML guest (no THP: it merges and shares its neighbour's anon_vma).
    from conftest import DATA
    from rmaplab import traces

    events = list(traces.load(DATA / "mapstack" / "mergetest-4.jsonl"))
    build = {"mt4": cf.RecordedBuild("mt4", events, {}, {"preamble_events": 0})}
    host, _ = cf.replay_builds(build, [("v6.0", "singular")])
    guest, _ = cf.replay_builds(build, [("v6.0", "singular")], thp=False)
    assert host.anon_vma_prepare.item() == 2 and guest.anon_vma_prepare.item() == 1
