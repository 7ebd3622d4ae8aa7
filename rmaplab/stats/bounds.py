"""One-sided confidence bounds, and a bound on a product of uncertain factors.

The in-vivo ceiling divides a sampled time by a sys-time denominator and by a sampling
recovery factor, each estimated from a few runs.  Its upper bound here carries all three
uncertainties: each factor gets a one-sided bound at level 1 - alpha/k, and by
Bonferroni's inequality the product of the k bounds holds with probability at least
1 - alpha whatever their dependence.  That is conservative (wider than needed when the
factors are independent) but needs no distributional assumption beyond the ones of each
factor's own bound.

No maintained library has the recovery factor's bound (a Fieller-type bound for the
ratio of two between-condition differences measured in the same runs), so it is written
here; ``tests/test_bounds.py`` checks it against scipy's Welch test and by simulation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import optimize, stats


def mean_upper(x: np.ndarray, level: float) -> float:
    """One-sided upper t bound of the mean of x at ``level`` (nan for fewer than 2 values)."""
    x = np.asarray(x, float)
    if len(x) < 2:
        return math.nan
    return float(x.mean() + stats.t.ppf(level, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))


def mean_lower(x: np.ndarray, level: float) -> float:
    """One-sided lower t bound of the mean of x at ``level`` (nan for fewer than 2 values)."""
    x = np.asarray(x, float)
    return -mean_upper(-x, level)


@dataclass(frozen=True)
class RatioBound:
    estimate: float            # (mean X_busy - mean X_base) / (mean Y_busy - mean Y_base)
    lower: float | None        # None: no lower bound at this level (see note)
    level: float
    note: str | None = None


def _welch_greater(busy: np.ndarray, base: np.ndarray) -> tuple[float, float]:
    """Welch's t and its degrees of freedom for mean(busy) - mean(base)."""
    vb, v0 = busy.var(ddof=1) / len(busy), base.var(ddof=1) / len(base)
    var = vb + v0
    if var == 0:                    # constant in both conditions: any difference is exact
        diff = busy.mean() - base.mean()
        return (math.copysign(math.inf, diff) if diff else 0.0), math.inf
    df = var * var / (vb * vb / (len(busy) - 1) + v0 * v0 / (len(base) - 1))
    return float((busy.mean() - base.mean()) / math.sqrt(var)), float(df)


def contrast_ratio_lower(x_busy: np.ndarray, y_busy: np.ndarray, x_base: np.ndarray,
                         y_base: np.ndarray, level: float,
                         nonnegative: bool = False) -> RatioBound:
    """Lower confidence bound of R = (E x_busy - E x_base) / (E y_busy - E y_base).

    x and y are measured in the same runs (x_busy[i] and y_busy[i] together), so they
    are correlated; the bound inverts a test on each run's z = x - r*y, which carries
    that correlation: r is excluded when Welch's one-sided test finds mean z larger in
    the busy runs than in the base ones (i.e. R > r) at 1 - level.  The bound is the
    smallest r not excluded (Fieller's construction with Welch's degrees of freedom;
    the level is approximate with few runs, as Welch's is).

    Without a sign restriction the bound exists only if the y difference itself is
    positive at this level; otherwise arbitrarily low r are not excluded and ``lower``
    is None.  ``nonnegative=True`` uses the prior knowledge that R >= 0 (the busy
    condition does all of the base's work and more, so neither difference is negative)
    and reports the smallest r >= 0 not excluded: with a noisy y difference the
    confidence set is (-inf, a] u [b, inf), and the bound is b when a < 0.  It is 0
    when 0 itself is not excluded (the x difference is not clearly positive), and
    None when no r >= 0 is consistent with the data.
    """
    xb, yb = np.asarray(x_busy, float), np.asarray(y_busy, float)
    x0, y0 = np.asarray(x_base, float), np.asarray(y_base, float)
    if len(xb) != len(yb) or len(x0) != len(y0):
        raise ValueError("x and y must come from the same runs (equal lengths)")
    if min(len(xb), len(x0)) < 2:
        raise ValueError("need at least 2 runs of each condition")
    dy = float(yb.mean() - y0.mean())
    estimate = float(xb.mean() - x0.mean()) / dy if dy != 0 else math.nan
    alpha = 1.0 - level

    def p_exceeds(r: float) -> float:
        """p of H0: R <= r (for a positive y difference), one-sided Welch."""
        t, df = _welch_greater(xb - r * yb, x0 - r * y0)
        return float(stats.t.sf(t, df))

    def root(lo: float, hi: float) -> float:
        return float(optimize.brentq(lambda r: p_exceeds(r) - alpha, lo, hi,
                                     xtol=1e-14, rtol=1e-12))

    if nonnegative:
        if p_exceeds(0.0) >= alpha:
            return RatioBound(estimate, 0.0, level,
                              "0 is not excluded: the x difference is not clearly positive")
        # 0 is excluded; the bound is the first r > 0 where exclusion stops.  Below the
        # estimate (where mean z differs by 0, p = 1/2) the crossing is unique for fixed
        # degrees of freedom (the test's edge is a quadratic in r, positive at 0 and
        # negative at the estimate); Welch's df move with r, so brentq finds the crossing
        # and tests/test_bounds.py checks that no lower r is accepted.
        hi = estimate if estimate > 0 else 1.0
        while p_exceeds(hi) < alpha:
            hi *= 2
            if hi > 1e12:
                return RatioBound(estimate, None, level,
                                  "no r >= 0 is consistent with the data")
        return RatioBound(estimate, root(0.0, hi), level)

    # As r -> -inf the test is one of -y's difference: if y's difference is not
    # positive at this level, arbitrarily low r are not excluded.
    t_y, df_y = _welch_greater(yb, y0)
    if not (dy > 0 and stats.t.sf(t_y, df_y) < alpha):
        return RatioBound(estimate, None, level,
                          "no lower bound: the y difference is not positive at this level")
    hi = estimate
    if p_exceeds(hi) < alpha:          # cannot happen for a sane t; guard the bracket
        return RatioBound(estimate, None, level, "the estimate itself is excluded")
    lo = estimate - max(abs(estimate), 1.0)
    while p_exceeds(lo) >= alpha:
        lo -= 2 * (hi - lo)
        if lo < -1e12:
            return RatioBound(estimate, None, level, "no finite lower bound found")
    return RatioBound(estimate, root(lo, hi), level)
