"""Each statistic against an independent reference: scipy, statsmodels, brute-force
enumeration in exact integer arithmetic, or a hand computation; on designs from 2 vs 2
to 1,000 vs 1,000 with ties, zero variance, identical groups, outliers and drift."""

from __future__ import annotations

import math
import warnings
from fractions import Fraction
from itertools import combinations, permutations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sst
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestIndPower

from rmaplab import timings
from rmaplab.errors import RmaplabError
from rmaplab.stats import (
    calibration,
    comparison,
    drift,
    equivalence,
    exact,
    location,
    power,
    report,
)
from rmaplab.stats import verdict as rules

A = np.array([111.953, 110.553, 113.600])   # the seed's Origin sys times
B = np.array([98.802, 99.206, 98.845])       # the seed's Patched sys times


# --- brute-force references -------------------------------------------------------------

def splits(n_total: int, k: int):
    for idx in combinations(range(n_total), k):
        yield list(idx), [i for i in range(n_total) if i not in idx]


def brute_rank_p(a, b) -> tuple[Fraction, Fraction]:
    """Exact two-sided rank-sum p and its floor over every split, in exact fractions."""
    pooled = np.concatenate([a, b])
    ranks = [Fraction(int(2 * r)) for r in sst.rankdata(pooled)]   # doubled midranks
    k = len(a)
    sums = [sum(ranks[i] for i in idx) for idx, _ in splits(len(pooled), k)]
    total = len(sums)

    def p_of(s):
        le = sum(1 for x in sums if x <= s)
        ge = sum(1 for x in sums if x >= s)
        return min(Fraction(1), Fraction(2 * min(le, ge), total))

    return p_of(sum(ranks[:k])), min(p_of(s) for s in set(sums))


def brute_perm_p(a, b) -> float:
    """Exact two-sided permutation p of mean(B) - mean(A), exact rational sums."""
    pooled = [Fraction(x).limit_denominator(10**9) for x in np.concatenate([a, b])]
    k = len(a)
    obs = sum(pooled[:k])
    sums = [sum(pooled[i] for i in idx) for idx, _ in splits(len(pooled), k)]
    le = sum(1 for s in sums if s <= obs)
    ge = sum(1 for s in sums if s >= obs)
    return float(min(Fraction(1), Fraction(2 * min(le, ge), len(sums))))


