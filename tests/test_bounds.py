"""One-sided bounds (rmaplab.stats.bounds) against scipy, a hand-computed case and a
simulation of their coverage; the ceiling's propagated bound put together by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from conftest import DATA
from rmaplab.errors import RmaplabError
from rmaplab.measure import ceiling
from rmaplab.stats import bounds

TINY = DATA / "ceiling" / "tiny"


def test_one_sided_mean_bounds_are_the_ends_of_scipys_two_sided_interval():
    x = np.array([32.56, 32.13, 31.9, 33.2])
    low, high = stats.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=stats.sem(x))
    # a one-sided bound at 97.5% is one end of the two-sided 95% interval
    assert bounds.mean_upper(x, 0.975) == pytest.approx(high)
    assert bounds.mean_lower(x, 0.975) == pytest.approx(low)
    assert math.isnan(bounds.mean_upper(x[:1], 0.975))


def test_contrast_ratio_bound_is_where_scipys_welch_test_stops_rejecting():
    rng = np.random.default_rng(3)
    yb, y0 = rng.normal(2.5, 0.15, 6), rng.normal(1.5, 0.05, 6)
    xb, x0 = 0.5 * yb + rng.normal(0, 0.03, 6), 0.5 * y0 + rng.normal(0, 0.03, 6) - 0.2
    level = 0.99
    rb = bounds.contrast_ratio_lower(xb, yb, x0, y0, level)
    assert rb.lower is not None and rb.lower < rb.estimate
    assert rb.estimate == pytest.approx((xb.mean() - x0.mean()) / (yb.mean() - y0.mean()))

    def p(r: float) -> float:
        return stats.ttest_ind(xb - r * yb, x0 - r * y0, equal_var=False,
                               alternative="greater").pvalue

    assert p(rb.lower) == pytest.approx(1 - level, rel=1e-6)
    assert p(rb.lower - 1e-3) < 1 - level < p(rb.lower + 1e-3)


def test_contrast_ratio_bound_with_an_exact_denominator_is_a_welch_bound_by_hand():
    # y differs by exactly 1 between the conditions, so R is the x difference and its
    # bound is Welch's one-sided bound of a difference of means, written out here.
    xb, x0 = np.array([3.1, 2.9, 3.4, 3.0]), np.array([1.0, 1.3, 0.8])
    yb, y0 = np.full(4, 2.0), np.full(3, 1.0)
    vb, v0 = xb.var(ddof=1) / 4, x0.var(ddof=1) / 3
    df = (vb + v0) ** 2 / (vb**2 / 3 + v0**2 / 2)
    by_hand = xb.mean() - x0.mean() - stats.t.ppf(0.95, df) * math.sqrt(vb + v0)
    rb = bounds.contrast_ratio_lower(xb, yb, x0, y0, 0.95)
    assert rb.lower == pytest.approx(by_hand, rel=1e-9)


def test_no_lower_bound_when_the_denominator_difference_is_noise():
    yb, y0 = np.array([2.0, 2.6, 1.7]), np.array([2.1, 1.8, 2.2])
    xb, x0 = np.array([0.5, 0.6, 0.55]), np.array([0.1, 0.12, 0.09])
    rb = bounds.contrast_ratio_lower(xb, yb, x0, y0, 0.95)
    assert rb.lower is None and "not positive" in rb.note
    with pytest.raises(ValueError, match="same runs"):
        bounds.contrast_ratio_lower(xb, yb[:2], x0, y0, 0.95)


def test_contrast_ratio_bound_covers_the_true_ratio_at_its_level():
    # Correlated x and y per run, true R = 0.5, four runs a side: the bound should sit
    # below 0.5 in about `level` of the experiments (None counts as below).
    rng = np.random.default_rng(2019)
    level, reps, below = 0.9, 600, 0
    for _ in range(reps):
        yb, y0 = rng.normal(2.4, 0.18, 4), rng.normal(1.5, 0.05, 4)
        xb = 0.05 + 0.5 * (yb - 1.5) + rng.normal(0, 0.04, 4)
        x0 = 0.05 + rng.normal(0, 0.01, 4)
        rb = bounds.contrast_ratio_lower(xb, yb, x0, y0, level)
        below += rb.lower is None or rb.lower <= 0.5
    # binomial SE at 600 experiments is 0.012: allow 3 of them around the level
    assert abs(below / reps - level) < 0.037


def test_the_ceilings_propagated_bound_is_the_product_of_its_three_bounds():
    out = ceiling.corrected_bound(TINY, "cmd", 2, level=0.95)
    runs = pd.read_csv(TINY / "runs.csv")
    plain = runs[(runs["kind"] == "plain") & (runs["jobs"] == 2) & (runs["shell"] == "cmd")]
    each = 1 - 0.05 / 3
    d = plain["sys"].to_numpy()
    d_lo = d.mean() - stats.t.ppf(each, len(d) - 1) * stats.sem(d)
    assert out["denominator_s_lower"] == pytest.approx(d_lo)
    assert out["level_each"] == pytest.approx(each)
    assert set(out["recoveries"]) == {f"{b} - {a}" for b, a, _ in ceiling.CONTRASTS}
    point = min(est for est, _, _ in out["recoveries"].values())
    assert out["corrected_pct"] == pytest.approx(
        100 * out["anon_s"] / (out["denominator_s"] * min(1, point)))
    if out["bound_pct"] is not None:
        assert out["bound_pct"] == pytest.approx(
            100 * out["anon_s_upper"] / (d_lo * min(1, out["recovery_lower"])))
        assert out["bound_pct"] >= out["corrected_pct"]
    else:
        # this fixture's workload is 20 ms on a loaded machine: with two validation runs
        # a side the deeper-chain contrast's extra anon_vma time is not clearly positive
        assert out["recovery_lower"] == 0.0
        assert "validate-s1-d4 - validate-s1-d1: 0 is not excluded" in out["no_bound_because"]


def _welch_p(xb, yb, x0, y0, r: float) -> float:
    """scipy's one-sided Welch p of H0: R <= r, on each run's x - r*y."""
    return stats.ttest_ind(np.asarray(xb) - r * np.asarray(yb), np.asarray(x0) - r * np.asarray(y0),
                           equal_var=False, alternative="greater").pvalue


def test_a_nonnegative_ratio_is_bounded_when_the_denominator_difference_is_noise():
    # y's difference is not clearly positive, so Fieller's set is (-inf, a] u [b, inf);
    # with R >= 0 known the bound is b: the first r >= 0 scipy's test does not reject.
    yb, y0 = np.array([2.0, 2.6, 1.7, 2.4]), np.array([2.1, 1.8, 2.2, 1.6])
    xb, x0 = np.array([0.5, 0.6, 0.55, 0.58]), np.array([0.1, 0.12, 0.09, 0.11])
    level = 0.95
    assert stats.ttest_ind(yb, y0, equal_var=False, alternative="greater").pvalue > 1 - level
    assert bounds.contrast_ratio_lower(xb, yb, x0, y0, level).lower is None
    rb = bounds.contrast_ratio_lower(xb, yb, x0, y0, level, nonnegative=True)
    assert 0 < rb.lower < rb.estimate
    assert _welch_p(xb, yb, x0, y0, rb.lower) == pytest.approx(1 - level, rel=1e-6)
    # every r in [0, bound) is rejected, so nothing lower is in the set
    assert all(_welch_p(xb, yb, x0, y0, r) < 1 - level
               for r in np.linspace(0, rb.lower, 200, endpoint=False))
    # and where the x difference is itself noise, 0 is in the set
    rb0 = bounds.contrast_ratio_lower(xb, yb, x0 + np.array([0.5, -0.3, 0.4, 0.0]), y0,
                                      level, nonnegative=True)
    assert rb0.lower == 0.0 and "not clearly positive" in rb0.note


def test_the_bound_appears_exactly_when_the_denominator_difference_passes_its_test():
    # Borderline: y's one-sided Welch p just above / just below 1 - level.
    yb, y0 = np.array([2.3, 2.6, 2.1, 2.5]), np.array([2.0, 2.2, 1.9, 2.15])
    xb, x0 = 0.5 * yb + np.array([0.01, -0.02, 0.0, 0.01]), 0.5 * y0
    p_y = stats.ttest_ind(yb, y0, equal_var=False, alternative="greater").pvalue
    # alpha just above p_y: y's difference is positive at this level, the bound exists
    assert bounds.contrast_ratio_lower(xb, yb, x0, y0, 1 - 1.01 * p_y).lower is not None
    # alpha just below it: it is not, and the unrestricted bound does not exist
    tight = bounds.contrast_ratio_lower(xb, yb, x0, y0, 1 - 0.99 * p_y)
    assert tight.lower is None and "not positive at this level" in tight.note


def test_constant_runs_give_the_exact_ratio_not_an_exclusion():
    rb = bounds.contrast_ratio_lower(np.full(3, 2.0), np.full(3, 4.0), np.full(3, 1.0),
                                     np.full(3, 2.0), 0.95)
    assert rb.estimate == 0.5 and rb.lower == pytest.approx(0.5)


def test_the_nonnegative_bound_covers_a_noisy_ratio_and_exists_where_fiellers_does_not():
    # y's difference is barely larger than its noise (as in the deeper-chain contrast):
    # the unrestricted bound rarely exists, the R >= 0 one nearly always, and it covers.
    rng = np.random.default_rng(42)
    level, reps, below, exists, exists_free = 0.95, 600, 0, 0, 0
    for _ in range(reps):
        yb, y0 = rng.normal(1.8, 0.5, 4), rng.normal(1.5, 0.05, 4)
        xb = 0.4 + 0.5 * (yb - 1.5) + rng.normal(0, 0.02, 4)
        x0 = 0.1 + 0.5 * (y0 - 1.5) + rng.normal(0, 0.02, 4)
        rb = bounds.contrast_ratio_lower(xb, yb, x0, y0, level, nonnegative=True)
        free = bounds.contrast_ratio_lower(xb, yb, x0, y0, level)
        below += rb.lower is None or rb.lower <= 1.5       # true R below its bound
        exists += rb.lower is not None and rb.lower > 0
        exists_free += free.lower is not None
    # true R = (0.3 + 0.5 * 0.3) / 0.3 = 1.5
    assert below / reps >= level - 0.03
    assert exists / reps > 0.8 > 0.5 > exists_free / reps


@pytest.mark.parametrize("shell", sorted(ceiling.campaign_per_shell()))
def test_the_recorded_ceilings_bound_recomputed_with_scipy(shell):
    # Each shell's campaign as notebook 03 reports it, R the lower of both contrasts'
    # recoveries: every factor redone here from the runs, each at 1 - alpha/3.
    directory = ceiling.campaign_per_shell()[shell]
    out = ceiling.corrected_bound(directory, shell, 2, level=0.975)
    runs, _ = ceiling.load(directory)
    each = 1 - 0.025 / 3
    builds = runs[(runs["workload"] == "build") & (runs["shell"] == shell)]
    d = builds[(builds["kind"] == "plain") & (builds["jobs"] == 2)]["sys"].to_numpy()
    sm = ceiling.sample_summary(directory, builds)
    sm = sm[sm["jobs"] == 2]
    a = (sm["samples_anon"] * sm["period_s"]).to_numpy()
    a_hi = a.mean() + stats.t.ppf(each, len(a) - 1) * stats.sem(a)
    d_lo = d.mean() - stats.t.ppf(each, len(d) - 1) * stats.sem(d)
    assert out["anon_s_upper"] == pytest.approx(a_hi)
    assert out["denominator_s_lower"] == pytest.approx(d_lo)
    v = ceiling.sample_summary(directory, runs[runs["workload"] == "validate"])
    v["s"] = v["rusage_cpu"]                 # the recovery's denominator: extra CPU time
    v["a"] = v["samples_anon"] * v["period_s"]
    lows = {}
    for busy, base, _ in ceiling.CONTRASTS:
        b, z = v[v["label"] == busy], v[v["label"] == base]
        low = out["recoveries"][f"{busy} - {base}"][1]
        # scipy's test stops rejecting exactly at each contrast's bound, at 1 - alpha/3
        # (no further split between the contrasts), and rejects 0 (so R >= 0 is used)
        assert _welch_p(b["a"], b["s"], z["a"], z["s"], low) == pytest.approx(1 - each, rel=1e-6)
        assert _welch_p(b["a"], b["s"], z["a"], z["s"], 0.0) < 1 - each
        lows[busy] = low
    # bash's deeper-chain contrast: its extra CPU time alone is not clearly positive, so
    # its bound exists only because R >= 0 (the case the paper describes)
    deep = v[v["label"] == "validate-s1-d4"]["s"], v[v["label"] == "validate-s1-d1"]["s"]
    p_deep = stats.ttest_ind(*deep, equal_var=False, alternative="greater").pvalue
    assert (p_deep > 1 - each) == (shell == "bash")
    r_lo = min(lows.values())
    assert out["recovery_lower"] == r_lo
    assert out["bound_pct"] == pytest.approx(100 * a_hi / (d_lo * min(1.0, r_lo)))
    assert out["corrected_pct"] < out["bound_pct"]
    per_vma = ceiling.corrected_bound(directory, shell, 2, level=0.975,
                                      contrasts=["validate-s1-d1 - validate-s0-d1"])
    assert per_vma["bound_pct"] >= out["bound_pct"]
    # a recovery above one never scales the share down (the deeper-chain estimate is 1.08)
    deep_only = ceiling.corrected_bound(directory, shell, 2, level=0.975,
                                        contrasts=["validate-s1-d4 - validate-s1-d1"])
    if deep_only["recovery"] > 1:          # bash's (1.10)
        assert deep_only["corrected_pct"] == pytest.approx(100 * a.mean() / d.mean())
    else:
        assert deep_only["corrected_pct"] == pytest.approx(
            100 * a.mean() / (d.mean() * deep_only["recovery"]))
    with pytest.raises(RmaplabError, match="unknown validation contrast"):
        ceiling.corrected_bound(directory, shell, 2, contrasts=["s1 - s0"])
