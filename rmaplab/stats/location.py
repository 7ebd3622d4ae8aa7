"""Effect sizes and their intervals for two independent samples of timings (A, B).

Changes are B relative to A.  The headline is the **ratio of arithmetic means**
(mean(B)/mean(A) - 1, the "sys reduced 11.6%" of an email), and its interval is for
that same ratio: Fieller's interval with Welch's degrees of freedom, i.e. every
ratio r for which Welch's t-test of B against r*A does not reject.  At r = 1 that
test is Welch's test of the means, so the interval excludes 0% exactly when Welch's
p is below 1 - level.  The ratio of geometric means (Welch's t on log times) is kept
as a second view for skewed timings; Hodges-Lehmann and a BCa bootstrap are the
distribution-free views.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy import optimize, stats

from rmaplab.stats import exact


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
class RatioOfMeans:
    pct_change: float | None      # 100*(mean_b/mean_a - 1); None when mean_a is 0
    ci: Interval                  # for the same ratio, in percent
    p: float                      # Welch's t-test of mean(B) = mean(A)
    df: float


class _WelchRatio:
    """Welch's t-test of mean(B) = r * mean(A) from the two samples' summary statistics."""

    def __init__(self, a: np.ndarray, b: np.ndarray) -> None:
        self.ma, self.mb = float(a.mean()), float(b.mean())
        self.va, self.vb = float(a.var(ddof=1)) / len(a), float(b.var(ddof=1)) / len(b)
        self.da, self.db = len(a) - 1, len(b) - 1

    def t_df(self, r: float) -> tuple[float, float]:
        var = self.vb + r * r * self.va
        df = var * var / (self.vb**2 / self.db + (r * r * self.va) ** 2 / self.da)
        return (self.mb - r * self.ma) / math.sqrt(var), df

    def p(self, r: float) -> float:
        if self.vb + r * r * self.va == 0:   # only at r = 0 with B constant
            return 1.0 if self.mb == r * self.ma else 0.0
        t, df = self.t_df(r)
        return float(2 * stats.t.sf(abs(t), df))

    def p_one_sided(self, r: float, alternative: str) -> float:
        """p of H0 mean(B) <= r mean(A) ('greater') or >= ('less')."""
        t, df = self.t_df(r)
        return float(stats.t.sf(t, df) if alternative == "greater" else stats.t.cdf(t, df))


def ratio_of_means(a: np.ndarray, b: np.ndarray, level: float = 0.95) -> RatioOfMeans:
    """Change of means with its Fieller-Welch interval, and Welch's p (see module doc)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    ma, mb = float(a.mean()), float(b.mean())
    change = pct(mb / ma) if ma > 0 else None
    nan = float("nan")
    if np.all(a == a[0]) and np.all(b == b[0]):
        p = 1.0 if ma == mb else nan
        note = "both sides are constant: no spread to build a test or an interval from"
        return RatioOfMeans(change, Interval(None, None, level, "fieller-welch", note), p, nan)
    w = _WelchRatio(a, b)
    p_welch = w.p(1.0)
    df = w.t_df(1.0)[1]
    if change is None:
        note = "A's mean is 0 s: no ratio"
        return RatioOfMeans(None, Interval(None, None, level, "fieller-welch", note), p_welch, df)
    ci = fieller_welch(w, level)
    return RatioOfMeans(change, ci, p_welch, df)


def fieller_welch(w: _WelchRatio, level: float) -> Interval:
    """Ratios r (in %) for which Welch's test of B against r*A has p >= 1 - level."""
    alpha = 1.0 - level
    estimate = w.mb / w.ma
    notes = []

    def excess(r: float) -> float:
        return w.p(r) - alpha

    # Lower end: ratios between 0 and the estimate.  At r = 0 the test asks whether
    # B's mean is 0; if that is not rejected, no positive ratio is excluded.
    low = None
    if estimate == 0.0:
        low = 0.0
    elif w.vb > 0 and 2 * stats.t.sf(w.mb / math.sqrt(w.vb), w.db) >= alpha:
        notes.append("no lower bound: B's mean is not distinguishable from 0 s")
    else:
        low = optimize.brentq(excess, 0.0, estimate, xtol=1e-15, rtol=1e-13)
    # Upper end: as r grows, the test asks whether A's mean is 0.
    high = None
    if w.va > 0 and 2 * stats.t.sf(w.ma / math.sqrt(w.va), w.da) >= alpha:
        notes.append("no upper bound: A's mean is not distinguishable from 0 s")
    else:
        top = max(estimate, 1e-300) * 2
        while excess(top) > 0:
            top *= 2
        high = optimize.brentq(excess, estimate, top, xtol=1e-15, rtol=1e-13)
    return Interval(None if low is None else pct(low), None if high is None else pct(high),
                    level, "fieller-welch", "; ".join(notes) or None)