def welch_p(b, a, **kw) -> float:
    """scipy's Welch p (reference); scipy warns about precision on near-constant samples."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Precision loss", RuntimeWarning)
        return float(sst.ttest_ind(b, a, equal_var=False, **kw).pvalue)


def tied_design(seed: int, max_n: int) -> tuple[np.ndarray, np.ndarray]:
    """2..max_n runs per side at 10 ms resolution over 4 values: many ties."""
    rng = np.random.default_rng(seed)
    m, n = rng.integers(2, max_n + 1, 2)
    return rng.integers(0, 4, m) * 0.01 + 1.0, rng.integers(0, 4, n) * 0.01 + 1.0


# --- Mann-Whitney ------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(40))
def test_mann_whitney_exact_given_ties_matches_enumeration(seed):
    a, b = tied_design(seed, 6)
    res = exact.mann_whitney(a, b)
    p, floor = brute_rank_p(a, b)
    assert res.method == "exact"
    assert res.p == pytest.approx(float(p), abs=1e-12)
    assert res.floor == pytest.approx(float(floor), abs=1e-12)


@pytest.mark.parametrize("m, n", [(2, 2), (3, 3), (3, 5), (8, 8), (20, 25), (32, 32), (3, 900)])
def test_mann_whitney_without_ties_matches_scipy_exact(m, n):
    rng = np.random.default_rng(m * 100 + n)
    a, b = rng.normal(0, 1, m), rng.normal(0.5, 1, n)
    res = exact.mann_whitney(a, b)
    ref = sst.mannwhitneyu(b, a, alternative="two-sided", method="exact").pvalue
    assert res.method == "exact" and res.p == pytest.approx(ref, rel=1e-9)
    assert res.floor == pytest.approx(exact.min_p(m, n), rel=1e-9)


def test_rank_sum_distribution_counts_every_split():
    values = np.array([1.0, 1.0, 2.0, 3.0, 3.0, 3.0, 4.0])
    _, counts = exact.tie_groups(values)
    dist = exact.rank_sum_distribution(counts, 3)
    ranks = sst.rankdata(values) * 2
    ref = np.zeros_like(dist)
    for idx, _ in splits(len(values), 3):
        ref[int(ranks[idx].sum())] += 1
    np.testing.assert_array_equal(dist, ref)
    assert dist.dtype == np.int64 and dist.sum() == math.comb(7, 3)


@pytest.mark.parametrize("m, n", [(40, 40), (1000, 1000)])
def test_mann_whitney_large_uses_scipy_normal_with_tie_and_continuity_correction(m, n):
    rng = np.random.default_rng(5)
    a, b = np.round(rng.normal(10, 1, m), 1), np.round(rng.normal(10.1, 1, n), 1)
    res = exact.mann_whitney(a, b)
    ref = sst.mannwhitneyu(b, a, method="asymptotic", use_continuity=True).pvalue
    assert res.method == "normal" and res.p == pytest.approx(ref)
    # the floor is scipy's p for the most extreme split of these very values
    pooled = np.sort(np.concatenate([a, b]))
    extreme = sst.mannwhitneyu(pooled[m:], pooled[:m], method="asymptotic").pvalue
    assert res.floor == pytest.approx(extreme, rel=1e-6)


def test_normal_approximation_is_close_to_the_exact_test_where_both_exist():
    rng = np.random.default_rng(11)
    a, b = np.round(rng.normal(10, 1, 30), 1), np.round(rng.normal(10.5, 1, 30), 1)
    exact_p = exact.mann_whitney(a, b).p
    normal_p = sst.mannwhitneyu(b, a, method="asymptotic").pvalue
    assert abs(exact_p - normal_p) < 0.005


def test_identical_groups_give_p_one():
    for a in (np.array([5.0, 5.0]), np.array([1.0, 2.0, 3.0]), np.array([0.1, 0.2, 0.3, 0.7])):
        assert exact.mann_whitney(a, a.copy()).p == 1.0
        assert exact.permutation_means(a, a[::-1].copy()).p == 1.0


def test_ties_raise_the_floor():
    a, b = np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 3.0])
    assert exact.mann_whitney(a, b).floor == pytest.approx(0.2)   # not 2/20
    assert exact.min_p(3, 3) == pytest.approx(0.1)


def test_u_null_cdf_matches_enumeration():
    for m, n in [(1, 1), (3, 3), (3, 5), (4, 6), (5, 5)]:
        us = [sum(1 for i in ia for j in ib if j < i) for ia, ib in splits(m + n, m)]
        ref = np.cumsum(np.bincount(us, minlength=m * n + 1)) / len(us)
        np.testing.assert_allclose(exact.u_null_cdf(m, n), ref)


# --- permutation test ---------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(12))
def test_permutation_exact_matches_enumeration_with_ties(seed):
    a, b = tied_design(seed, 5)
    res = exact.permutation_means(a, b)
    assert res.method == "exact" and res.p == pytest.approx(brute_perm_p(a, b), abs=1e-12)


def test_permutation_exact_matches_scipy_permutation_test():
    a, b = np.array([1.0, 2.0, 4.0, 4.5]), np.array([3.0, 5.0, 6.5, 7.25, 8.0])
    ref = sst.permutation_test((a, b), lambda x, y: np.mean(y) - np.mean(x),
                               permutation_type="independent", n_resamples=np.inf).pvalue
    assert exact.permutation_means(a, b).p == pytest.approx(ref)


def test_permutation_monte_carlo_is_within_its_error_of_the_exact_p(monkeypatch):
    rng = np.random.default_rng(2)
    a, b = rng.normal(10, 1, 8), rng.normal(10.8, 1, 8)
    exact_p = exact.permutation_means(a, b).p
    monkeypatch.setattr(exact, "PERM_EXACT_SPLITS", 0)
    mc = exact.permutation_means(a, b, n_resamples=20_000)
    assert mc.method == "monte-carlo" and mc.n_resamples == 20_000
    assert mc.mc_error == pytest.approx(math.sqrt(mc.p * (2 - mc.p) / 20_000), rel=1e-3)
    assert abs(mc.p - exact_p) < 4 * mc.mc_error


@pytest.mark.parametrize("shift", [0.8, 0.0])     # p about 0.1, and identical groups (p = 1)
def test_permutation_monte_carlo_error_is_the_spread_over_seeds(monkeypatch, shift):
    # Reference: the root-mean-square error of the Monte Carlo p around the exact p
    # (enumeration) over 300 seeds.  The one-sided formula sqrt(p(1-p)/B) is 0.69 times
    # it at p = 0.1 and 0 at p = 1; 300 seeds estimate it to about 4%.
    rng = np.random.default_rng(2)
    if shift:
        a, b = rng.normal(10, 1, 8), rng.normal(10 + shift, 1, 8)
        exact_p = exact.permutation_means(a, b).p            # enumerates C(16, 8) splits
    else:
        # Identical groups: A's sum is the centre of a distribution symmetric about it
        # (a split and its complement), so the exact p is 1.  12 + 12 runs keep the atom
        # at the centre (2^12 of C(24, 12) splits) negligible.
        a = rng.normal(10, 1, 12)
        b, exact_p = a[::-1], 1.0
    monkeypatch.setattr(exact, "PERM_EXACT_SPLITS", 0)
    runs = [exact.permutation_means(a, b, seed=s, n_resamples=400) for s in range(300)]
    rmse = math.sqrt(np.mean([(r.p - exact_p) ** 2 for r in runs]))
    reported = float(np.mean([r.mc_error for r in runs]))
    assert reported == pytest.approx(rmse, rel=0.15)


def test_permutation_normal_uses_the_exact_permutation_variance(monkeypatch):
    rng = np.random.default_rng(4)
    a, b = rng.normal(10, 1, 5), rng.normal(10.5, 1, 4)
    pooled = np.concatenate([a, b])
    sums = np.array([pooled[idx].sum() for idx, _ in splits(9, 5)])
    z = (a.sum() - sums.mean()) / sums.std()      # population SD over all splits
    monkeypatch.setattr(exact, "PERM_EXACT_SPLITS", 0)
    monkeypatch.setattr(exact, "PERM_MC_MAX_N", 0)
    res = exact.permutation_means(a, b)
    assert res.method == "normal"
    assert res.p == pytest.approx(2 * sst.norm.sf(abs(z)))


def test_permutation_floor_is_the_most_extreme_split():
    a, b = np.array([1.0, 1.0, 2.0]), np.array([3.0, 3.0, 3.0])
    res = exact.permutation_means(a, b)
    assert res.floor == pytest.approx(0.1) and res.p == pytest.approx(0.1)


def test_complete_separation_three_by_three_gives_p_one_tenth():
    assert exact.mann_whitney(A, B).p == pytest.approx(0.1)
    assert exact.permutation_means(A, B).p == pytest.approx(0.1)


# --- the change of means and its interval --------------------------------------------------

DESIGNS = [(2, 2), (3, 3), (4, 4), (5, 8), (30, 30), (200, 150), (1000, 1000)]


@pytest.mark.parametrize("m, n", DESIGNS)
def test_fieller_welch_interval_is_the_welch_test_inverted(m, n):
    rng = np.random.default_rng(m + n)
    a, b = rng.normal(100, 1.5, m), rng.normal(98, 1.5, n)
    res = location.ratio_of_means(a, b)
    assert res.pct_change == pytest.approx(100 * (b.mean() / a.mean() - 1))
    assert res.p == pytest.approx(sst.ttest_ind(b, a, equal_var=False).pvalue)
    for bound in (res.ci.low, res.ci.high):
        r = 1 + bound / 100
        assert sst.ttest_ind(b, r * a, equal_var=False).pvalue == pytest.approx(0.05, abs=1e-9)
    # duality: the interval excludes 0% exactly when Welch rejects
    assert (res.ci.low > 0 or res.ci.high < 0) == (res.p < 0.05)


def test_fieller_welch_with_one_constant_side():
    a, b = np.full(4, 10.0), np.array([10.2, 10.4, 10.3, 10.5])
    res = location.ratio_of_means(a, b)
    for bound in (res.ci.low, res.ci.high):
        p = welch_p(b, (1 + bound / 100) * a)
        assert p == pytest.approx(0.05, abs=1e-9)


def test_fieller_welch_unbounded_when_a_mean_is_indistinguishable_from_zero():
    a, b = np.array([10.0, 14.0]), np.array([11.0, 14.0])
    res = location.ratio_of_means(a, b)
    assert sst.ttest_1samp(a, 0).pvalue >= 0.05       # why: A's mean is not shown above 0
    assert res.ci.high is None and "no upper bound" in res.ci.note


def test_ratio_with_constant_sides():
    same = location.ratio_of_means(np.full(3, 2.0), np.full(3, 2.0))
    assert same.p == 1.0 and same.pct_change == 0.0 and same.ci.low is None
    differ = location.ratio_of_means(np.full(3, 2.0), np.full(3, 3.0))
    assert math.isnan(differ.p) and "constant" in differ.ci.note


def test_welch_log_interval_matches_hand_computation():
    la, lb = np.log(A), np.log(B)
    va, vb = la.var(ddof=1) / 3, lb.var(ddof=1) / 3
    se = math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / 2 + vb**2 / 2)
    diff = lb.mean() - la.mean()
    half = sst.t.ppf(0.975, df) * se
    res = location.welch_log(A, B)
    assert res.ci.low == pytest.approx(100 * (math.exp(diff - half) - 1))
    assert res.ci.high == pytest.approx(100 * (math.exp(diff + half) - 1))
    assert res.p == pytest.approx(2 * sst.t.sf(abs(diff / se), df))


def test_welch_log_refuses_zero_times():
    res = location.welch_log(np.array([0.0, 1.0]), np.array([1.0, 2.0]))
    assert res.ci.low is None and "logarithm" in res.ci.note


def test_bootstrap_is_scipys_bca_with_the_same_seed():
    rng = np.random.default_rng(8)
    a, b = rng.normal(100, 2, 12), rng.normal(97, 2, 10)
    res = location.bootstrap_ratio(a, b, seed=3, n_resamples=999)
    ref = sst.bootstrap((a, b), lambda x, y, axis=-1: 100 * (y.mean(axis) / x.mean(axis) - 1),
                        n_resamples=999, method="BCa", rng=np.random.default_rng(3))
    assert res.low == pytest.approx(ref.confidence_interval.low)
    assert res.high == pytest.approx(ref.confidence_interval.high)


def test_hedges_g_by_hand():
    a, b = np.array([10.0, 12.0, 14.0]), np.array([13.0, 15.0, 17.0])
    # both SDs are 2, pooled SD 2, d = 1.5, J = 1 - 3/(4*6 - 9) = 0.8
    assert location.hedges_g(a, b) == pytest.approx(1.5 * 0.8)


# --- Hodges-Lehmann ------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(30))
def test_kth_difference_equals_sorting_all_differences(seed):
    rng = np.random.default_rng(seed)
    m, n = rng.integers(1, 60, 2)
    decimals = int(rng.integers(0, 3))
    a = np.sort(np.round(rng.normal(100, 3, m), decimals))
    b = np.sort(np.round(rng.normal(101, 3, n), decimals))
    diffs = np.sort(np.subtract.outer(b, a).ravel())
    for k in {1, len(diffs), (len(diffs) + 1) // 2, int(rng.integers(1, len(diffs) + 1))}:
        assert location.kth_difference(a, b, k) == diffs[k - 1]


def _tie_heavy_design(kind: str, m: int, n: int, rng) -> tuple[np.ndarray, np.ndarray]:
    if kind == "ties":             # 10 ms resolution, a handful of distinct values
        return np.round(rng.normal(1.0, 0.015, m), 2), np.round(rng.normal(1.0, 0.015, n), 2)
    if kind == "identical":        # B repeats A: the median difference is exactly 0
        a = np.round(rng.normal(5.0, 0.02, m), 2)
        return a, np.resize(a, n)
    if kind == "constant":         # zero variance on both sides
        return np.full(m, 10.0), np.full(n, 10.1)
    return np.full(m, 2.0), np.round(rng.normal(2.0, 0.01, n), 2)   # one side constant


@pytest.mark.parametrize("kind", ["ties", "identical", "constant", "one-constant"])
@pytest.mark.parametrize("m, n", [(1, 7), (40, 33), (120, 90), (300, 300)])
def test_kth_difference_with_heavy_ties_equals_sorting_all_differences(kind, m, n):
    rng = np.random.default_rng(m * 1000 + n)
    a, b = (np.sort(x) for x in _tie_heavy_design(kind, m, n, rng))
    diffs = np.sort(np.subtract.outer(b, a).ravel())
    picks = {1, len(diffs), (len(diffs) + 1) // 2, len(diffs) // 2 + 1,
             *rng.integers(1, len(diffs) + 1, 6).tolist()}
    for k in picks:
        assert location.kth_difference(a, b, k) == diffs[k - 1], k


def test_kth_difference_at_1000_by_1000():
    rng = np.random.default_rng(1)
    a, b = np.sort(rng.normal(100, 1, 1000)), np.sort(np.round(rng.normal(100.1, 1, 1000), 2))
    diffs = np.subtract.outer(b, a).ravel()
    for k in (1, 12_345, 500_000, 1_000_000):
        assert location.kth_difference(a, b, k) == np.partition(diffs, k - 1)[k - 1]


def test_hodges_lehmann_five_by_five_uses_third_order_statistics():
    a = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    b = np.array([2.5, 4.5, 6.5, 8.5, 10.5])
    diffs = np.sort(np.subtract.outer(b, a).ravel())
    hl = location.hodges_lehmann(a, b)
    assert hl.shift_s == pytest.approx(np.median(diffs))
    # m = n = 5: P(U <= 2) = 4/252 <= 0.025 < P(U <= 3) = 7/252, so cut 3 from each end.
    assert (hl.ci.low, hl.ci.high) == (diffs[2], diffs[22])
    assert hl.coverage == pytest.approx(1 - 8 / 252)


def test_hodges_lehmann_three_by_three_has_no_95_interval_but_a_90_one():
    assert location.hodges_lehmann(A, B).ci.low is None
    hl90 = location.hodges_lehmann(A, B, level=0.90)
    diffs = np.sort(np.subtract.outer(B, A).ravel())
    assert (hl90.ci.low, hl90.ci.high) == (diffs[0], diffs[-1])


def test_hodges_lehmann_normal_cut_agrees_with_exact_cut(monkeypatch):
    rng = np.random.default_rng(6)
    a, b = rng.normal(10, 1, 30), rng.normal(10.4, 1, 30)
    exact_hl = location.hodges_lehmann(a, b)
    monkeypatch.setattr(exact, "u_null_cdf", lambda m, n: None)
    normal_hl = location.hodges_lehmann(a, b)
    diffs = np.sort(np.subtract.outer(b, a).ravel())
    cut_exact = int(np.searchsorted(diffs, exact_hl.ci.low)) + 1
    cut_normal = int(np.searchsorted(diffs, normal_hl.ci.low)) + 1
    assert abs(cut_exact - cut_normal) <= 1
    assert "normal U" in normal_hl.ci.method


# --- power -----------------------------------------------------------------------------------

def test_power_matches_statsmodels_wherever_statsmodels_is_finite():
    ref = TTestIndPower()
    for effect in (0.2, 0.5, 1.0, 2.0, 5.0, 20.0):
        for n in (2, 3, 8, 30):
            expected = ref.power(effect_size=effect, nobs1=n, alpha=0.05, ratio=1.0)
            if np.isfinite(expected):
                assert power.t_test_power(effect, n, n) == pytest.approx(expected, abs=1e-9)


def test_runs_needed_for_a_large_effect_where_statsmodels_returns_nan():
    ref = TTestIndPower()
    assert np.isnan(ref.power(effect_size=50, nobs1=2, alpha=0.05, ratio=1.0))
    assert power.runs_needed(50) == 2
    # independent check by simulation: with d = 50 and 2 runs a side Welch rejects always
    rng = np.random.default_rng(0)
    x, y = rng.normal(0, 1, (2000, 2)), rng.normal(50, 1, (2000, 2))
    assert (sst.ttest_ind(x, y, axis=1).pvalue < 0.05).mean() > 0.99


def test_runs_needed_is_the_first_n_with_enough_power():
    n = power.runs_needed(0.5)
    pw = TTestIndPower()
    assert pw.power(effect_size=0.5, nobs1=n, alpha=0.05, ratio=1.0) >= 0.8
    assert pw.power(effect_size=0.5, nobs1=n - 1, alpha=0.05, ratio=1.0) < 0.8
    assert n == 64  # the textbook value for d = 0.5


def test_mde_is_welchs_smallest_change_with_the_asked_power_by_simulation():
    """The seed's sys runs (one side far tighter than the other): at the reported smallest
    detectable change, scipy's Welch test rejects in about 80% of simulated 3 + 3 runs
    with these SDs, and at the pooled-SD Student test's change (statsmodels) far less."""
    a = np.array([111.953, 110.553, 113.600])
    b = np.array([98.802, 99.206, 98.845])
    p = power.power_analysis(a, b)
    rng = np.random.default_rng(7)
    sd_a, sd_b = a.std(ddof=1), b.std(ddof=1)

    def simulated(delta: float) -> float:
        xa = rng.normal(0.0, sd_a, (40_000, 3))
        xb = rng.normal(-delta, sd_b, (40_000, 3))
        return float((sst.ttest_ind(xb, xa, axis=1, equal_var=False).pvalue < 0.05).mean())

    assert simulated(p.mde_pct / 100 * a.mean()) == pytest.approx(0.8, abs=0.03)
    d = TTestIndPower().solve_power(nobs1=3, alpha=0.05, power=0.8, ratio=1.0)
    assert simulated(d * p.pooled_sd) < 0.7


