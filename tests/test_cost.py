"""Pricing anon_vma and anon_vma_chain separately; teardown contention; the break-even.

``tests/data/cost/tiny`` is a small `forkcost --design objects` campaign (see
tests/data/cost/README.md).  The analysis is checked against independent computations
(separate regressions, numpy linear algebra, hand arithmetic); the live test checks
the per-fork counts of avwork forkdepth against the kernel's rules.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf

from conftest import DATA
from rmaplab.errors import RmaplabError
from rmaplab.measure import cost

TINY = DATA / "cost" / "tiny"


@pytest.fixture(scope="module")
def tiny():
    return pd.read_csv(TINY / "runs.csv"), pd.read_csv(TINY / "counts.csv")


def test_fork_rows_carry_their_conditions_counted_allocations(tiny):
    runs, counts = tiny
    fk = cost.fork_frame(runs, counts)
    assert len(fk) == (runs["design"] == "fork").sum()
    one = fk[(fk.layout == "sep") & (fk.k == 64) & (fk.state == 1) & (fk.depth == 3)
             & (fk.ancestors == "alive")].iloc[0]
    ref = counts[(counts.layout == "sep") & (counts.k == 64) & (counts.state == 1)
                 & (counts.depth == 3) & (counts.ancestors == "alive")].iloc[0]
    assert (one.anon_vmas, one.avcs) == (ref.anon_vmas, ref.avcs)
    assert one.cpu_ns_per_fork == pytest.approx(one.cpu_us * 1000 / one.n)


def test_saved_time_is_the_linear_contrast_of_the_two_prices(tiny):
    fit = cost.object_costs(*tiny)
    got = cost.saved_time(fit, 1000, 3000)
    a, c = fit.params["anon_vmas"], fit.params["avcs"]
    assert got["seconds"] == pytest.approx((1000 * a + 3000 * c) * 1e-9)
    cov = fit.cov_params().loc[["anon_vmas", "avcs"], ["anon_vmas", "avcs"]].to_numpy()
    w = np.array([1000, 3000])
    se = np.sqrt(w @ cov @ w) * 1e-9
    from scipy import stats

    z = stats.norm.ppf(0.975)
    assert got["ci_high_s"] - got["seconds"] == pytest.approx(z * se)


def test_coefficients_table_reports_each_price_with_its_interval(tiny):
    fit = cost.object_costs(*tiny)
    coef = cost.coefficients(fit).set_index("term")
    assert set(coef.index) == {"per anon_vma", "per anon_vma_chain", "per VMA with an anon_vma",
                               "per VMA"}
    assert (coef["ci_low"] < coef["ns"]).all() and (coef["ns"] < coef["ci_high"]).all()


def test_teardown_ratio_equals_the_ratio_of_separate_regressions(tiny):
    """With the full interaction, the slope per regime is that regime's own regression."""
    runs, _ = tiny
    effect = cost.teardown_effect(runs).set_index("layout")
    td = runs[runs["design"] == "teardown"].copy()
    td["y"] = td["cpu_us"] * 1000 / td["n"]
    td["w"] = td["k"] * (td["state"] >= 1)
    for layout in effect.index:
        sub = td[(td["layout"] == layout) | (td["k"] == 0)]
        slope = {c: smf.ols("y ~ w", sub[sub["concurrent"] == c]).fit().params["w"]
                 for c in (0, 1)}
        assert effect.loc[layout, "sequential_ns"] == pytest.approx(slope[0])
        assert effect.loc[layout, "concurrent_ns"] == pytest.approx(slope[1])
        assert effect.loc[layout, "ratio"] == pytest.approx(slope[1] / slope[0])