@dataclass(frozen=True)
class WelchLog:
    pct_change_geo: float | None   # 100*(gm_b/gm_a - 1)
    ci: Interval                   # in percent of A's geometric mean
    p: float


def welch_log(a: np.ndarray, b: np.ndarray, level: float = 0.95) -> WelchLog:
    """Welch's t-test on log times; its CI, exponentiated, bounds gm(B)/gm(A)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    nan = float("nan")
    if np.any(a <= 0) or np.any(b <= 0):
        note = "a time of 0 s has no logarithm"
        return WelchLog(None, Interval(None, None, level, "welch-log", note), nan)
    la, lb = np.log(a), np.log(b)
    change = pct(math.exp(lb.mean() - la.mean()))
    if np.all(la == la[0]) and np.all(lb == lb[0]):
        note = "both sides are constant: no spread to build an interval from"
        return WelchLog(change, Interval(None, None, level, "welch-log", note),
                        1.0 if la[0] == lb[0] else nan)
    w = _WelchRatio(la, lb)
    t, df = w.t_df(1.0)
    half = stats.t.ppf(0.5 + level / 2, df) * math.sqrt(w.va + w.vb)
    diff = w.mb - w.ma
    return WelchLog(change, Interval(pct(math.exp(diff - half)), pct(math.exp(diff + half)),
                                     level, "welch-log"), w.p(1.0))


# Below this many runs per side a bootstrap interval's coverage is far below nominal
# (the resampling distribution has too few distinct values), so none is reported.
BOOTSTRAP_MIN_N = 8
BOOTSTRAP_RESAMPLES = 4_999


def bootstrap_ratio(a: np.ndarray, b: np.ndarray, level: float = 0.95, seed: int = 0,
                    n_resamples: int = BOOTSTRAP_RESAMPLES) -> Interval:
    """BCa bootstrap CI for mean(B)/mean(A) - 1 in percent (scipy.stats.bootstrap)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if min(len(a), len(b)) < BOOTSTRAP_MIN_N:
        return Interval(None, None, level, "bootstrap-bca",
                        f"not computed: fewer than {BOOTSTRAP_MIN_N} runs per side")
    if a.mean() <= 0:
        return Interval(None, None, level, "bootstrap-bca", "not computed: A's mean is 0 s")
    if np.all(a == a[0]) and np.all(b == b[0]):
        return Interval(None, None, level, "bootstrap-bca",
                        "not computed: both sides are constant")

    def ratio(x, y, axis=-1):
        return 100.0 * (np.mean(y, axis=axis) / np.mean(x, axis=axis) - 1.0)

    # Resample in batches of about 2M values: bounded memory at any n.
    batch = max(1, 2_000_000 // max(len(a), len(b)))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = stats.bootstrap((a, b), ratio, n_resamples=n_resamples, confidence_level=level,
                              method="BCa", vectorized=True, batch=batch,
                              rng=np.random.default_rng(seed))
    low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    if caught or not (np.isfinite(low) and np.isfinite(high)):
        reason = str(caught[0].message).split(".")[0] if caught else "degenerate resamples"
        return Interval(None, None, level, "bootstrap-bca", f"not available ({reason})")
    return Interval(low, high, level, "bootstrap-bca", f"{n_resamples} resamples")


def hedges_g(a: np.ndarray, b: np.ndarray) -> float:
    """Standardised mean difference (B - A) with Hedges' small-sample correction J."""
    na, nb = len(a), len(b)
    sp2 = ((na - 1) * np.var(a, ddof=1) + (nb - 1) * np.var(b, ddof=1)) / (na + nb - 2)
    if sp2 == 0:
        return float("nan")
    d = (np.mean(b) - np.mean(a)) / math.sqrt(sp2)
    j = 1.0 - 3.0 / (4.0 * (na + nb) - 9.0)
    return float(j * d)


# --- Hodges-Lehmann --------------------------------------------------------------------

def _count_at_most(a: np.ndarray, b: np.ndarray, d: float) -> tuple[int, np.ndarray]:
    """How many of the differences b_j - a_i (as float64 computes them) are <= d.

    For each j the differences fall as a_i grows, so those <= d are a suffix of sorted
    a.  searchsorted finds its start for exact arithmetic; the loops correct it by the
    few places where rounding of b_j - a_i disagrees.  Returns the count and, per j,
    the first index of the suffix.
    """
    start = np.searchsorted(a, b - d, side="left")
    m = len(a)
    while True:
        back = (start > 0) & (b - a[np.maximum(start - 1, 0)] <= d)
        if not back.any():
            break
        start = start - back
    while True:
        fwd = (start < m) & (b - a[np.minimum(start, m - 1)] > d)
        if not fwd.any():
            break
        start = start + fwd
    return int((m - start).sum()), start