def test_welch_power_with_equal_sds_is_students():
    for effect in (0.5, 1.0, 2.0):
        for n in (3, 8, 30):
            expected = TTestIndPower().power(effect_size=effect, nobs1=n, alpha=0.05, ratio=1.0)
            assert power.welch_power(effect * 2.0, 2.0, 2.0, n, n) == pytest.approx(expected,
                                                                                 abs=1e-9)


def test_runs_for_target_is_the_first_n_whose_welch_power_suffices():
    a = np.array([10.0, 10.4, 9.7, 10.2])
    b = np.array([9.9, 10.1, 9.6, 10.3])
    p = power.power_analysis(a, b, target_pct=-2.0)
    sd_a, sd_b = a.std(ddof=1), b.std(ddof=1)
    delta = 0.02 * a.mean()
    n = p.runs_for_target
    assert power.welch_power(delta, sd_a, sd_b, n, n) >= 0.8 > power.welch_power(
        delta, sd_a, sd_b, n - 1, n - 1)
    # by simulation at that n: scipy's Welch test reaches the power
    rng = np.random.default_rng(3)
    xa = rng.normal(0.0, sd_a, (20_000, n))
    xb = rng.normal(-delta, sd_b, (20_000, n))
    assert (sst.ttest_ind(xb, xa, axis=1, equal_var=False).pvalue < 0.05).mean() >= 0.78


