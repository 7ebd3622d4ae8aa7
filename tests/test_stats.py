"""Each statistic against an independent reference: scipy/statsmodels or a hand computation."""

from __future__ import annotations

import math
from itertools import combinations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sst
from statsmodels.stats.power import TTestIndPower

from rmaplab import timings
from rmaplab.errors import RmaplabError
from rmaplab.stats import calibration, comparison, drift, equivalence, exact, location, power

A = np.array([111.953, 110.553, 113.600])   # the seed's Origin sys times
B = np.array([98.802, 99.206, 98.845])       # the seed's Patched sys times


def test_welch_log_interval_matches_hand_computation():
    la, lb = np.log(A), np.log(B)
    va, vb = la.var(ddof=1) / 3, lb.var(ddof=1) / 3
    se = math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / 2 + vb**2 / 2)
    diff = lb.mean() - la.mean()
    half = sst.t.ppf(0.975, df) * se
    res = location.welch_log(A, B)
    assert res.df == pytest.approx(df)
    assert res.ci.low == pytest.approx(100 * (math.exp(diff - half) - 1))
    assert res.ci.high == pytest.approx(100 * (math.exp(diff + half) - 1))
    assert res.p == pytest.approx(2 * sst.t.sf(abs(diff / se), df))


def test_welch_log_refuses_zero_times():
    res = location.welch_log(np.array([0.0, 1.0]), np.array([1.0, 2.0]))
    assert res.ci.low is None and "logarithm" in res.ci.note


