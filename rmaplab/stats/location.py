"""Effect sizes and their intervals for two independent samples of timings (A, B).

Changes are B relative to A.  Timings are positive and right-skewed, so the
headline interval is Welch's t on log times: a CI for the ratio of geometric
means (Kalibera & Jones' recommendation; computed by scipy).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats


def pct(ratio: float) -> float:
    return 100.0 * (ratio - 1.0)


@dataclass(frozen=True)
class Interval:
    low: float | None
    high: float | None
    level: float
    method: str
    note: str | None = None


@dataclass(frozen=True)
class WelchLog:
    pct_change_geo: float      # 100*(gm_b/gm_a - 1)
    ci: Interval               # in percent of A's geometric mean
    p: float
    df: float
    t: float


def welch_log(a: np.ndarray, b: np.ndarray, level: float = 0.95) -> WelchLog:
    """Welch's t-test on log times; its CI, exponentiated, bounds gm(B)/gm(A)."""
    if np.any(a <= 0) or np.any(b <= 0):
        nan = float("nan")
        note = "a time of 0 s has no logarithm"
        return WelchLog(nan, Interval(None, None, level, "welch-log", note), nan, nan, nan)
    res = stats.ttest_ind(np.log(b), np.log(a), equal_var=False)
    if not np.isfinite(res.pvalue):
        nan = float("nan")
        note = "both samples are constant: no spread to build an interval from"
        return WelchLog(pct(math.exp(np.log(b).mean() - np.log(a).mean())),
                        Interval(None, None, level, "welch-log", note), nan, nan, nan)
    ci = res.confidence_interval(level)
    diff = np.log(b).mean() - np.log(a).mean()
    return WelchLog(
        pct_change_geo=pct(math.exp(diff)),
        ci=Interval(pct(math.exp(ci.low)), pct(math.exp(ci.high)), level, "welch-log"),
        p=float(res.pvalue),
        df=float(res.df),
        t=float(res.statistic),
    )


# Below this many runs per side a bootstrap interval's coverage is far below nominal
# (the resampling distribution has too few distinct values), so none is reported.
BOOTSTRAP_MIN_N = 8


def bootstrap_ratio(a: np.ndarray, b: np.ndarray, level: float = 0.95, seed: int = 0,
                    n_resamples: int = 9999) -> Interval:
    """BCa bootstrap CI for mean(B)/mean(A) - 1 in percent (scipy.stats.bootstrap)."""
    if min(len(a), len(b)) < BOOTSTRAP_MIN_N:
        return Interval(None, None, level, "bootstrap-bca",
                        f"not computed: n < {BOOTSTRAP_MIN_N} per side")

    def ratio(x, y, axis=-1):
        return 100.0 * (np.mean(y, axis=axis) / np.mean(x, axis=axis) - 1.0)

    res = stats.bootstrap((a, b), ratio, n_resamples=n_resamples, confidence_level=level,
                          method="BCa", vectorized=True, random_state=np.random.default_rng(seed))
    return Interval(float(res.confidence_interval.low), float(res.confidence_interval.high),
                    level, "bootstrap-bca")


def hedges_g(a: np.ndarray, b: np.ndarray) -> float:
    """Standardised mean difference (B - A) with Hedges' small-sample correction J."""
    na, nb = len(a), len(b)
    sp2 = ((na - 1) * np.var(a, ddof=1) + (nb - 1) * np.var(b, ddof=1)) / (na + nb - 2)
    if sp2 == 0:
        return float("nan")
    d = (np.mean(b) - np.mean(a)) / math.sqrt(sp2)
    j = 1.0 - 3.0 / (4.0 * (na + nb) - 9.0)
    return float(j * d)


def mann_whitney_null_cdf(m: int, n: int) -> np.ndarray:
    """P(U <= u) for u = 0..m*n under H0, no ties (exact, by the standard recursion).

    Written here because scipy keeps its exact U distribution private; it is
    checked against brute-force enumeration in the tests.
    """
    # counts[i][j] holds the frequency polynomial of U for samples of size i and j.
    counts = [[None] * (n + 1) for _ in range(m + 1)]
    for i in range(m + 1):
        for j in range(n + 1):
            if i == 0 or j == 0:
                counts[i][j] = np.array([1], dtype=object)
                continue
            # The largest observation belongs to sample 1 (adds j to U) or to sample 2.
            a = np.concatenate([np.zeros(j, dtype=object), counts[i - 1][j]])
            b = counts[i][j - 1]
            size = max(len(a), len(b))
            counts[i][j] = (np.pad(a, (0, size - len(a))) + np.pad(b, (0, size - len(b))))
    freq = counts[m][n].astype(float)
    return np.cumsum(freq) / math.comb(m + n, m)


def hodges_lehmann(a: np.ndarray, b: np.ndarray, level: float = 0.95
                   ) -> tuple[float, Interval]:
    """Hodges-Lehmann shift (median of all B_j - A_i) and its distribution-free CI.

    The CI is the pair of order statistics of the m*n differences picked by the exact
    Mann-Whitney null distribution (Lehmann 1975).  When even the widest interval
    has less than the asked coverage (3 vs 3 at 95 %), no interval is reported.
    """
    diffs = np.sort(np.subtract.outer(b, a).ravel())
    estimate = float(np.median(diffs))
    m, n = len(a), len(b)
    cdf = mann_whitney_null_cdf(m, n)
    alpha = 1.0 - level
    # k = number of differences cut from each end: the largest k with P(U <= k-1) <= alpha/2.
    k = 0
    while k < len(cdf) and cdf[k] <= alpha / 2:
        k += 1
    if k == 0:
        best = 1.0 - 2.0 / math.comb(m + n, m)
        return estimate, Interval(None, None, level, "hodges-lehmann",
                                  f"not available: {m}+{n} runs reach at most "
                                  f"{100 * best:.0f}% coverage")
    coverage = 1.0 - 2.0 * cdf[k - 1]
    return estimate, Interval(float(diffs[k - 1]), float(diffs[len(diffs) - k]), level,
                              "hodges-lehmann", f"exact coverage {100 * coverage:.1f}%")