# --- equivalence -----------------------------------------------------------------------------

def test_tost_is_the_larger_of_two_one_sided_welch_tests_on_the_ratio():
    rng = np.random.default_rng(1)
    a, b = rng.normal(100, 1, 12), rng.normal(100.2, 1, 12)
    p_low = sst.ttest_ind(b, 0.98 * a, equal_var=False, alternative="greater").pvalue
    p_high = sst.ttest_ind(b, 1.02 * a, equal_var=False, alternative="less").pvalue
    res = equivalence.tost(a, b, 2.0)
    assert res.p == pytest.approx(max(p_low, p_high))
    ci = location.ratio_of_means(a, b, level=0.90).ci       # duality with the 90% interval
    assert res.equivalent == (-2 < ci.low and ci.high < 2)


def test_distribution_free_equivalence_needs_a_hodges_lehmann_interval():
    tight_a, tight_b = np.array([100.0, 100.01]), np.array([100.0, 100.02])
    assert equivalence.tost(tight_a, tight_b, 1.0).df_equivalent is None   # 2+2: no 90% interval
    a3, b3 = np.array([100.0, 100.01, 99.99]), np.array([100.0, 100.02, 99.98])
    res = equivalence.tost(a3, b3, 1.0)
    diffs = np.subtract.outer(b3, a3) / np.median(a3) * 100
    assert res.df_equivalent == bool(diffs.min() > -1 and diffs.max() < 1)