def brute_force_u_cdf(m: int, n: int) -> np.ndarray:
    us = []
    for idx in combinations(range(m + n), m):
        ranks = np.array(idx) + 1
        us.append(int(ranks.sum() - m * (m + 1) // 2))
    return np.cumsum(np.bincount(us, minlength=m * n + 1)) / len(us)


@pytest.mark.parametrize("m, n", [(1, 1), (3, 3), (3, 5), (4, 6), (5, 5)])
def test_exact_u_distribution_matches_enumeration(m, n):
    np.testing.assert_allclose(location.mann_whitney_null_cdf(m, n), brute_force_u_cdf(m, n))


def test_hodges_lehmann_five_by_five_uses_third_order_statistics():
    a = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    b = np.array([2.5, 4.5, 6.5, 8.5, 10.5])
    diffs = np.sort(np.subtract.outer(b, a).ravel())
    est, ci = location.hodges_lehmann(a, b)
    assert est == pytest.approx(np.median(diffs))
    # m = n = 5: P(U <= 2) = 4/252 <= 0.025 < P(U <= 3) = 7/252, so cut 3 from each end.
    assert (ci.low, ci.high) == (diffs[2], diffs[22])
    assert "96.8%" in ci.note


def test_hodges_lehmann_three_by_three_has_no_95_interval():
    _, ci = location.hodges_lehmann(A, B)
    assert ci.low is None and "90%" in ci.note


def test_min_p_floor():
    assert exact.min_p(3, 3) == pytest.approx(0.1)
    assert exact.min_p(3, 4) == pytest.approx(2 / 35)
    assert exact.min_p(3, 5) == pytest.approx(2 / 56)


def test_permutation_test_enumerates_every_split():
    a, b = np.array([1.0, 2.0, 4.0]), np.array([3.0, 5.0, 6.5])
    observed = b.mean() - a.mean()
    pooled = np.concatenate([a, b])
    hits = 0
    splits = list(combinations(range(6), 3))
    for idx in splits:
        rest = [i for i in range(6) if i not in idx]
        d = pooled[rest].mean() - pooled[list(idx)].mean()
        hits += d >= observed - 1e-12
    one_sided = hits / len(splits)
    res = exact.permutation_means(a, b)
    assert res.exact and res.n_permutations == 20
    assert res.p == pytest.approx(min(1.0, 2 * one_sided))


def test_complete_separation_three_by_three_gives_p_one_tenth():
    assert exact.mann_whitney(A, B) == pytest.approx(0.1)
    assert exact.permutation_means(A, B).p == pytest.approx(0.1)


def test_hedges_g_by_hand():
    a, b = np.array([10.0, 12.0, 14.0]), np.array([13.0, 15.0, 17.0])
    # both SDs are 2, pooled SD 2, d = 1.5, J = 1 - 3/(4*6 - 9) = 0.8
    assert location.hedges_g(a, b) == pytest.approx(1.5 * 0.8)


def test_mde_is_the_effect_with_the_asked_power():
    p = power.power_analysis(A, B)
    d = math.log(1 + p.mde_pct / 100) / p.log_sd
    achieved = TTestIndPower().power(effect_size=d, nobs1=3, alpha=0.05, ratio=1.0)
    assert achieved == pytest.approx(0.8, abs=1e-4)


def test_runs_needed_is_the_first_n_with_enough_power():
    effect = 0.5
    n = power.runs_needed(effect)
    pw = TTestIndPower()
    assert pw.power(effect_size=effect, nobs1=n, alpha=0.05, ratio=1.0) >= 0.8
    assert pw.power(effect_size=effect, nobs1=n - 1, alpha=0.05, ratio=1.0) < 0.8
    assert n == 64  # the textbook value for d = 0.5


def test_tost_is_the_larger_of_two_one_sided_welch_tests():
    rng = np.random.default_rng(1)
    a = rng.normal(100, 1, 12)
    b = rng.normal(100.2, 1, 12)
    bound = math.log(1.02)
    la, lb = np.log(a), np.log(b)
    p_low = sst.ttest_ind(lb + bound, la, equal_var=False, alternative="greater").pvalue
    p_high = sst.ttest_ind(lb - bound, la, equal_var=False, alternative="less").pvalue
    res = equivalence.tost(a, b, 2.0)
    assert res.p == pytest.approx(max(p_low, p_high))


def test_trend_uses_kendall_tau():
    v = np.array([3.0, 1.0, 4.0, 1.5, 5.0, 9.0])
    res = drift.trend(v, np.arange(6))
    ref = sst.kendalltau(np.arange(6), v)
    assert res.tau == pytest.approx(ref.statistic) and res.p == pytest.approx(ref.pvalue)


def test_design_detects_sequential_runs():
    assert drift.design(np.array([1, 2, 3]), np.array([4, 5, 6])) == "sequential"
    assert drift.design(np.array([1, 3, 5]), np.array([2, 4, 6])) == "interleaved"


def test_aa_calibration_enumerates_unordered_splits():
    values = np.array([10.0, 10.2, 9.9, 10.1, 10.05, 9.95])
    splits = calibration.aa_splits(values, n=3)
    assert len(splits) == math.comb(6, 3) // 2
    summary = calibration.aa_summary(splits, threshold_pct=1.0)
    # 3 + 3 exact tests can never reject at 0.05
    assert summary["fpr_permutation"] == 0.0 and summary["fpr_mannwhitney"] == 0.0
    changes = [abs(100 * (values[list(b)].mean() / values[list(a)].mean() - 1))
               for a, b in zip(splits["a"], splits["b"], strict=True)]
    assert summary["abs_change_max_pct"] == pytest.approx(max(changes))


def test_aa_calibration_needs_enough_runs():
    with pytest.raises(RmaplabError, match="at least 6 runs"):
        calibration.aa_splits(np.ones(5), n=3)


def seed_frames(seed_file):
    df = timings.to_frame(timings.load(seed_file))
    return df[df.group == "Origin"], df[df.group == "Patched"]


def test_seed_comparison_matches_hand_numbers_and_flags_what_it_should(seed_file):
    a, b = seed_frames(seed_file)
    res = comparison.compare(a, b, label_a="Origin", label_b="Patched", same_file=True)
    by = {m.metric: m for m in res.metrics}
    assert by["sys"].pct_change == pytest.approx(100 * (B.mean() / A.mean() - 1))
    assert by["sys"].p_min == pytest.approx(0.1)
    assert by["sys"].verdict == "change only under log-normality"
    # Holm across three metrics: the smallest p is multiplied by 3
    ps = sorted(m.p_welch for m in res.metrics)
    assert min(m.p_welch_holm for m in res.metrics) == pytest.approx(3 * ps[0])
    assert res.design == "sequential"
    assert res.confounder is not None and res.confounder["metric"] == "user"
    assert any("smallest two-sided p = 0.100" in w for w in res.warnings)


def test_large_clear_change_with_enough_runs_is_called_a_change():
    rng = np.random.default_rng(7)
    rows = []
    for group, mu in (("A", 100.0), ("B", 90.0)):
        for run, v in enumerate(rng.normal(mu, 0.5, 8), 1):
            rows.append({"source": "x", "line": run, "group": group, "run": run, "metric": "sys",
                         "seconds": v, "kind": "run", "n": 1, "format": "t"})
    df = pd.DataFrame(rows)
    res = comparison.compare(df[df.group == "A"], df[df.group == "B"], metrics=("sys",))
    m = res.metrics[0]
    assert m.verdict == "change"
    assert m.bootstrap_ci_low is not None and m.bootstrap_ci_high < 0


def test_identical_sides_are_equivalent():
    rng = np.random.default_rng(3)
    v = rng.normal(100.0, 0.2, 20)
    rows = [{"source": "x", "line": i, "group": g, "run": i, "metric": "real", "seconds": x,
             "kind": "run", "n": 1, "format": "t"}
            for g, vals in (("A", v[:10]), ("B", v[10:])) for i, x in enumerate(vals, 1)]
    df = pd.DataFrame(rows)
    res = comparison.compare(df[df.group == "A"], df[df.group == "B"], metrics=("real",))
    assert res.metrics[0].verdict.startswith("equivalent")


def test_a_side_with_one_run_is_an_error_naming_the_line(timing_file):
    df = timings.to_frame(timings.load(timing_file("edge/one_run_group.txt")))
    with pytest.raises(RmaplabError, match=r"one_run_group.txt:2: A has a single real run"):
        comparison.compare(df[df.group == "A"], df[df.group == "B"], label_a="A", label_b="B")


def test_means_only_metrics_are_reported_not_tested(timing_file):
    df = timings.to_frame(timings.load(timing_file("hyperfine.json")))
    res = comparison.compare(df[df.group == "sleep 0.02"], df[df.group == "sleep 0.03"])
    assert [m.metric for m in res.metrics] == ["real"]
    assert any("only a mean of 5 runs" in w for w in res.warnings)