def test_break_even_factor_is_claimed_over_measured_seconds(tiny):
    fit = cost.object_costs(*tiny)
    saved = pd.DataFrame([{"shell": "sh", "patch": "v5.5", "anon_vmas": 1326, "avcs": 17469}])
    table = cost.break_even(fit, saved, {"sh": 10.0}, claim_pct=-11.6, contention=1.5)
    row = table.iloc[0]
    worth = cost.saved_time(fit, 1326, 17469)
    assert row["claimed_s"] == pytest.approx(1.16)
    assert row["measured_s"] == pytest.approx(1.5 * worth["seconds"])
    assert row["break_even_factor"] == pytest.approx(1.16 / (1.5 * worth["seconds"]))
    assert row["break_even_factor_low"] == pytest.approx(1.16 / (1.5 * worth["ci_high_s"]))
    assert row["ns_per_anon_vma_needed"] == pytest.approx(1.16e9 / 1326)


def test_saved_counts_come_from_notebook_04s_numbers():
    numbers = {f"counterfactual.sh_{p}_{w}": {"value": v} for p, w, v in [
        ("v54", "anon_vma", 100), ("v54", "avc", 300), ("v55", "anon_vma", 90),
        ("v55", "avc", 250), ("wei_intended", "anon_vma", 70), ("wei_intended", "avc", 300)]}
    saved = cost.saved_from_numbers(numbers, shells=("sh",)).set_index("patch")
    assert saved.loc["v5.5", ["anon_vmas", "avcs"]].tolist() == [10, 50]
    assert saved.loc["wei-intended", ["anon_vmas", "avcs"]].tolist() == [30, 0]
    with pytest.raises(RmaplabError, match="counterfactual.bash_v54_anon_vma.*notebook 04"):
        cost.saved_from_numbers(numbers, shells=("bash",))


@pytest.mark.perf
def test_forkdepth_counts_follow_the_kernels_reuse_rule(live_kernel, tmp_path, monkeypatch):
    """Per fork, K region VMAs cost K anon_vmas and K*(D+1) AVCs when every ancestor is
    alive (no anon_vma in the chain is reusable), and 0 anon_vmas and 3K AVCs when they
    exited (anon_vma_clone reuses one; research/measure.md's chainx) -- each against the
    same condition with K = 0."""
    monkeypatch.setenv("RMAPLAB_CACHE", str(tmp_path))
    k = 16
    conds = cost.objects_conditions(layouts=("sep", "split"), ks=(0, k), states=(1,),
                                    alive_depths=(1, 3), exited_depths=(4,))
    runs, counts, where = cost.objects_campaign(
        forks=10, repeats=1, children=4, teardown_repeats=1, record=False, conditions=conds,
        teardown=cost.teardown_conditions(k=k), log=lambda s: None)
    assert where is None and len(runs) == len(conds) + len(cost.teardown_conditions(k=k))
    c = counts.set_index(["layout", "k", "depth", "ancestors"])
    for layout in ("sep", "split"):
        for depth, ancestors, anon_vmas, avcs in ((1, "alive", k, 2 * k), (3, "alive", k, 4 * k),
                                                  (4, "exited", 0, 3 * k)):
            got = c.loc[(layout, k, depth, ancestors)]
            base = c.loc[("sep", 0, depth, ancestors)]
            assert got["anon_vmas"] - base["anon_vmas"] == anon_vmas, (layout, depth)
            assert got["avcs"] - base["avcs"] == avcs, (layout, depth)
    assert (counts["mm_forks"] == 1).all()


def test_price_warnings_name_negative_prices_and_intervals_that_include_zero():
    coef = pd.DataFrame([
        {"term": "per anon_vma", "ns": -50.0, "ci_low": -90.0, "ci_high": -10.0, "se": 20.0},
        {"term": "per anon_vma_chain", "ns": 30.0, "ci_low": -5.0, "ci_high": 65.0, "se": 17.0},
        {"term": "per VMA", "ns": 40.0, "ci_low": 20.0, "ci_high": 60.0, "se": 10.0}])
    got = cost.price_warnings(coef)
    assert len(got) == 2
    assert got[0].startswith("per anon_vma: -50 ns is meaningless")
    assert got[1].startswith("per anon_vma_chain: the CI [-5, 65] ns includes zero")