@pytest.mark.parametrize("a_text, b_text", [
    ("10.00", "10.10"), ("10.00", "9.90"),      # exactly +-1%: on the margin, so outside
    ("10.00", "10.09"), ("10.00", "9.91"),      # 0.9%: inside
    ("10.00", "10.11"), ("112.00", "113.12"), ("0.30", "0.303"), ("0.30", "0.297"),
    ("49.99", "50.49"), ("3.33", "3.3633"),
])
def test_distribution_free_equivalence_margin_is_decided_in_decimal(a_text, b_text):
    # Reference: the same check in exact decimal arithmetic on the text the times came
    # from; every difference is b - a, and the margin itself is outside.
    change = (Fraction(b_text) - Fraction(a_text)) / Fraction(a_text)
    expected = abs(change) < Fraction(1, 100)
    a, b = np.full(3, float(a_text)), np.full(3, float(b_text))
    assert equivalence.tost(a, b, 1.0).df_equivalent is expected


# --- drift -----------------------------------------------------------------------------------

def test_trend_uses_kendall_tau():
    v = np.array([3.0, 1.0, 4.0, 1.5, 5.0, 9.0])
    res = drift.trend(v, np.arange(6))
    ref = sst.kendalltau(np.arange(6), v)
    assert res.tau == pytest.approx(ref.statistic) and res.p == pytest.approx(ref.pvalue)


def test_kendall_s_counts_pairs():
    rng = np.random.default_rng(3)
    for n in (2, 3, 7, 40):
        v = np.round(rng.normal(size=n), 1)
        ref = sum(np.sign(v[j] - v[i]) for i in range(n) for j in range(i + 1, n))
        assert drift.kendall_s(v) == ref


@pytest.mark.parametrize("sides", [
    ([1.0, 2.0, 3.0], [4.0, 5.0, 6.0]),
    ([1.0, 1.0, 2.0], [3.0, 2.0, 2.0, 5.0]),
    ([2.0, 1.0, 3.0, 4.0], [1.0, 3.0, 2.0]),
])
def test_combined_trend_exact_matches_enumeration(sides):
    sides = [np.array(s) for s in sides]
    observed = sum(drift.kendall_s(s) for s in sides)
    per_side = [[drift.kendall_s(np.array(p)) for p in permutations(s)] for s in sides]
    totals = [x + y for x in per_side[0] for y in per_side[1]]
    le = sum(t <= observed for t in totals)
    ge = sum(t >= observed for t in totals)
    assert drift.combined_trend(sides) == pytest.approx(min(1, 2 * min(le, ge) / len(totals)))


def test_combined_trend_large_is_the_normal_approximation():
    rng = np.random.default_rng(9)
    sides = [rng.normal(size=30) + 0.02 * np.arange(30), rng.normal(size=25)]
    s = sum(drift.kendall_s(v) for v in sides)
    var = sum(n * (n - 1) * (2 * n + 5) / 18 for n in (30, 25))
    assert drift.combined_trend(sides) == pytest.approx(2 * sst.norm.sf((abs(s) - 1) / math.sqrt(var)))


def test_design_detects_sequential_runs():
    assert drift.design(np.array([1, 2, 3]), np.array([4, 5, 6])) == "sequential"
    assert drift.design(np.array([1, 3, 5]), np.array([2, 4, 6])) == "interleaved"