def kth_difference(a_sorted: np.ndarray, b_sorted: np.ndarray, k: int) -> float:
    """The k-th smallest (1-based) of the m*n differences b_j - a_i, without forming them.

    Bisection on the value with exact counting (:func:`_count_at_most`), then the few
    differences left between the bounds are formed and sorted: O((m+n) log) memory
    and time per step instead of O(m*n).  Equal to
    ``np.sort(np.subtract.outer(b, a).ravel())[k-1]`` (checked in the tests).
    """
    lo = float(b_sorted[0] - a_sorted[-1])
    hi = float(b_sorted[-1] - a_sorted[0])
    if k == 1:
        return lo
    lo = np.nextafter(lo, -np.inf)     # count(lo) = 0 < k <= count(hi) = m*n
    count_lo, start_lo = 0, np.full(len(b_sorted), len(a_sorted))
    count_hi, start_hi = _count_at_most(a_sorted, b_sorted, hi)
    limit = max(4 * (len(a_sorted) + len(b_sorted)), 1024)
    while count_hi - count_lo > limit:
        mid = lo + (hi - lo) / 2
        if not lo < mid < hi:
            return hi      # no float between lo and hi: every difference left equals hi
        count, start = _count_at_most(a_sorted, b_sorted, mid)
        if count >= k:
            hi, count_hi, start_hi = mid, count, start
        else:
            lo, count_lo, start_lo = mid, count, start
    # The differences in (lo, hi] are b_j - a_i for i in [start_hi_j, start_lo_j).
    rows = np.repeat(np.arange(len(b_sorted)), start_lo - start_hi)
    cols = np.concatenate([np.arange(s, e) for s, e in zip(start_hi, start_lo, strict=True)])
    between = np.sort(b_sorted[rows] - a_sorted[cols.astype(np.intp)])
    return float(between[k - count_lo - 1])


@dataclass(frozen=True)
class HodgesLehmann:
    shift_s: float               # median of all b_j - a_i, seconds
    ci: Interval                 # seconds
    coverage: float | None       # exact coverage of the interval (continuous data)


def hodges_lehmann(a: np.ndarray, b: np.ndarray, level: float = 0.95) -> HodgesLehmann:
    """Hodges-Lehmann shift (median of all B_j - A_i) and its distribution-free interval.

    The interval is [d_(c), d_(mn+1-c)] of the m*n ordered differences, with c the
    largest cut such that P(U <= c-1) <= (1-level)/2 (Lehmann 1975): U's exact null
    distribution when feasible, else its normal approximation with continuity
    correction.  When even [d_(1), d_(mn)] has less than the asked coverage (3 vs 3
    at 95%), no interval is reported.  With ties the coverage is approximate.
    """
    a_s, b_s = np.sort(np.asarray(a, dtype=float)), np.sort(np.asarray(b, dtype=float))
    m, n = len(a_s), len(b_s)
    mn = m * n
    estimate = (kth_difference(a_s, b_s, (mn + 1) // 2) + kth_difference(a_s, b_s, mn // 2 + 1)) / 2
    alpha = 1.0 - level
    cdf = exact.u_null_cdf(m, n)
    if cdf is not None:
        # (1 + 1e-12): P(U <= 0) = 1/20 must count as <= 0.05 at 3 vs 3 and 90%.
        cut = int(np.searchsorted(cdf, alpha / 2 * (1 + 1e-12), side="right"))
        method = "hodges-lehmann (exact U)"
        coverage = 1.0 - 2.0 * float(cdf[cut - 1]) if cut >= 1 else 0.0
    else:
        sigma = math.sqrt(mn * (m + n + 1) / 12.0)
        cut = math.floor(mn / 2 - stats.norm.ppf(1 - alpha / 2) * sigma + 0.5)
        method = "hodges-lehmann (normal U)"
        coverage = float(1 - 2 * stats.norm.cdf((cut - 0.5 - mn / 2) / sigma))
    ties = len(np.unique(np.concatenate([a_s, b_s]))) < m + n
    if cut < 1:
        best = 1.0 - 2.0 / math.comb(m + n, m)
        return HodgesLehmann(estimate, Interval(
            None, None, level, method,
            f"not available: {m}+{n} runs reach at most {100 * best:.0f}% coverage"), None)
    note = f"coverage {100 * coverage:.1f}%" + ("; ties: coverage approximate" if ties else "")
    ci = Interval(kth_difference(a_s, b_s, cut), kth_difference(a_s, b_s, mn + 1 - cut),
                  level, method, note)
    return HodgesLehmann(estimate, ci, coverage)