# --- Holm ------------------------------------------------------------------------------------

def test_holm_matches_statsmodels():
    rng = np.random.default_rng(0)
    for k in (1, 2, 3, 7):
        ps = rng.uniform(0, 0.2, k).tolist()
        assert comparison.holm(ps) == pytest.approx(multipletests(ps, method="holm")[1].tolist())


# --- verdict rules, one test each (rules in rmaplab/stats/verdict.py) -------------------------

def evidence(**kw) -> rules.Evidence:
    base = dict(alpha=0.05, family_size=3, p_welch_holm=0.5, p_mannwhitney_holm=0.5, p_min=0.001,
                p_tost=0.5, equivalent_df=None, margin_pct=1.0, drift_p=(None, None, None))
    return rules.Evidence(**{**base, **kw})


def test_rule_r1_a_distribution_free_rejection_is_a_change_even_if_welch_does_not_reject():
    assert rules.decide(evidence(p_mannwhitney_holm=0.01, p_welch_holm=0.01)).text == "change"
    v = rules.decide(evidence(p_mannwhitney_holm=0.01, p_welch_holm=0.3))
    assert v.rule == "R1" and v.kind == "change" and "Welch's t does not reject" in v.text


def test_rule_r2_holm_floor_applies_before_calling_tests_in_disagreement():
    # 4+4 complete separation: p_min = 2/70 < 0.05, but 3 metrics * 2/70 = 0.086 >= 0.05
    v = rules.decide(evidence(p_welch_holm=0.001, p_mannwhitney_holm=3 * 2 / 70, p_min=2 / 70))
    assert (v.rule, v.text) == ("R2", "change only under normality")
    v1 = rules.decide(evidence(family_size=1, p_welch_holm=0.001, p_mannwhitney_holm=0.06,
                               p_min=2 / 70))
    assert v1.rule == "R3"


def test_rule_r3_tests_disagree_when_the_rank_test_could_reject_but_does_not():
    v = rules.decide(evidence(p_welch_holm=0.01, p_mannwhitney_holm=0.2, p_min=0.001))
    assert (v.rule, v.text) == ("R3", "inconclusive: tests disagree")


def test_rule_r4_equivalence_needs_the_distribution_free_check():
    assert rules.decide(evidence(p_tost=0.01, equivalent_df=True)).text == "equivalent within +-1%"
    untestable = rules.decide(evidence(p_tost=0.01, equivalent_df=None))
    assert untestable.kind == "none" and "only under normality" in untestable.text
    outside = rules.decide(evidence(p_tost=0.01, equivalent_df=False))
    assert outside.kind == "none" and "leaves the margin" in outside.text


def test_rule_r5_no_evidence():
    assert rules.decide(evidence()).rule == "R5"


def test_rule_r6_drift_downgrades_changes_and_equivalence():
    drifting = (0.001, 0.2, 0.0001)
    v = rules.decide(evidence(p_mannwhitney_holm=0.001, p_welch_holm=0.001, drift_p=drifting))
    assert (v.rule, v.kind) == ("R6", "inconclusive")
    e = rules.decide(evidence(p_tost=0.01, equivalent_df=True, drift_p=drifting))
    assert (e.rule, e.kind) == ("R6", "none")
    # Bonferroni over the three drift tests: 0.02 * 3 >= 0.05 is no drift
    assert rules.decide(evidence(p_mannwhitney_holm=0.001, drift_p=(0.02, None, None))).rule == "R1"


# --- whole comparisons on data --------------------------------------------------------------

def frames(a, b, metric="sys", interleave=False):
    rows, order = [], 0
    pairs = (list(zip(a, b, strict=False)) if interleave else [(x, None) for x in a] +
             [(None, y) for y in b])
    for x, y in pairs:
        for group, v in (("A", x), ("B", y)):
            if v is None:
                continue
            order += 1
            rows.append({"source": "t", "line": order, "group": group, "run": order,
                         "metric": metric, "seconds": float(v), "kind": "run", "n": 1,
                         "format": "t", "order": order})
    if interleave:   # the rest of the longer side
        for group, vals in (("A", a[len(b):]), ("B", b[len(a):])):
            for v in vals:
                order += 1
                rows.append({"source": "t", "line": order, "group": group, "run": order,
                             "metric": metric, "seconds": float(v), "kind": "run", "n": 1,
                             "format": "t", "order": order})
    df = pd.DataFrame(rows)
    return df[df.group == "A"], df[df.group == "B"]


def run_compare(a, b, **kw):
    fa, fb = frames(np.asarray(a, float), np.asarray(b, float),
                    interleave=kw.pop("interleave", False))
    with warnings.catch_warnings():
        warnings.simplefilter("error")          # no library warning on any input
        res = comparison.compare(fa, fb, metrics=("sys",), same_file=True, **kw)
        report.format_table(res, verbose=True)
        res.as_dict()
    return res.metrics[0]


def _rng_design(kind: str, m: int, n: int):
    rng = np.random.default_rng(m * 7 + n)
    if kind == "normal":
        return rng.normal(100, 2, m), rng.normal(99, 2, n)
    if kind == "ties":
        return np.round(rng.normal(10, 0.03, m), 2), np.round(rng.normal(10.01, 0.03, n), 2)
    if kind == "outlier":
        a, b = rng.normal(100, 1, m), rng.normal(100.5, 1, n)
        b[0] = 400.0
        return a, b
    if kind == "drift":
        return 100 + 0.2 * np.arange(m) + rng.normal(0, 0.05, m), \
            101 + 0.2 * np.arange(n) + rng.normal(0, 0.05, n)
    raise ValueError(kind)


@pytest.mark.parametrize("kind", ["normal", "ties", "outlier", "drift"])
@pytest.mark.parametrize("m, n", [(2, 2), (3, 3), (4, 6), (12, 12), (40, 40), (300, 200)])
def test_every_quantity_against_its_reference(kind, m, n):
    a, b = _rng_design(kind, m, n)
    r = run_compare(a, b)
    assert (r.n_a, r.n_b) == (m, n)
    assert r.mean_a == pytest.approx(a.mean()) and r.sd_b == pytest.approx(b.std(ddof=1))
    assert r.pct_change == pytest.approx(100 * (b.mean() / a.mean() - 1))
    assert r.p_welch == pytest.approx(welch_p(b, a))
    for bound in (r.ci_low, r.ci_high):
        if bound is not None:
            p = welch_p(b, (1 + bound / 100) * a)
            assert p == pytest.approx(0.05, abs=1e-8)
    if m + n <= 10:
        assert r.p_mannwhitney == pytest.approx(float(brute_rank_p(a, b)[0]))
        assert r.p_permutation == pytest.approx(brute_perm_p(a, b))
    elif r.p_mannwhitney_method == "normal":
        assert r.p_mannwhitney == pytest.approx(sst.mannwhitneyu(b, a).pvalue)
    diffs = np.subtract.outer(b, a).ravel()
    assert r.hl_shift_s == pytest.approx(np.median(diffs))
    assert r.hedges_g == pytest.approx(location.hedges_g(a, b))
    if r.p_permutation_method == "monte-carlo":
        assert r.p_permutation_mc_error is not None
    if kind == "drift" and m >= 12:
        assert r.drift_detected and r.verdict_kind != "change"


def test_one_thousand_runs_per_side_with_ties():
    rng = np.random.default_rng(0)
    a, b = np.round(rng.normal(112, 1.5, 1000), 1), np.round(rng.normal(111.8, 1.5, 1000), 1)
    r = run_compare(a, b)
    assert r.p_mannwhitney_method == "normal" and r.p_permutation_method == "normal"
    assert r.p_mannwhitney == pytest.approx(sst.mannwhitneyu(b, a).pvalue)
    assert r.hl_shift_s == pytest.approx(np.median(np.subtract.outer(b, a)))
    assert r.bootstrap_ci_low is not None and r.runs_for_target is not None


@pytest.mark.parametrize("a, b", [
    ([5.0, 5.0], [5.0, 5.0]),                       # identical, zero variance
    ([1.0, 2.0, 3.0], [3.0, 2.0, 1.0]),             # identical groups
    ([5.0, 5.0, 5.0], [6.0, 6.0, 6.0]),             # zero variance, different
    ([0.0, 0.0, 0.0], [0.0, 0.0, 0.0]),             # zero times (sys of a tiny command)
    ([0.0, 0.01, 0.0], [0.01, 0.0, 0.0]),           # zero times with ties
    ([5.0, 5.0, 5.0, 5.0], [5.0, 5.0, 5.0, 5.1]),   # almost constant
    ([1e-9, 2e-9], [1e-9, 3e-9]),                   # nanoseconds
])
def test_degenerate_inputs_raise_no_warning_and_identical_groups_give_p_one(a, b):
    r = run_compare(a, b)
    if sorted(a) == sorted(b):
        assert r.p_mannwhitney == 1.0 and r.p_permutation == 1.0 and r.verdict_kind != "change"
        assert np.isnan(r.p_welch) or r.p_welch == 1.0


def test_seed_comparison_verdicts_and_flags(seed_file):
    df = timings.to_frame(timings.load(seed_file))
    res = comparison.compare(df[df.group == "Origin"], df[df.group == "Patched"],
                             label_a="Origin", label_b="Patched", same_file=True)
    by = {m.metric: m for m in res.metrics}
    assert by["sys"].pct_change == pytest.approx(100 * (B.mean() / A.mean() - 1))
    assert by["sys"].p_min == pytest.approx(0.1) and by["sys"].p_min_holm == pytest.approx(0.3)
    assert by["sys"].verdict == "change only under normality" and by["sys"].verdict_rule == "R2"
    ps = sorted(m.p_welch for m in res.metrics)
    assert min(m.p_welch_holm for m in res.metrics) == pytest.approx(3 * ps[0])
    assert res.design == "sequential"
    assert res.confounder is not None and res.confounder["metric"] == "user"


def test_four_by_four_complete_separation_reads_as_floor_not_disagreement():
    a = {"real": [10.0, 10.1, 10.2, 10.3], "user": [20.0, 20.2, 20.1, 20.3],
         "sys": [5.0, 5.1, 5.05, 5.12]}
    rows = []
    for metric, vals in a.items():
        for side, shift in (("A", 1.0), ("B", 0.9)):
            for i, v in enumerate(vals):
                rows.append({"source": "t", "line": i + (0 if side == "A" else 10), "group": side,
                             "run": i, "metric": metric, "seconds": v * shift, "kind": "run",
                             "n": 1, "format": "t"})
    df = pd.DataFrame(rows)
    res = comparison.compare(df[df.group == "A"], df[df.group == "B"], same_file=True)
    for m in res.metrics:
        assert m.p_mannwhitney == pytest.approx(2 / 70)
        assert m.verdict == "change only under normality", m


def test_rank_test_rejection_counts_when_an_outlier_hides_it_from_welch():
    a = np.array([100.3, 100.0, 100.6, 100.1, 100.7, 100.2, 100.5, 100.4])
    b = np.array([101.1, 200.0, 100.9, 101.3, 100.8, 101.4, 101.0, 101.2])
    r = run_compare(a, b, interleave=True)
    assert r.p_welch >= 0.05 and r.p_mannwhitney < 0.001
    assert r.verdict_rule == "R1" and r.verdict_kind == "change"


def test_welch_and_rank_test_disagreeing_on_tied_data():
    r = run_compare([10.0] * 5 + [10.1], [10.0] + [10.1] * 5)
    assert r.p_welch < 0.05 and r.p_mannwhitney >= 0.05 and r.p_min < 0.05
    assert r.verdict == "inconclusive: tests disagree"


def test_large_clear_change_with_enough_runs_is_called_a_change():
    rng = np.random.default_rng(7)
    r = run_compare(rng.normal(100.0, 0.5, 8), rng.normal(90.0, 0.5, 8), interleave=True)
    assert r.verdict == "change"
    assert r.bootstrap_ci_low is not None and r.bootstrap_ci_high < 0


def test_identical_conditions_with_enough_runs_are_equivalent():
    rng = np.random.default_rng(3)
    v = rng.normal(100.0, 0.2, 40)
    r = run_compare(v[:20], v[20:], interleave=True)
    assert r.verdict.startswith("equivalent") and r.verdict_rule == "R4"


def test_sequential_drift_downgrades_a_change():
    a = 100 + 0.1 * np.arange(10)
    b = 101.5 + 0.1 * np.arange(10)
    r = run_compare(a, b)
    assert r.p_mannwhitney < 1e-4 and r.drift_detected
    assert r.verdict == "inconclusive: runs drift with run order"


def test_failed_runs_are_excluded_with_a_warning():
    fa, fb = frames(np.array([1.0, 1.1, 1.2, 9.9]), np.array([1.3, 1.4, 1.5]))
    fa = fa.assign(exit_status=[0, 0, 0, 2])
    res = comparison.compare(fa, fb, metrics=("sys",), same_file=True)
    assert res.metrics[0].n_a == 3 and res.metrics[0].excluded_a == 1
    assert any("non-zero status and are excluded: t:4 (status 2)" in w for w in res.warnings)


def test_a_side_with_one_run_is_an_error_naming_the_line(timing_file):
    df = timings.to_frame(timings.load(timing_file("edge/one_run_group.txt")))
    with pytest.raises(RmaplabError, match=r"one_run_group.txt:2: A has a single real run"):
        comparison.compare(df[df.group == "A"], df[df.group == "B"], label_a="A", label_b="B")


def test_means_only_metrics_are_reported_not_tested(timing_file):
    df = timings.to_frame(timings.load(timing_file("hyperfine.json")))
    res = comparison.compare(df[df.group == "sleep 0.02"], df[df.group == "sleep 0.03"],
                             same_file=True)
    assert [m.metric for m in res.metrics] == ["real"]
    assert any("only a mean of 5 runs" in w for w in res.warnings)
    assert res.design == "sequential" and "hyperfine" in res.design_note


def test_table_scales_units_and_shows_monte_carlo_error(monkeypatch):
    monkeypatch.setattr(exact, "PERM_EXACT_SPLITS", 0)
    rng = np.random.default_rng(1)
    fa, fb = frames(rng.normal(0.0205, 0.0003, 6), rng.normal(0.031, 0.0002, 6))
    res = comparison.compare(fa, fb, metrics=("sys",), same_file=True)
    text = report.format_table(res)
    assert " ms " in text and "Monte Carlo standard error of p perm" in text
    assert res.metrics[0].p_permutation_mc_error is not None


# --- A/A calibration -------------------------------------------------------------------------

def test_aa_calibration_enumerates_unordered_splits():
    values = np.array([10.0, 10.2, 9.9, 10.1, 10.05, 9.95])
    splits_ = calibration.aa_splits(values, n=3)
    assert len(splits_) == math.comb(6, 3) // 2
    summary = calibration.aa_summary(splits_, threshold_pct=1.0)
    # 3 + 3 exact tests can never reject at 0.05
    assert summary["fpr_permutation"] == 0.0 and summary["fpr_mannwhitney"] == 0.0
    changes = [abs(100 * (values[list(b)].mean() / values[list(a)].mean() - 1))
               for a, b in zip(splits_["a"], splits_["b"], strict=True)]
    assert summary["abs_change_max_pct"] == pytest.approx(max(changes))


def test_aa_calibration_needs_enough_runs():
    with pytest.raises(RmaplabError, match="at least 6 runs"):
        calibration.aa_splits(np.ones(5), n=3)


def test_a_user_time_change_from_zero_is_flagged_in_seconds():
    # /bin/true vs a forking command: A's user time is 0.00 s at the 10 ms clock, so there
    # is no percentage; the confounder is still reported (tests/test_measure_ab.py hit it).
    vals = {"real": ([0.01] * 6, [0.03, 0.031, 0.029, 0.03, 0.032, 0.028]),
            "user": ([0.0] * 6, [0.01, 0.02, 0.01, 0.02, 0.01, 0.02]),
            "sys": ([0.0] * 6, [0.01] * 6)}
    rows = []
    for metric, sides in vals.items():
        for side, values in zip("AB", sides, strict=True):
            for i, v in enumerate(values):
                rows.append({"source": "t", "line": 2 * i + (side == "B"), "group": side,
                             "run": i, "metric": metric, "seconds": v, "kind": "run",
                             "n": 1, "format": "t"})
    df = pd.DataFrame(rows)
    res = comparison.compare(df[df.group == "A"], df[df.group == "B"], same_file=True)
    by = {m.metric: m for m in res.metrics}
    assert by["user"].pct_change is None and by["user"].verdict_kind == "change"
    assert res.confounder is not None
    assert "from 0.000 s to 0.015 s" in res.confounder["message"]
